//! Images and text in, normalised CLIP embeddings out: the model together with the checkpoint's
//! tokenizer and image processor, loaded from the files of a HuggingFace model directory or from a
//! `burn-int8` model artifact (`lens models quantize`). [`ClipTextPipeline`] is the text half alone,
//! loaded from a text-only artifact (`lens models quantize --text-only`, family [`TEXT_FAMILY`]).

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;

use super::config::ClipConfig;
use super::model::{ClipModel, ClipTextTower};
use crate::artifact::{Artifact, ArtifactSource, Engine};
use crate::files::{self, CheckpointFiles};
use crate::tokenizer::{HfTokenizer, TextTokenizer};
use crate::weights::{VarBuilder, Weights};
use crate::{Error, Result};

/// Most inputs run through the model at once; larger requests are split so memory stays bounded.
pub const MAX_BATCH: usize = 16;

/// The files of a CLIP checkpoint (see [`CheckpointFiles`]).
pub type ClipFiles = CheckpointFiles;

/// A loaded CLIP checkpoint ready to embed images and text.
#[derive(Debug)]
pub struct ClipPipeline<B: Backend> {
    pub config: ClipConfig,
    pub model: ClipModel<B>,
    pub tokenizer: HfTokenizer,
    pub processor: ClipImageProcessor,
    device: B::Device,
    source: Option<ArtifactSource>,
}

/// The artifact family of a text-only CLIP (a `clip` artifact holds both towers).
pub const TEXT_FAMILY: &str = "clip-text";

/// The config and tokenizer a checkpoint's files describe (all a text tower needs).
pub(crate) fn read_text_settings(
    config: &[u8],
    tokenizer: &[u8],
    tokenizer_config: Option<&[u8]>,
) -> Result<(ClipConfig, HfTokenizer)> {
    let config = ClipConfig::from_json(config)?;
    let tokenizer = HfTokenizer::from_bytes(
        tokenizer,
        tokenizer_config,
        config.text_config.max_position_embeddings,
        "<|endoftext|>",
    )?;
    Ok((config, tokenizer))
}

/// The config, image processor and tokenizer a checkpoint's files describe.
pub(crate) fn read_settings(
    config: &[u8],
    preprocessor_config: &[u8],
    tokenizer: &[u8],
    tokenizer_config: Option<&[u8]>,
) -> Result<(ClipConfig, ClipImageProcessor, HfTokenizer)> {
    let (config, tokenizer) = read_text_settings(config, tokenizer, tokenizer_config)?;
    let processor = ClipImageProcessor::from_json(preprocessor_config)?;
    files::check_image_size(&processor, config.vision_config.image_size)?;
    Ok((config, processor, tokenizer))
}

impl<B: Backend> ClipPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(files: ClipFiles, device: &B::Device) -> Result<Self> {
        let (config, processor, tokenizer) = read_settings(
            &files.config,
            &files.preprocessor_config,
            &files.tokenizer,
            files.tokenizer_config.as_deref(),
        )?;
        let weights = Weights::from_buffers(files.weights)?;
        let model = ClipModel::load(&weights.builder::<B>(device), &config)?;
        Ok(ClipPipeline { config, model, tokenizer, processor, device: device.clone(), source: None })
    }

    /// Build from a `burn-int8` CLIP artifact: int8 matrices are used in place (the artifact's buffer is
    /// shared, not copied), the small tensors are read as f32, and the config, image processor and
    /// tokenizer come from the artifact's `config.json`, `preprocessor_config.json`, `tokenizer.json`
    /// and optional `tokenizer_config.json` sections.
    pub fn from_artifact(artifact: Artifact, device: &B::Device) -> Result<Self> {
        let header = artifact.header();
        if header.engine != Engine::BurnInt8 || header.family != "clip" {
            return Err(Error::Artifact {
                message: format!(
                    "holds a `{}` model for the `{}` engine; this pipeline runs `clip` on `{}`",
                    header.family,
                    header.engine,
                    Engine::BurnInt8
                ),
            });
        }
        let (config, processor, tokenizer) = read_settings(
            artifact.file("config.json")?,
            artifact.file("preprocessor_config.json")?,
            artifact.file("tokenizer.json")?,
            artifact.bytes("tokenizer_config.json"),
        )?;
        let model = ClipModel::load(&VarBuilder::from_artifact(&artifact, device), &config)?;
        let source = Some(artifact.header().source.clone());
        Ok(ClipPipeline { config, model, tokenizer, processor, device: device.clone(), source })
    }

    /// The checkpoint an artifact was made from (`None` when loaded from checkpoint files): its `id` is
    /// the identity the native server reports for the same weights.
    pub fn artifact_source(&self) -> Option<&ArtifactSource> {
        self.source.as_ref()
    }

    /// Embedding dimension (`projection_dim`).
    pub fn dim(&self) -> usize {
        self.config.projection_dim
    }

    /// L2-normalised embeddings of decoded RGB images, one per image.
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(MAX_BATCH) {
            let pixels = self.processor.preprocess_batch(chunk);
            out.extend(normalized_rows(self.image_features(pixels, chunk.len())?));
        }
        Ok(out)
    }

    /// L2-normalised embeddings of `batch` images pre-processed by its `processor` (NCHW values).
    pub fn embed_pixels(&self, pixels: Vec<f32>, batch: usize) -> Result<Vec<Vec<f32>>> {
        Ok(normalized_rows(self.image_features(pixels, batch)?))
    }

    /// L2-normalised embeddings of texts, one per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        embed_texts(&self.model.text, &self.tokenizer, texts)
    }

    /// `exp(logit_scale)`, the temperature the model was trained with: zero-shot logits are `scale · cos`.
    pub fn logit_scale_exp(&self) -> f32 {
        self.model.logit_scale_exp()
    }

    /// Zero-shot classification: softmax over labels of `exp(logit_scale) · cos(image, label)`.
    pub fn classify(&self, image: &RgbImage, labels: &[&str]) -> Result<Vec<f32>> {
        if labels.is_empty() {
            return Err(Error::invalid_input("at least one label is needed"));
        }
        let image_embed = self.embed_images(std::slice::from_ref(image))?.remove(0);
        let scale = self.logit_scale_exp();
        let logits: Vec<f32> =
            self.embed_texts(labels)?.iter().map(|t| scale * lens_core::vector::dot(&image_embed, t)).collect();
        Ok(lens_core::vector::softmax(&logits))
    }

    /// Projected image features (not normalised) from pre-processed pixels.
    ///
    /// # Shapes
    /// - pixels: `batch * 3 * size * size` values, NCHW → `[batch, projection_dim]`
    pub fn image_features(&self, pixels: Vec<f32>, batch: usize) -> Result<Tensor<B, 2>> {
        let size = self.model.image_size();
        if batch == 0 || pixels.len() != batch * 3 * size * size {
            return Err(Error::invalid_input(format!(
                "{} pixel values do not make {batch} images of 3x{size}x{size}",
                pixels.len()
            )));
        }
        let pixels = Tensor::<B, 4>::from_data(TensorData::new(pixels, [batch, 3, size, size]), &self.device);
        Ok(self.model.get_image_features(pixels))
    }

    /// Projected text features (not normalised): [`text_features`].
    pub fn text_features(&self, texts: &[&str]) -> Result<Tensor<B, 2>> {
        text_features(&self.model.text, &self.tokenizer, texts)
    }
}

/// Projected text features (not normalised).
///
/// The tokenizer pads every text to the full context (77 tokens), but queries are short: the tower
/// runs only up to the last pooled position of the batch. That is exact, not an approximation:
/// attention is causal, so no position sees a later one, and pooling reads a position inside the
/// kept prefix.
fn text_features<B: Backend>(
    tower: &ClipTextTower<B>,
    tokenizer: &HfTokenizer,
    texts: &[&str],
) -> Result<Tensor<B, 2>> {
    if texts.is_empty() {
        return Err(Error::invalid_input("no text to embed"));
    }
    let encoded = tokenizer.encode_batch(texts)?;
    let (mut ids, mut mask): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
        encoded.into_iter().map(|e| (e.ids, e.attention_mask)).unzip();
    let keep = ids.iter().map(|row| tower.text_model.pool_position(row) + 1).max().unwrap_or(1);
    for row in ids.iter_mut().chain(mask.iter_mut()) {
        row.truncate(keep);
    }
    tower.get_text_features(&ids, Some(&mask))
}

/// L2-normalised embeddings of `texts`, [`MAX_BATCH`] at a time.
fn embed_texts<B: Backend>(tower: &ClipTextTower<B>, tokenizer: &HfTokenizer, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(MAX_BATCH) {
        out.extend(normalized_rows(text_features(tower, tokenizer, chunk)?));
    }
    Ok(out)
}

/// CLIP's text half: texts in, normalised embeddings out, the same values [`ClipPipeline`] gives for the
/// same weights. Loaded from a text-only artifact, or the text half of a full one.
#[derive(Debug)]
pub struct ClipTextPipeline<B: Backend> {
    pub config: ClipConfig,
    pub tower: ClipTextTower<B>,
    pub tokenizer: HfTokenizer,
    source: ArtifactSource,
}

impl<B: Backend> ClipTextPipeline<B> {
    /// Build from a `burn-int8` artifact of family [`TEXT_FAMILY`] or `clip` (only the text tensors are
    /// read); int8 matrices are used in place, as [`ClipPipeline::from_artifact`] does.
    pub fn from_artifact(artifact: Artifact, device: &B::Device) -> Result<Self> {
        let header = artifact.header();
        if header.engine != Engine::BurnInt8 || !(header.family == TEXT_FAMILY || header.family == "clip") {
            return Err(Error::Artifact {
                message: format!(
                    "holds a `{}` model for the `{}` engine; CLIP's text half runs `{TEXT_FAMILY}` or `clip` on `{}`",
                    header.family,
                    header.engine,
                    Engine::BurnInt8
                ),
            });
        }
        let (config, tokenizer) = read_text_settings(
            artifact.file("config.json")?,
            artifact.file("tokenizer.json")?,
            artifact.bytes("tokenizer_config.json"),
        )?;
        let tower = ClipTextTower::load(
            &VarBuilder::from_artifact(&artifact, device),
            &config.text_config,
            config.projection_dim,
        )?;
        let source = artifact.header().source.clone();
        Ok(ClipTextPipeline { config, tower, tokenizer, source })
    }

    /// The checkpoint the artifact was made from: its `id` is the one the server reports.
    pub fn artifact_source(&self) -> &ArtifactSource {
        &self.source
    }

    /// Embedding dimension (`projection_dim`).
    pub fn dim(&self) -> usize {
        self.config.projection_dim
    }

    /// L2-normalised embeddings of texts, one per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        embed_texts(&self.tower, &self.tokenizer, texts)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> ClipPipeline<B> {
    /// Load a HuggingFace model directory: `config.json`, `model.safetensors` (or
    /// `model.safetensors.index.json` and its shards), `tokenizer.json`, optional
    /// `tokenizer_config.json`, and `preprocessor_config.json`.
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        Self::load(ClipFiles::read_dir(dir.as_ref())?, device)
    }
}

/// Rows of a `[n, d]` tensor as L2-normalised vectors.
fn normalized_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let values: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 data");
    normalized_chunks(&values, d)
}

/// Row-major `[n, d]` values as L2-normalised vectors (the ONNX engine's outputs too).
pub(crate) fn normalized_chunks(values: &[f32], d: usize) -> Vec<Vec<f32>> {
    values.chunks_exact(d).map(|row| lens_core::vector::normalized(row.to_vec())).collect()
}
