//! LLaMA (Touvron et al. 2023; LLaMA 2 and 3) as a text model, as published by Meta and ported by
//! `transformers`: a decoder-only transformer with RMSNorm, rotary embeddings (`default`, `linear` and `llama3`
//! scaling), grouped-query attention and a SiLU-gated MLP.
//!
//! Reference: `LlamaForCausalLM` in `transformers/models/llama/modeling_llama.py` (transformers v5.23.0).
//!
//! - [`config`]: `config.json`, both rotary layouts (`rope_theta` + `rope_scaling`, and `rope_parameters`);
//! - [`rope`]: the inverse frequencies, cos/sin and `rotate_half`; [`norm`]: `LlamaRMSNorm`;
//! - [`attention`]: grouped-query causal attention; [`mlp`]: the gated feed-forward block;
//! - [`cache`]: [`KvCache`], preallocated per layer, filled in place, length tracked, resettable;
//! - [`model`]: [`LlamaModel`] and [`LlamaForCausalLM`], loadable under any prefix (LLaVA's too);
//! - [`decoder`]: [`LlamaDecoder`] for the shared [`crate::generation`] search, and `generate()`;
//! - [`pipeline`]: [`LlamaPipeline`], text in, text out, with the checkpoint's tokenizer and EOS ids;
//! - [`sequence`]: one answer generated step by step as text ([`Sequence`]), and several stepped together in
//!   one forward pass ([`step_together`]: continuous batching, prefills and decoding steps mixed);
//! - [`gguf`]: the same pipeline from a llama.cpp GGUF file ([`LlamaPipeline::from_gguf`]): config, tokenizer and
//!   weights from its metadata and tensors, as transformers loads them.

pub mod attention;
pub mod cache;
pub mod config;
pub mod decoder;
pub mod gguf;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod pipeline;
pub mod rope;
pub mod sequence;

pub use cache::KvCache;
pub use config::{LlamaConfig, RopeParameters, RopeScaling};
pub use decoder::{LlamaDecoder, LlamaSpecialTokens};
pub use gguf::{GgufLlamaWeights, GgufSpecialIds};
pub use model::{LlamaForCausalLM, LlamaModel};
pub use pipeline::{LlamaFiles, LlamaPipeline};
pub use rope::RotaryEmbedding;
pub use sequence::{Completion, FinishReason, Sequence, Step, step_together};
