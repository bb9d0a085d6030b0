//! Lens models in burn, generic over the backend, compiled for native and wasm32.
//!
//! - [`clip`]: CLIP vision and text towers, projections and the [`clip::ClipPipeline`] that turns images
//!   and text into normalised embeddings.
//! - [`bert`]: BERT-family encoders and [`bert::SentenceEmbedder`], sentence embeddings as
//!   sentence-transformers computes them (all-MiniLM-L6-v2).
//! - [`blip`]: BLIP captioning (ViT encoder, BERT decoder with cross-attention) and
//!   [`blip::BlipPipeline`].
//! - [`llama`]: the LLaMA 2/3 decoder (GQA, `llama3` RoPE scaling, preallocated KV cache) and
//!   [`llama::LlamaPipeline`], text in, text out.
//! - [`llava`]: LLaVA-1.5, the CLIP vision tower and a projector feeding the LLaMA decoder, and
//!   [`llava::LlavaPipeline`], prompt and images in, text out.
//! - [`chat_template`]: a checkpoint's Jinja chat template rendered as transformers renders it.
//! - [`generation`]: greedy, beam and sampled decoding with key/value caches, shared by every decoder.
//! - [`artifact`]: the single-file model artifact (header, sections, checksum) the browser and edge load.
//! - [`cpu`]: transformer blocks on host memory, which CPU encoders run instead of burn-ndarray's operations;
//!   [`gemm`]: the host matrix products under them and under every host linear layer.
//! - [`int8`]: int8 matrices and the W8A8 kernel the `burn-int8` artifacts run on.
//! - [`files`]: a checkpoint's files as bytes; [`weights`]: safetensors read by their published names.
//! - [`tokenizer`]: `tokenizer.json` tokenizers behind the [`tokenizer::TextTokenizer`] trait.
//! - [`gguf`]: GGUF files (llama.cpp checkpoints): metadata, tensor infos, F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K
//!   dequantized to f32, every count and offset checked.

pub mod artifact;
pub mod bert;
pub mod blip;
pub mod chat_template;
pub mod clip;
pub mod cpu;
pub mod error;
pub mod files;
pub mod fuzzing;
pub mod gemm;
pub mod generation;
pub mod gguf;
pub mod identity;
pub mod int8;
pub mod llama;
pub mod llava;
pub mod nn;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
