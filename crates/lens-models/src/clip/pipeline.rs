//! Images and text in, normalised CLIP embeddings out: the model together with the checkpoint's
//! tokenizer and image processor, loaded from the files of a HuggingFace model directory.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;

use super::{ClipConfig, ClipModel};
use crate::files::{self, CheckpointFiles};
use crate::tokenizer::{HfTokenizer, TextTokenizer};
use crate::weights::Weights;
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
}

impl<B: Backend> ClipPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(files: ClipFiles, device: &B::Device) -> Result<Self> {
        let config = ClipConfig::from_json(&files.config)?;
        let processor = ClipImageProcessor::from_json(&files.preprocessor_config)?;
        files::check_image_size(&processor, config.vision_config.image_size)?;
        let tokenizer = HfTokenizer::from_bytes(
            &files.tokenizer,
            files.tokenizer_config.as_deref(),
            config.text_config.max_position_embeddings,
            "<|endoftext|>",
        )?;
        let weights = Weights::from_buffers(files.weights)?;
        let model = ClipModel::load(&weights.builder::<B>(device), &config)?;
        Ok(ClipPipeline { config, model, tokenizer, processor, device: device.clone() })
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

    /// L2-normalised embeddings of texts, one per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_BATCH) {
            out.extend(normalized_rows(self.text_features(chunk)?));
        }
        Ok(out)
    }

    /// Zero-shot classification: softmax over labels of `exp(logit_scale) · cos(image, label)`.
    pub fn classify(&self, image: &RgbImage, labels: &[&str]) -> Result<Vec<f32>> {
        if labels.is_empty() {
            return Err(Error::invalid_input("at least one label is needed"));
        }
        let image_embed = self.embed_images(std::slice::from_ref(image))?.remove(0);
        let scale = self.model.logit_scale_exp();
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

    /// Projected text features (not normalised).
    pub fn text_features(&self, texts: &[&str]) -> Result<Tensor<B, 2>> {
        if texts.is_empty() {
            return Err(Error::invalid_input("no text to embed"));
        }
        let encoded = self.tokenizer.encode_batch(texts)?;
        let (ids, mask): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
            encoded.into_iter().map(|e| (e.ids, e.attention_mask)).unzip();
        self.model.get_text_features(&ids, Some(&mask))
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
    values.chunks_exact(d).map(|row| lens_core::vector::normalized(row.to_vec())).collect()
}
