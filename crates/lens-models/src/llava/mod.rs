//! LLaVA-1.5 (Liu et al. 2023) as published by llava-hf and ported by `transformers`: a CLIP vision tower whose
//! hidden states, projected by a two-layer MLP, take the place of the `<image>` tokens of a LLaMA prompt.
//!
//! Reference: `LlavaForConditionalGeneration` and `LlavaProcessor` in `transformers/models/llava/`
//! (transformers v5.23.0).
//!
//! - [`config`]: `config.json` (`vision_config`, `text_config`, `vision_feature_layer` int or list,
//!   `vision_feature_select_strategy`, projector settings) with transformers' defaults;
//! - [`model`]: [`LlavaForConditionalGeneration`] (the vision tower of [`crate::clip`], [`LlavaMultiModalProjector`],
//!   the decoder of [`crate::llama`]), loadable from the published and the transformers 5 tensor names;
//! - [`processor`]: [`LlavaProcessor`], `<image>` expansion, tokenization and pixel values;
//! - [`pipeline`]: [`LlavaPipeline`], a rendered prompt and images in, text out.

pub mod config;
pub mod model;
pub mod pipeline;
pub mod processor;

pub use config::{FeatureSelectStrategy, LlavaConfig, VisionFeatureLayer};
pub use model::{LlavaForConditionalGeneration, LlavaMultiModalProjector, LlavaTensorLayout};
pub use pipeline::{LlavaFiles, LlavaPipeline};
pub use processor::{LlavaProcessor, MAX_IMAGES};
