//! LLaMA checkpoints from GGUF files (llama.cpp's single-file format), loaded as transformers loads them
//! (`LlamaForCausalLM.from_pretrained(dir, gguf_file=...)`, `AutoTokenizer.from_pretrained(dir, gguf_file=...)`,
//! transformers v5.23.0 `modeling_gguf_pytorch_utils.py` and `integrations/gguf/`), so the logits and ids equal
//! transformers'.
//!
//! - [`LlamaConfig::from_gguf`]: the hyper-parameters from `llama.*` metadata;
//! - [`weights`]: [`GgufLlamaWeights`], the tensors under their HF names, q/k rows un-permuted, dequantized one at
//!   a time when the loader reads them;
//! - [`tokenizer`]: the SentencePiece (`llama`) or byte-level BPE (`gpt2`) tokenizer of the metadata;
//! - [`LlamaPipeline::from_gguf`] (and natively [`LlamaPipeline::from_gguf_file`]): all three, the same pipeline
//!   type as a HuggingFace directory gives.
//!
//! The configuration, as `load_gguf_checkpoint` builds it:
//!
//! | `LlamaConfig` | GGUF | when absent |
//! |---|---|---|
//! | (model type) | `general.architecture` must be `llama` | error |
//! | `max_position_embeddings` | `llama.context_length` | 2048 |
//! | `hidden_size`, `intermediate_size`, `num_hidden_layers` | `llama.embedding_length`, `feed_forward_length`, `block_count` | error |
//! | `num_attention_heads`, `num_key_value_heads` | `llama.attention.head_count`, `head_count_kv` | error, `head_count` |
//! | `head_dim` | `llama.rope.dimension_count` | `hidden_size / num_attention_heads` |
//! | `rms_norm_eps` | `llama.attention.layer_norm_rms_epsilon` | 1e-6 |
//! | `rope_theta` | `llama.rope.freq_base` | 10000 |
//! | `vocab_size` | `llama.vocab_size`, else the length of `tokenizer.ggml.tokens` | error |
//! | `bos_token_id`, `eos_token_id`, `pad_token_id` | `tokenizer.ggml.{bos,eos,padding}_token_id` | 1, 2, none |
//! | `tie_word_embeddings` | no `output.weight` tensor | |
//!
//! Where llama.cpp reads the file differently, transformers is followed, so the logits match it:
//! - rotary scaling: transformers reads no `llama.rope.scaling.*` key and ignores the `rope_freqs.weight` tensor
//!   that convert_hf_to_gguf.py writes for `llama3` rope, so every LLaMA GGUF runs with default (unscaled)
//!   rotary frequencies here, as in transformers. llama.cpp divides the frequencies by `rope_freqs` (LLaMA 3.1+)
//!   and applies linear scaling, so its logits for such files differ from these.
//! - `llama.attention.key_length` (llama.cpp's head size) is not read by transformers; a file where it differs
//!   from `rope.dimension_count` (partial rotary) is refused, since LLaMA rotates the whole head.
//! - end of generation: transformers stops on `eos_token_id` only; the pipeline also stops on
//!   `tokenizer.ggml.eot_token_id` and `eom_token_id` where the file names them, as llama.cpp does (chat models
//!   end their turns with `<|eot_id|>`).
//! - `tokenizer.chat_template`, when present, is the pipeline's chat template (with the BOS / EOS / UNK / padding
//!   tokens the metadata names), as transformers puts it in the tokenizer's config.

mod metadata;
pub mod tokenizer;
pub mod weights;

pub use tokenizer::{GgufSpecialIds, tokenizer_from_metadata};
pub use weights::{GgufLlamaWeights, gguf_name, permute_rows, unpermute_rows};

use burn::tensor::backend::Backend;

use super::config::{LlamaConfig, RopeParameters, RopeScaling};
use super::decoder::LlamaSpecialTokens;
use super::model::LlamaForCausalLM;
use super::pipeline::LlamaPipeline;
use crate::chat_template::{ChatTemplate, TemplateTokens};
use crate::gguf::{Gguf, Metadata};
use crate::nn::Activation;
use crate::tokenizer::{HfTokenizer, MAX_TEXT_BYTES};
use crate::{Error, Result};
use metadata::{float, gguf_error, metadata_error, required, uint};

impl LlamaConfig {
    /// The configuration of a LLaMA GGUF file (see the module docs for every key and default).
    pub fn from_gguf<D: AsRef<[u8]>>(gguf: &Gguf<D>) -> Result<Self> {
        let md = gguf.metadata();
        let arch = md.get_str("general.architecture").map_err(gguf_error)?;
        if arch != "llama" {
            return Err(metadata_error(format!("general.architecture is `{arch}`, expected `llama`")));
        }
        let key = |name: &str| format!("llama.{name}");
        let heads = required(md, &key("attention.head_count"))?;
        let hidden = required(md, &key("embedding_length"))?;
        if heads == 0 {
            return Err(metadata_error("llama.attention.head_count must be positive"));
        }
        let head_dim = uint(md, &key("rope.dimension_count"))?.unwrap_or(hidden / heads);
        if let Some(key_length) = uint(md, &key("attention.key_length"))?
            && key_length != head_dim
        {
            return Err(metadata_error(format!(
                "llama.attention.key_length {key_length} differs from rope.dimension_count {head_dim}: partial \
                 rotary embeddings are not supported"
            )));
        }
        let vocab_size = match uint(md, &key("vocab_size"))? {
            Some(n) => n,
            None => md
                .get_array("tokenizer.ggml.tokens")
                .map_err(|_| metadata_error("no `llama.vocab_size` and no `tokenizer.ggml.tokens`"))?
                .len(),
        };
        let special = GgufSpecialIds::from_metadata(md, vocab_size)?;
        let defaults = LlamaConfig::default();
        let config = LlamaConfig {
            vocab_size,
            hidden_size: hidden,
            intermediate_size: required(md, &key("feed_forward_length"))?,
            num_hidden_layers: required(md, &key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: uint(md, &key("attention.head_count_kv"))?.unwrap_or(heads),
            head_dim,
            hidden_act: Activation::Silu,
            max_position_embeddings: uint(md, &key("context_length"))?.unwrap_or(defaults.max_position_embeddings),
            rms_norm_eps: float(md, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(defaults.rms_norm_eps),
            pad_token_id: special.pad,
            bos_token_id: special.bos.or(defaults.bos_token_id),
            eos_token_id: special.eos.map(|id| vec![id]).unwrap_or(defaults.eos_token_id),
            tie_word_embeddings: gguf.tensor("output.weight").is_none(),
            rope_parameters: RopeParameters {
                rope_theta: float(md, &key("rope.freq_base"))?.unwrap_or(10_000.0),
                scaling: RopeScaling::Default,
            },
            attention_bias: false,
            mlp_bias: false,
        };
        if !(config.rope_parameters.rope_theta.is_finite() && config.rope_parameters.rope_theta > 0.0) {
            return Err(metadata_error(format!(
                "llama.rope.freq_base {} must be a positive number",
                config.rope_parameters.rope_theta
            )));
        }
        // The checks are config.json's; the file they concern is this one.
        config.validate().map_err(|e| match e {
            Error::Config { message, .. } => metadata_error(message),
            other => other,
        })?;
        Ok(config)
    }
}

impl<B: Backend> LlamaPipeline<B> {
    /// Load a LLaMA GGUF file from its bytes: configuration, tokenizer and weights (dequantized to f32 one
    /// tensor at a time; the file's bytes are dropped once the model is built).
    pub fn from_gguf<D: AsRef<[u8]>>(bytes: D, device: &B::Device) -> Result<Self> {
        let gguf = Gguf::parse(bytes).map_err(gguf_error)?;
        let config = LlamaConfig::from_gguf(&gguf)?;
        let (tokenizer, ids) = tokenizer_from_metadata(gguf.metadata())?;
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            return Err(metadata_error(format!(
                "the tokenizer has {} tokens, the model's vocabulary {}",
                tokenizer.get_vocab_size(true),
                config.vocab_size
            )));
        }
        // As `LlamaPipeline::load`: long enough never to cut a text within MAX_TEXT_BYTES.
        let tokenizer = HfTokenizer::from_tokenizer(tokenizer, MAX_TEXT_BYTES + 16)?;
        let mut eos = config.eos_token_id.clone();
        for id in [ids.eot, ids.eom].into_iter().flatten() {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let special = LlamaSpecialTokens { bos: config.bos_token_id, eos, pad: config.pad_token_id };
        let chat_template = chat_template(gguf.metadata(), &ids)?;
        let weights = GgufLlamaWeights::new(&gguf, &config);
        let model = LlamaForCausalLM::load(&weights.builder::<B>(device), &config)?;
        Ok(LlamaPipeline { config, model, tokenizer, special, stop_strings: Vec::new(), chat_template })
    }
}

/// `tokenizer.chat_template` (transformers puts it in the tokenizer's config), with the special tokens the metadata
/// names.
fn chat_template(md: &Metadata, ids: &GgufSpecialIds) -> Result<Option<ChatTemplate>> {
    let source = match md.get("tokenizer.chat_template") {
        None => return Ok(None),
        Some(_) => md.get_str("tokenizer.chat_template").map_err(gguf_error)?,
    };
    let tokens = md.get_str_array("tokenizer.ggml.tokens").map_err(gguf_error)?;
    let token = |id: Option<u32>| id.and_then(|id| tokens.get(id as usize).cloned());
    let names = TemplateTokens {
        bos_token: token(ids.bos),
        eos_token: token(ids.eos),
        unk_token: token(ids.unk),
        pad_token: token(ids.pad),
    };
    ChatTemplate::new(source, names).map(Some)
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> LlamaPipeline<B> {
    /// Read a `.gguf` file and load it ([`Self::from_gguf`]).
    pub fn from_gguf_file(path: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Self::from_gguf(bytes, device)
    }
}
