//! BLIP captioning (Li et al. 2022) as published by Salesforce and ported by `transformers`:
//! a ViT image encoder and a BERT decoder that cross-attends to its patch states.
//!
//! Reference: `BlipForConditionalGeneration` in `transformers/models/blip/modeling_blip.py` and
//! `BlipTextLMHeadModel` in `modeling_blip_text.py` (transformers v5.23.0).
//!
//! - [`config`]: `config.json` with its two tower configs;
//! - [`vision_model`]: the ViT; [`text_model`]: the BERT decoder with cross-attention and its cache;
//! - [`model`]: [`BlipForConditionalGeneration`], teacher-forced logits and `generate()`;
//! - [`pipeline`]: [`BlipPipeline`], images in, captions out.

pub mod config;
pub mod model;
pub mod pipeline;
pub mod text_model;
pub mod vision_model;

pub use config::{BlipConfig, BlipTextConfig, BlipVisionConfig};
pub use model::{BlipForConditionalGeneration, BlipSpecialTokens};
pub use pipeline::{BlipFiles, BlipPipeline, CaptionOptions};
