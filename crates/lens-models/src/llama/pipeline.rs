//! Text in, text out: a LLaMA checkpoint with its tokenizer and generation settings, loaded from the files of
//! a HuggingFace model directory (`config.json`, safetensors, `tokenizer.json`, optional
//! `tokenizer_config.json` and `generation_config.json`).
//!
//! The prompt is tokenized as `tokenizer(prompt)` does (the `tokenizer.json` post-processor adds BOS), and
//! must fit the context with the tokens asked for: `prompt + max_new_tokens ≤ max_position_embeddings`.
//! Nothing is cut silently.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use serde::Deserialize;

use super::config::{LlamaConfig, TokenIds};
use super::decoder::LlamaSpecialTokens;
use super::model::LlamaForCausalLM;
use super::sequence::{Completion, FinishReason, Sequence};
use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::generation::GenerationConfig;
use crate::tokenizer::{HfTokenizer, MAX_TEXT_BYTES, TextTokenizer};
use crate::weights::Weights;
use crate::{Error, Result};

/// The files of a LLaMA checkpoint.
#[derive(Debug, Default, Clone)]
pub struct LlamaFiles {
    /// `config.json`
    pub config: Vec<u8>,
    /// `(file name, bytes)` of each safetensors file (one, or the shards of an index).
    pub weights: Vec<(String, Vec<u8>)>,
    /// `tokenizer.json`
    pub tokenizer: Vec<u8>,
    /// `tokenizer_config.json`, when present.
    pub tokenizer_config: Option<Vec<u8>>,
    /// `generation_config.json`, when present: its `eos_token_id` (an int or a list), `bos_token_id` and
    /// `pad_token_id` take precedence over config.json's; its `stop_strings` end every generation.
    pub generation_config: Option<Vec<u8>>,
    /// `chat_template.jinja`, when present (else the template of `tokenizer_config.json`, if any).
    pub chat_template: Option<Vec<u8>>,
}

/// The ids of `generation_config.json` that generation reads.
#[derive(Deserialize, Default)]
struct RawGenerationConfig {
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    /// A string or a list of strings.
    #[serde(default)]
    stop_strings: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A loaded LLaMA checkpoint.
#[derive(Debug)]
pub struct LlamaPipeline<B: Backend> {
    pub config: LlamaConfig,
    pub model: LlamaForCausalLM<B>,
    pub tokenizer: HfTokenizer,
    pub special: LlamaSpecialTokens,
    /// `stop_strings` of generation_config.json: they end every generation.
    pub stop_strings: Vec<String>,
    /// The checkpoint's chat template; `None` for base models that have none.
    pub chat_template: Option<ChatTemplate>,
}

impl<B: Backend> LlamaPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(mut files: LlamaFiles, device: &B::Device) -> Result<Self> {
        let weights = Weights::from_buffers(std::mem::take(&mut files.weights))?;
        Self::load_with(files, &weights, device)
    }

    /// Build from the checkpoint's other files and its indexed weights.
    fn load_with(files: LlamaFiles, weights: &Weights, device: &B::Device) -> Result<Self> {
        let config = LlamaConfig::from_json(&files.config)?;
        let (special, stop_strings) = special_tokens(&config, files.generation_config.as_deref())?;
        let chat_template =
            ChatTemplate::from_checkpoint(files.chat_template.as_deref(), None, files.tokenizer_config.as_deref())?;
        // Long enough never to cut a text within MAX_TEXT_BYTES (a token covers at least one byte; BOS and a
        // Metaspace prefix come on top): prompts longer than the context are refused, not truncated.
        let tokenizer = HfTokenizer::unpadded(&files.tokenizer, MAX_TEXT_BYTES + 16)?;
        let model = LlamaForCausalLM::load(&weights.builder::<B>(device), &config)?;
        Ok(LlamaPipeline { config, model, tokenizer, special, stop_strings, chat_template })
    }

    /// Positions the model takes: `max_position_embeddings`.
    pub fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// `tokenizer(text).input_ids`: the model's special tokens (BOS) included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text)?.ids)
    }

    /// The ids `generate()` returns for a tokenized prompt: the prompt, then the generated ids (see
    /// [`LlamaForCausalLM::generate`]). Refuses a prompt that, with `max_new_tokens`, does not fit the context.
    pub fn generate_ids(&self, prompt: &[u32], config: &GenerationConfig) -> Result<Vec<u32>> {
        check_fits(prompt.len(), config, self.context_length())?;
        let mut out = self.model.generate(&[prompt.to_vec()], &self.special, config)?;
        Ok(out.remove(0))
    }

    /// Continue `prompt`: tokenize, generate, decode.
    pub fn generate(&self, prompt: &str, config: &GenerationConfig) -> Result<Completion> {
        let prompt_ids = self.encode(prompt)?;
        let ids = self.generate_ids(&prompt_ids, config)?;
        completion(&self.tokenizer, &self.special, prompt_ids.len(), &ids)
    }
}

impl<B: Backend> LlamaPipeline<B> {
    /// The prompt of a conversation: rendered by the chat template (which writes BOS itself) and encoded
    /// without special tokens, as `apply_chat_template(messages, add_generation_prompt=True)` encodes it.
    /// A checkpoint without a template is an error naming the way out (a raw prompt, [`Self::encode`]).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::invalid_input("this checkpoint has no chat template: give a raw prompt instead"))?;
        let text = template.render(messages, true)?;
        self.tokenizer.encode_with(&text, false)
    }

    /// Generate after `prompt` (token ids) with greedy search or sampling, handing text to `on_text` as it is
    /// produced: every piece whole (a character spread over byte tokens comes when complete), special tokens
    /// left out, nothing after a stop string (`stop` and the checkpoint's own) nor the stop string itself.
    /// `ControlFlow::Break` from `on_text` ends generation (`FinishReason::Cancelled`). The pieces put
    /// together are the completion's `text`.
    pub fn generate_stream(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        stop: &[String],
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion> {
        self.sequence(prompt, config, stop)?.run(on_text)
    }

    /// The generation after `prompt` as a [`Sequence`] to advance step by step, alone or decoded together with
    /// others ([`crate::llama::step_together`]); text as [`Self::generate_stream`] hands it out. Refuses a
    /// prompt that, with `max_new_tokens`, does not fit the context.
    pub fn sequence(&self, prompt: &[u32], config: &GenerationConfig, stop: &[String]) -> Result<Sequence<'_, B>> {
        check_fits(prompt.len(), config, self.context_length())?;
        let stops: Vec<String> = self.stop_strings.iter().chain(stop).cloned().collect();
        Sequence::new(&self.model, prompt, None, &self.special, &stops, config, &self.tokenizer)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LlamaPipeline<B> {
    /// Load a HuggingFace model directory (the files of [`LlamaFiles::read_dir`]), its weights read from disk
    /// tensor by tensor: the checkpoint is never in memory beside the model.
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let files = LlamaFiles::read_dir_except_weights(dir)?;
        Self::load_with(files, &crate::files::open_safetensors(dir)?, device)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl LlamaFiles {
    /// Read `config.json`, `model.safetensors` (or `model.safetensors.index.json` and its shards),
    /// `tokenizer.json` and, when present, `tokenizer_config.json`, `generation_config.json` and
    /// `chat_template.jinja`.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let weights = crate::files::read_safetensors(dir)?;
        Ok(LlamaFiles { weights, ..Self::read_dir_except_weights(dir)? })
    }

    /// [`Self::read_dir`] without the weights (left empty).
    pub(crate) fn read_dir_except_weights(dir: &std::path::Path) -> Result<Self> {
        use crate::files::{check_model_dir, read_file, read_optional};
        check_model_dir(dir)?;
        Ok(LlamaFiles {
            config: read_file(dir, "config.json")?,
            weights: Vec::new(),
            tokenizer: read_file(dir, "tokenizer.json")?,
            tokenizer_config: read_optional(dir, "tokenizer_config.json")?,
            generation_config: read_optional(dir, "generation_config.json")?,
            chat_template: read_optional(dir, "chat_template.jinja")?,
        })
    }
}

/// BOS, EOS and padding ids: `generation_config.json`'s where it names them, else `config.json`'s.
fn special_tokens(config: &LlamaConfig, generation_config: Option<&[u8]>) -> Result<(LlamaSpecialTokens, Vec<String>)> {
    let defaults =
        LlamaSpecialTokens { bos: config.bos_token_id, eos: config.eos_token_id.clone(), pad: config.pad_token_id };
    special_tokens_over(defaults, config.vocab_size, generation_config)
}

/// `generation_config.json`'s BOS, EOS and padding ids over `defaults` (what the model's config says), each
/// checked against the vocabulary, and its stop strings.
pub(crate) fn special_tokens_over(
    defaults: LlamaSpecialTokens,
    vocab_size: usize,
    generation_config: Option<&[u8]>,
) -> Result<(LlamaSpecialTokens, Vec<String>)> {
    let raw: RawGenerationConfig = match generation_config {
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::config("generation_config.json", e))?,
        None => RawGenerationConfig::default(),
    };
    let special = LlamaSpecialTokens {
        bos: raw.bos_token_id.or(defaults.bos),
        eos: raw.eos_token_id.map(|ids| ids.0).unwrap_or(defaults.eos),
        pad: raw.pad_token_id.or(defaults.pad),
    };
    let ids = special.bos.iter().chain(&special.eos).chain(special.pad.iter());
    if let Some(&bad) = ids.into_iter().find(|&&id| id as usize >= vocab_size) {
        return Err(Error::config(
            "generation_config.json",
            format!("token id {bad} is outside the vocabulary of {vocab_size}"),
        ));
    }
    let stop_strings = match raw.stop_strings {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    Ok((special, stop_strings))
}

/// The completion in `ids` (the prompt's `prompt_len` ids, then the generated ones): the generated ids up to
/// and with the first EOS id, and their text.
pub(crate) fn completion(
    tokenizer: &HfTokenizer,
    special: &LlamaSpecialTokens,
    prompt_len: usize,
    ids: &[u32],
) -> Result<Completion> {
    let mut token_ids = ids[prompt_len..].to_vec();
    let finish_reason = match token_ids.iter().position(|t| special.eos.contains(t)) {
        Some(end) => {
            token_ids.truncate(end + 1);
            FinishReason::Stop
        }
        None => FinishReason::Length,
    };
    let text = tokenizer.decode(&token_ids, true)?;
    Ok(Completion { text, token_ids, prompt_tokens: prompt_len, finish_reason })
}

/// A prompt of `prompt_len` tokens with `max_new_tokens` after it must fit a context of `context` positions.
pub fn check_fits(prompt_len: usize, config: &GenerationConfig, context: usize) -> Result<()> {
    config.validate()?;
    if prompt_len == 0 {
        return Err(Error::invalid_input("the prompt has no tokens"));
    }
    if prompt_len > context {
        return Err(Error::invalid_input(format!(
            "prompt of {prompt_len} tokens is longer than the model's context of {context} positions"
        )));
    }
    if prompt_len + config.max_new_tokens > context {
        return Err(Error::invalid_input(format!(
            "prompt of {prompt_len} tokens plus {} new tokens exceeds the model's context of {context} positions",
            config.max_new_tokens
        )));
    }
    Ok(())
}
