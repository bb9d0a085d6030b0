//! Prompt and images in, text out: a LLaVA checkpoint with its processor and generation settings, loaded from the
//! files of a HuggingFace model directory.
//!
//! The prompt is a rendered chat with one `<image>` per image: [`LlavaPipeline::encode_chat`] renders a
//! conversation with the checkpoint's chat template as `processor.apply_chat_template(..., tokenize=True)` does,
//! or the caller gives the text. It must fit the context with the tokens asked for: `prompt (expanded) +
//! max_new_tokens ≤ max_position_embeddings`. Nothing is cut silently.

use std::ops::ControlFlow;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_core::image::RgbImage;

use super::config::LlavaConfig;
use super::model::LlavaForConditionalGeneration;
use super::processor::LlavaProcessor;
use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::generation::GenerationConfig;
use crate::llama::pipeline::{check_fits, completion, special_tokens_over};
use crate::llama::sequence::Sequence;
use crate::llama::{Completion, LlamaSpecialTokens};
use crate::weights::Weights;
use crate::{Error, Result};

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
    /// precedence over config.json's; its `stop_strings` end every generation.
    pub generation_config: Option<Vec<u8>>,
    /// `tokenizer_config.json`, when present (the special tokens a chat template may name).
    pub tokenizer_config: Option<Vec<u8>>,
    /// `chat_template.jinja`, when present (transformers 5 saves the template there).
    pub chat_template: Option<Vec<u8>>,
    /// `chat_template.json`, when present (as llava-hf publish it).
    pub chat_template_json: Option<Vec<u8>>,
}

/// A loaded LLaVA checkpoint.
#[derive(Debug)]
pub struct LlavaPipeline<B: Backend> {
    pub config: LlavaConfig,
    pub model: LlavaForConditionalGeneration<B>,
    pub processor: LlavaProcessor,
    pub special: LlamaSpecialTokens,
    /// `stop_strings` of generation_config.json: they end every generation.
    pub stop_strings: Vec<String>,
    /// The checkpoint's chat template; `None` when it has none.
    pub chat_template: Option<ChatTemplate>,
    device: B::Device,
}

impl<B: Backend> LlavaPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(mut files: LlavaFiles, device: &B::Device) -> Result<Self> {
        let weights = Weights::from_buffers(std::mem::take(&mut files.weights))?;
        Self::load_with(files, &weights, device)
    }

    /// Build from the checkpoint's other files and its indexed weights.
    fn load_with(files: LlavaFiles, weights: &Weights, device: &B::Device) -> Result<Self> {
        let config = LlavaConfig::from_json(&files.config)?;
        let processor = LlavaProcessor::load(
            &config,
            &files.tokenizer,
            files.processor_config.as_deref(),
            files.preprocessor_config.as_deref(),
        )?;
        let (special, stop_strings) = special_tokens(&config, files.generation_config.as_deref())?;
        let chat_template = ChatTemplate::from_checkpoint(
            files.chat_template.as_deref(),
            files.chat_template_json.as_deref(),
            files.tokenizer_config.as_deref(),
        )?;
        let model = LlavaForConditionalGeneration::load(&weights.builder::<B>(device), &config)?;
        Ok(LlavaPipeline { config, model, processor, special, stop_strings, chat_template, device: device.clone() })
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

    /// The expanded prompt ids of a conversation holding `images` image parts, as
    /// `processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)` gives them: rendered
    /// by the chat template, then tokenized with BOS added unless the rendered text starts with it.
    /// A checkpoint without a template is an error naming the way out (a rendered prompt,
    /// [`LlavaProcessor::encode`]).
    pub fn encode_chat(&self, messages: &[ChatMessage], images: usize) -> Result<Vec<u32>> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::invalid_input("this checkpoint has no chat template: give a prompt with <image> in it instead")
        })?;
        let text = template.render(messages, true)?;
        let starts_with_bos = template.tokens().bos_token.as_deref().is_some_and(|bos| text.starts_with(bos));
        self.processor.encode_with(&text, images, !starts_with_bos)
    }

    /// Generate after `prompt` (expanded ids, see [`Self::encode_chat`]) about `images`, handing text to
    /// `on_text` as it is produced, as [`crate::llama::LlamaPipeline::generate_stream`] does: the images'
    /// features fill their positions in the prefill, then tokens are decoded one at a time.
    pub fn generate_stream(
        &self,
        prompt: &[u32],
        images: &[RgbImage],
        config: &GenerationConfig,
        stop: &[String],
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion> {
        self.sequence(prompt, images, config, stop)?.run(on_text)
    }

    /// The generation after `prompt` about `images` as a [`Sequence`] to advance step by step, alone or decoded
    /// together with others (see [`crate::llama::LlamaPipeline::sequence`]). The vision tower runs here: the
    /// prompt's input embeddings, image features in place, wait for the prefill.
    pub fn sequence(
        &self,
        prompt: &[u32],
        images: &[RgbImage],
        config: &GenerationConfig,
        stop: &[String],
    ) -> Result<Sequence<'_, B>> {
        check_fits(prompt.len(), config, self.context_length())?;
        let embeds = self.model.inputs_embeds(&[prompt.to_vec()], self.pixel_values(images))?;
        let stops: Vec<String> = self.stop_strings.iter().chain(stop).cloned().collect();
        let (model, tokenizer) = (&self.model.language_model, &self.processor.tokenizer);
        Sequence::new(model, prompt, Some(embeds), &self.special, &stops, config, tokenizer)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LlavaPipeline<B> {
    /// Load a HuggingFace model directory (the files of [`LlavaFiles::read_dir`]), its weights read from disk
    /// tensor by tensor: the checkpoint is never in memory beside the model.
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let files = LlavaFiles::read_dir_except_weights(dir)?;
        Self::load_with(files, &crate::files::open_safetensors(dir)?, device)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl LlavaFiles {
    /// Read `config.json`, the safetensors weights (as [`crate::llama::LlamaFiles::read_dir`]), `tokenizer.json`
    /// and, when present, `processor_config.json`, `preprocessor_config.json`, `generation_config.json`,
    /// `tokenizer_config.json`, `chat_template.jinja` and `chat_template.json`.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let weights = crate::files::read_safetensors(dir)?;
        Ok(LlavaFiles { weights, ..Self::read_dir_except_weights(dir)? })
    }

    /// [`Self::read_dir`] without the weights (left empty).
    fn read_dir_except_weights(dir: &std::path::Path) -> Result<Self> {
        use crate::files::read_optional;
        let llama = crate::llama::LlamaFiles::read_dir_except_weights(dir)?;
        Ok(LlavaFiles {
            config: llama.config,
            weights: Vec::new(),
            tokenizer: llama.tokenizer,
            processor_config: read_optional(dir, "processor_config.json")?,
            preprocessor_config: read_optional(dir, "preprocessor_config.json")?,
            generation_config: llama.generation_config,
            tokenizer_config: llama.tokenizer_config,
            chat_template: llama.chat_template,
            chat_template_json: read_optional(dir, "chat_template.json")?,
        })
    }
}

/// BOS, EOS and padding ids: `generation_config.json`'s where it names them, else `text_config`'s (the padding
/// id also from the top-level `pad_token_id`); generation_config.json's stop strings.
fn special_tokens(config: &LlavaConfig, generation_config: Option<&[u8]>) -> Result<(LlamaSpecialTokens, Vec<String>)> {
    let text = &config.text_config;
    let defaults = LlamaSpecialTokens {
        bos: text.bos_token_id,
        eos: text.eos_token_id.clone(),
        pad: config.pad_token_id.or(text.pad_token_id),
    };
    special_tokens_over(defaults, text.vocab_size, generation_config)
}
