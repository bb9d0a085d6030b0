//! GGUF files (llama.cpp's single-file checkpoints) read by Lens itself, so the same code loads them
//! natively and in wasm32, and every quantized block is checked bit for bit against gguf-py.
//!
//! - [`Gguf`] ([`file`]): parses a file from bytes (or [`Gguf::open`] natively), checks every count,
//!   length and offset, and hands out tensors as bytes or f32 with their PyTorch-order shape.
//! - [`Metadata`] ([`metadata`]), [`Value`] and [`Array`] ([`value`]): key/values with typed getters.
//! - [`TensorInfo`] ([`tensor`]): name, dimensions (GGUF order and PyTorch order), type, offset.
//! - [`GgmlType`] ([`ggml_type`]): ggml's type ids and block sizes; [`dequantize`] ([`dequant`]) turns
//!   F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K blocks into f32.
//! - [`Error`] ([`error`]) and [`limits`]: what is refused and up to what sizes.
//!
//! Model hyper-parameters, LLaMA's q/k permutation and tokenizers from metadata are built on top of this,
//! elsewhere.

mod cursor;
pub mod dequant;
pub mod error;
pub mod file;
pub mod ggml_type;
pub mod limits;
pub mod metadata;
pub mod tensor;
pub mod value;

pub use dequant::{dequantize, f16_to_f32};
pub use error::{Error, Result};
pub use file::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, Gguf, MAGIC};
pub use ggml_type::GgmlType;
pub use limits::MAX_ARRAY_DEPTH;
pub use metadata::Metadata;
pub use tensor::TensorInfo;
pub use value::{Array, Value, ValueType};
