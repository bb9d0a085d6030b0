//! Text in, text out: a LLaMA checkpoint with its tokenizer and generation settings, loaded from the files of
//! a HuggingFace model directory (`config.json`, safetensors, `tokenizer.json`, optional
//! `tokenizer_config.json` and `generation_config.json`).
//!
//! The prompt is tokenized as `tokenizer(prompt)` does (the `tokenizer.json` post-processor adds BOS), and
//! must fit the context with the tokens asked for: `prompt + max_new_tokens ≤ max_position_embeddings`.
//! Nothing is cut silently.

use burn::tensor::backend::Backend;
use serde::Deserialize;

use super::config::{LlamaConfig, TokenIds};
use super::decoder::LlamaSpecialTokens;
use super::model::LlamaForCausalLM;
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
    /// `pad_token_id` take precedence over config.json's.
    pub generation_config: Option<Vec<u8>>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence id was generated (it is the last of `token_ids`).
    Stop,
    /// `max_new_tokens` were generated.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`, as OpenAI-style APIs name them.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated tokens decoded, special tokens left out.
    pub text: String,
    /// The generated ids only (an ending EOS id included).
    pub token_ids: Vec<u32>,
    /// Length of the tokenized prompt, BOS included.
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
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
}

/// A loaded LLaMA checkpoint.
#[derive(Debug)]
pub struct LlamaPipeline<B: Backend> {
    pub config: LlamaConfig,
    pub model: LlamaForCausalLM<B>,
    pub tokenizer: HfTokenizer,
    pub special: LlamaSpecialTokens,
}

impl<B: Backend> LlamaPipeline<B> {
    /// Build from checkpoint files (taken, so the weight bytes are not copied).
    pub fn load(files: LlamaFiles, device: &B::Device) -> Result<Self> {
        let config = LlamaConfig::from_json(&files.config)?;
        let special = special_tokens(&config, files.generation_config.as_deref())?;
        // Long enough never to cut a text within MAX_TEXT_BYTES (a token covers at least one byte; BOS and a
        // Metaspace prefix come on top): prompts longer than the context are refused, not truncated.
        let tokenizer = HfTokenizer::unpadded(&files.tokenizer, MAX_TEXT_BYTES + 16)?;
        let weights = Weights::from_buffers(files.weights)?;
        let model = LlamaForCausalLM::load(&weights.builder::<B>(device), &config)?;
        Ok(LlamaPipeline { config, model, tokenizer, special })
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
        config.validate()?;
        let context = self.context_length();
        if prompt.is_empty() {
            return Err(Error::invalid_input("the prompt has no tokens"));
        }
        if prompt.len() > context {
            return Err(Error::invalid_input(format!(
                "prompt of {} tokens is longer than the model's context of {context} positions",
                prompt.len()
            )));
        }
        if prompt.len() + config.max_new_tokens > context {
            return Err(Error::invalid_input(format!(
                "prompt of {} tokens plus {} new tokens exceeds the model's context of {context} positions",
                prompt.len(),
                config.max_new_tokens
            )));
        }
        let mut out = self.model.generate(&[prompt.to_vec()], &self.special, config)?;
        Ok(out.remove(0))
    }

    /// Continue `prompt`: tokenize, generate, decode.
    pub fn generate(&self, prompt: &str, config: &GenerationConfig) -> Result<Completion> {
        let prompt_ids = self.encode(prompt)?;
        let ids = self.generate_ids(&prompt_ids, config)?;
        let mut token_ids = ids[prompt_ids.len()..].to_vec();
        let finish_reason = match token_ids.iter().position(|t| self.special.eos.contains(t)) {
            Some(end) => {
                token_ids.truncate(end + 1);
                FinishReason::Stop
            }
            None => FinishReason::Length,
        };
        let text = self.tokenizer.decode(&token_ids, true)?;
        Ok(Completion { text, token_ids, prompt_tokens: prompt_ids.len(), finish_reason })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LlamaPipeline<B> {
    /// Load a HuggingFace model directory (see [`LlamaFiles::read_dir`]).
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        Self::load(LlamaFiles::read_dir(dir.as_ref())?, device)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl LlamaFiles {
    /// Read `config.json`, `model.safetensors` (or `model.safetensors.index.json` and its shards),
    /// `tokenizer.json` and, when present, `tokenizer_config.json` and `generation_config.json`.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        use crate::files::{read_file, read_optional};
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a model directory"),
            });
        }
        let read = |name: &str| read_file(dir, name);
        let weights = if dir.join("model.safetensors").is_file() {
            vec![("model.safetensors".to_string(), read("model.safetensors")?)]
        } else if dir.join("model.safetensors.index.json").is_file() {
            let index: serde_json::Value = serde_json::from_slice(&read("model.safetensors.index.json")?)
                .map_err(|e| Error::config("model.safetensors.index.json", e))?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::config("model.safetensors.index.json", "no `weight_map` object"))?;
            let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            shards.sort_unstable();
            shards.dedup();
            shards.into_iter().map(|s| Ok((s.to_string(), read(s)?))).collect::<Result<_>>()?
        } else {
            return Err(Error::Io {
                path: dir.join("model.safetensors").display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read)",
                ),
            });
        };
        Ok(LlamaFiles {
            config: read("config.json")?,
            weights,
            tokenizer: read("tokenizer.json")?,
            tokenizer_config: read_optional(dir, "tokenizer_config.json")?,
            generation_config: read_optional(dir, "generation_config.json")?,
        })
    }
}

/// BOS, EOS and padding ids: `generation_config.json`'s where it names them, else `config.json`'s.
fn special_tokens(config: &LlamaConfig, generation_config: Option<&[u8]>) -> Result<LlamaSpecialTokens> {
    let raw: RawGenerationConfig = match generation_config {
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::config("generation_config.json", e))?,
        None => RawGenerationConfig::default(),
    };
    let special = LlamaSpecialTokens {
        bos: raw.bos_token_id.or(config.bos_token_id),
        eos: raw.eos_token_id.map(|ids| ids.0).unwrap_or_else(|| config.eos_token_id.clone()),
        pad: raw.pad_token_id.or(config.pad_token_id),
    };
    let ids = special.bos.iter().chain(&special.eos).chain(special.pad.iter());
    if let Some(&bad) = ids.into_iter().find(|&&id| id as usize >= config.vocab_size) {
        return Err(Error::config(
            "generation_config.json",
            format!("token id {bad} is outside the vocabulary of {}", config.vocab_size),
        ));
    }
    Ok(special)
}
