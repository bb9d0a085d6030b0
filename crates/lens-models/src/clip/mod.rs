//! CLIP (Radford et al. 2021) as published by OpenAI and ported by `transformers`.
//!
//! Reference: `CLIPModel` in `transformers/models/clip/modeling_clip.py` (transformers v5.23.0).
//! [`ClipModel::get_image_features`] / [`ClipModel::get_text_features`] are named after, and return
//! the same values as, the HF methods: projected, not yet normalised.
//!
//! - [`config`]: `config.json` with its two tower configs;
//! - [`encoder`]: the pre-norm transformer encoder both towers share;
//! - [`text_model`], [`vision_model`]: the towers (`CLIPTextTransformer`, `CLIPVisionTransformer`);
//! - [`model`]: [`ClipModel`], the towers, their projections and the logit scale;
//! - [`pipeline`]: [`ClipPipeline`], images and text in, normalised embeddings out ([`ClipTextPipeline`]:
//!   text only);
//! - [`quantize`]: [`quantize_clip`], a checkpoint to a `burn-int8` artifact ([`quantize_clip_text`]: its
//!   text half alone, for the edge);
//! - `onnx` (feature `onnx`): the same pipeline on ONNX exports run by tract.

pub mod config;
pub mod encoder;
#[cfg(not(target_arch = "wasm32"))]
pub mod engine;
pub mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod pipeline;
pub mod quantize;
pub mod text_model;
pub mod vision_model;

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use engine::{ClipSource, LoadedClip};
pub use model::{ClipModel, ClipTextTower, l2_normalize};
pub use pipeline::{ClipFiles, ClipPipeline, ClipTextPipeline, TEXT_FAMILY};
pub use quantize::{clip_tensor_shapes, quantize_clip, quantize_clip_text};
