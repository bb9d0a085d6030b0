//! Lens models in burn, generic over the backend, compiled for native and wasm32.
//!
//! - [`clip`]: CLIP vision and text towers, projections and the [`clip::ClipPipeline`] that turns images
//!   and text into normalised embeddings.
//! - [`weights`]: HuggingFace safetensors checkpoints read by their published tensor names.
//! - [`tokenizer`]: `tokenizer.json` tokenizers behind the [`tokenizer::TextTokenizer`] trait.

pub mod clip;
pub mod error;
pub mod nn;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
