//! Prompt and images in, text out: a LLaVA checkpoint with its processor and generation settings, loaded from the
//! files of a HuggingFace model directory.
//!
//! The prompt is the rendered chat (chat templates are applied by the caller), with one `<image>` per image.
//! It must fit the context with the tokens asked for: `prompt (expanded) + max_new_tokens ≤
//! max_position_embeddings`. Nothing is cut silently.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_core::image::RgbImage;

use super::config::LlavaConfig;
use super::model::LlavaForConditionalGeneration;
use super::processor::LlavaProcessor;
use crate::Result;
use crate::generation::GenerationConfig;
use crate::llama::pipeline::{check_fits, completion, special_tokens_over};
use crate::llama::{Completion, LlamaSpecialTokens};
use crate::weights::Weights;

/// The files of a LLaVA checkpoint.
#[derive(Debug, Default, Clone)]
pub struct LlavaFiles {
    /// `config.json`
    pub config: Vec<u8>,
    /// `(file name, bytes)` of each safetensors file (one, or the shards of an index).
    pub weights: Vec<(String, Vec<u8>)>,
    /// `tokenizer.json`
    pub tokenizer: Vec<u8>,
    /// `processor_config.json`, when present (transformers 5 nests the image processor's settings in it).
    pub processor_config: Option<Vec<u8>>,
    /// `preprocessor_config.json`, when present (as llava-hf publish it).
    pub preprocessor_config: Option<Vec<u8>>,
    /// `generation_config.json`, when present: its `eos_token_id`, `bos_token_id` and `pad_token_id` take
    /// precedence over config.json's.
    pub generation_config: Option<Vec<u8>>,
}

/// A loaded LLaVA checkpoint.
#[derive(Debug)]
pub struct LlavaPipeline<B: Backend> {
    pub config: LlavaConfig,
    pub model: LlavaForConditionalGeneration<B>,
    pub processor: LlavaProcessor,
    pub special: LlamaSpecialTokens,
    device: B::Device,
}

impl<B: Backend> LlavaPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(files: LlavaFiles, device: &B::Device) -> Result<Self> {
        let config = LlavaConfig::from_json(&files.config)?;
        let processor = LlavaProcessor::load(
            &config,
            &files.tokenizer,
            files.processor_config.as_deref(),
            files.preprocessor_config.as_deref(),
        )?;
        let special = special_tokens(&config, files.generation_config.as_deref())?;
        let weights = Weights::from_buffers(files.weights)?;
        let model = LlavaForConditionalGeneration::load(&weights.builder::<B>(device), &config)?;
        Ok(LlavaPipeline { config, model, processor, special, device: device.clone() })
    }

    /// Positions the decoder takes: `text_config.max_position_embeddings`.
    pub fn context_length(&self) -> usize {
        self.config.text_config.max_position_embeddings
    }

    /// The images' pixel values as the vision tower takes them (`None` for no image).
    ///
    /// # Shapes
    /// - output: `[images, 3, image_size, image_size]`
    pub fn pixel_values(&self, images: &[RgbImage]) -> Option<Tensor<B, 4>> {
        if images.is_empty() {
            return None;
        }
        let (values, shape) = self.processor.pixel_values(images);
        Some(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    /// The ids `generate()` returns for an expanded prompt and its images: the prompt, then the generated ids.
    /// Refuses a prompt that, with `max_new_tokens`, does not fit the context.
    pub fn generate_ids(&self, prompt: &[u32], images: &[RgbImage], config: &GenerationConfig) -> Result<Vec<u32>> {
        check_fits(prompt.len(), config, self.context_length())?;
        let mut out = self.model.generate(&[prompt.to_vec()], self.pixel_values(images), &self.special, config)?;
        Ok(out.remove(0))
    }

    /// Answer `prompt` (rendered, one `<image>` per image) about `images`: process, generate, decode.
    pub fn generate(&self, prompt: &str, images: &[RgbImage], config: &GenerationConfig) -> Result<Completion> {
        let prompt_ids = self.processor.encode(prompt, images.len())?;
        let ids = self.generate_ids(&prompt_ids, images, config)?;
        completion(&self.processor.tokenizer, &self.special, prompt_ids.len(), &ids)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LlavaPipeline<B> {
    /// Load a HuggingFace model directory (see [`LlavaFiles::read_dir`]).
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        Self::load(LlavaFiles::read_dir(dir.as_ref())?, device)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl LlavaFiles {
    /// Read `config.json`, the safetensors weights (as [`crate::llama::LlamaFiles::read_dir`]), `tokenizer.json`
    /// and, when present, `processor_config.json`, `preprocessor_config.json` and `generation_config.json`.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        use crate::files::read_optional;
        let llama = crate::llama::LlamaFiles::read_dir(dir)?;
        Ok(LlavaFiles {
            config: llama.config,
            weights: llama.weights,
            tokenizer: llama.tokenizer,
            processor_config: read_optional(dir, "processor_config.json")?,
            preprocessor_config: read_optional(dir, "preprocessor_config.json")?,
            generation_config: llama.generation_config,
        })
    }
}

/// BOS, EOS and padding ids: `generation_config.json`'s where it names them, else `text_config`'s (the padding
/// id also from the top-level `pad_token_id`).
fn special_tokens(config: &LlavaConfig, generation_config: Option<&[u8]>) -> Result<LlamaSpecialTokens> {
    let text = &config.text_config;
    let defaults = LlamaSpecialTokens {
        bos: text.bos_token_id,
        eos: text.eos_token_id.clone(),
        pad: config.pad_token_id.or(text.pad_token_id),
    };
    Ok(special_tokens_over(defaults, text.vocab_size, generation_config)?.0)
}
