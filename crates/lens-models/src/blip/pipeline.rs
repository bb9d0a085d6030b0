//! Images in, captions out: BLIP with its tokenizer and image processor, loaded from the files of a
//! HuggingFace model directory.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;
use serde::{Deserialize, Serialize};

use super::config::BlipConfig;
use super::model::BlipForConditionalGeneration;
use crate::files::{self, CheckpointFiles};
use crate::generation::GenerationConfig;
use crate::tokenizer::{HfTokenizer, TextTokenizer};
use crate::weights::Weights;
use crate::{Error, Result};

/// Most images captioned in one forward pass; larger requests are split so memory stays bounded.
pub const MAX_BATCH: usize = 8;
/// Longest prompt accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 512;

/// The files of a BLIP checkpoint (see [`CheckpointFiles`]).
pub type BlipFiles = CheckpointFiles;

/// What to caption with: an optional prompt the caption continues ("a picture of"), and how to search.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptionOptions {
    /// Conditional captioning: the caption starts with this text. `None` or empty: unconditional.
    pub prompt: Option<String>,
    #[serde(flatten)]
    pub generation: GenerationConfig,
}

impl CaptionOptions {
    /// Checks the prompt's length and the generation settings.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.prompt
            && p.len() > MAX_PROMPT_BYTES
        {
            return Err(Error::invalid_input(format!(
                "prompt of {} bytes is longer than the limit of {MAX_PROMPT_BYTES}",
                p.len()
            )));
        }
        self.generation.validate()
    }
}

/// A loaded BLIP captioning checkpoint.
#[derive(Debug)]
pub struct BlipPipeline<B: Backend> {
    pub config: BlipConfig,
    pub model: BlipForConditionalGeneration<B>,
    pub tokenizer: HfTokenizer,
    pub processor: ClipImageProcessor,
    device: B::Device,
}

impl<B: Backend> BlipPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(files: BlipFiles, device: &B::Device) -> Result<Self> {
        let config = BlipConfig::from_json(&files.config)?;
        let processor = ClipImageProcessor::from_json_blip(&files.preprocessor_config)?;
        files::check_image_size(&processor, config.vision_config.image_size)?;
        let tokenizer = HfTokenizer::unpadded(&files.tokenizer, config.text_config.max_position_embeddings)?;
        let weights = Weights::from_buffers(files.weights)?;
        let model = BlipForConditionalGeneration::load(&weights.builder::<B>(device), &config)?;
        Ok(BlipPipeline { config, model, tokenizer, processor, device: device.clone() })
    }

    /// Side length of the square images the vision tower takes.
    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// One caption per image, decoded without special tokens, the prompt included (as the reference's
    /// `processor.decode(model.generate(...)[i], skip_special_tokens=True)` gives it).
    pub fn caption(&self, images: &[RgbImage], options: &CaptionOptions) -> Result<Vec<String>> {
        let ids = self.generate_ids(images, options)?;
        ids.iter().map(|row| self.tokenizer.decode(row, true)).collect()
    }

    /// The token ids `generate()` returns for each image: the prompt (its first id replaced by `[DEC]`)
    /// and the caption.
    pub fn generate_ids(&self, images: &[RgbImage], options: &CaptionOptions) -> Result<Vec<Vec<u32>>> {
        options.validate()?;
        if images.is_empty() {
            return Err(Error::invalid_input("no image to caption"));
        }
        let prompt = match options.prompt.as_deref() {
            Some(p) if !p.is_empty() => Some(self.tokenizer.encode(p)?.ids),
            _ => None,
        };
        let size = self.image_size();
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(MAX_BATCH) {
            let pixels = self.processor.preprocess_batch(chunk);
            let pixels = Tensor::<B, 4>::from_data(TensorData::new(pixels, [chunk.len(), 3, size, size]), &self.device);
            out.extend(self.model.generate(pixels, prompt.as_deref(), &options.generation)?);
        }
        Ok(out)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> BlipPipeline<B> {
    /// Load a HuggingFace model directory (see [`CheckpointFiles::read_dir`]).
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        Self::load(BlipFiles::read_dir(dir.as_ref())?, device)
    }
}
