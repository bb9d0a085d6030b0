//! CLIP configuration, deserialised from the checkpoint's `config.json` with HF key names and
//! `transformers`' defaults.
//!
//! Reference: `transformers/models/clip/configuration_clip.py` (transformers v5.23.0).

use serde::Deserialize;

use super::encoder::EncoderDims;
use crate::{Error, Result, nn::Activation};

/// The text tower (`text_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "text::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "text::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "text::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "text::projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "text::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "text::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "text::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "text::pad_token_id")]
    pub pad_token_id: u32,
    #[serde(default = "text::bos_token_id")]
    pub bos_token_id: u32,
    #[serde(default = "text::eos_token_id")]
    pub eos_token_id: u32,
}

/// The vision tower (`vision_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "vision::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "vision::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "text::projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "vision::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "vision::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "vision::num_channels")]
    pub num_channels: usize,
    #[serde(default = "vision::image_size")]
    pub image_size: usize,
    #[serde(default = "vision::patch_size")]
    pub patch_size: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
}

/// The joint model (`CLIPConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
}

/// `config.json` as published: old checkpoints carry `text_config_dict` / `vision_config_dict`
/// (sometimes next to a `null` `text_config`), newer ones only `text_config` / `vision_config`.
#[derive(Deserialize)]
struct RawClipConfig {
    #[serde(default)]
    text_config: Option<ClipTextConfig>,
    #[serde(default)]
    text_config_dict: Option<ClipTextConfig>,
    #[serde(default)]
    vision_config: Option<ClipVisionConfig>,
    #[serde(default)]
    vision_config_dict: Option<ClipVisionConfig>,
    #[serde(default = "text::projection_dim")]
    projection_dim: usize,
    #[serde(default = "logit_scale_init_value")]
    logit_scale_init_value: f64,
    #[serde(default)]
    model_type: Option<String>,
}

impl ClipConfig {
    /// Parse a checkpoint's `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawClipConfig = serde_json::from_slice(bytes).map_err(|e| Error::config("config.json", e))?;
        if let Some(model_type) = raw.model_type.as_deref()
            && model_type != "clip"
        {
            return Err(Error::config("config.json", format!("model_type is `{model_type}`, expected `clip`")));
        }
        let config = ClipConfig {
            text_config: raw.text_config.or(raw.text_config_dict).unwrap_or_default(),
            vision_config: raw.vision_config.or(raw.vision_config_dict).unwrap_or_default(),
            projection_dim: raw.projection_dim,
            logit_scale_init_value: raw.logit_scale_init_value,
        };
        config.validate()?;
        Ok(config)
    }

    /// openai/clip-vit-base-patch32: the defaults of `CLIPConfig()`.
    pub fn vit_base_patch32() -> Self {
        ClipConfig {
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: text::projection_dim(),
            logit_scale_init_value: logit_scale_init_value(),
        }
    }

    /// Reject configurations the architecture cannot run, with the reason.
    pub fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let t = &self.text_config;
        let fail = |msg: String| Err(Error::config("config.json", msg));
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return fail(format!("image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size));
        }
        for (tower, hidden, heads) in
            [("vision", v.hidden_size, v.num_attention_heads), ("text", t.hidden_size, t.num_attention_heads)]
        {
            if heads == 0 || hidden % heads != 0 {
                return fail(format!("{tower} hidden_size {hidden} is not divisible by num_attention_heads {heads}"));
            }
        }
        if t.max_position_embeddings == 0 || self.projection_dim == 0 {
            return fail("max_position_embeddings and projection_dim must be positive".into());
        }
        Ok(())
    }
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl ClipTextConfig {
    /// The encoder's sizes.
    pub fn encoder_dims(&self) -> EncoderDims {
        EncoderDims {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }
}

impl ClipVisionConfig {
    /// The encoder's sizes.
    pub fn encoder_dims(&self) -> EncoderDims {
        EncoderDims {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps,
            act: self.hidden_act,
        }
    }

    /// Patches along one side of the image.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patches plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn layer_norm_eps() -> f64 {
    1e-5
}
fn logit_scale_init_value() -> f64 {
    2.6592
}

mod text {
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn hidden_size() -> usize {
        512
    }
    pub fn intermediate_size() -> usize {
        2048
    }
    pub fn projection_dim() -> usize {
        512
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn max_position_embeddings() -> usize {
        77
    }
    pub fn pad_token_id() -> u32 {
        1
    }
    pub fn bos_token_id() -> u32 {
        49406
    }
    pub fn eos_token_id() -> u32 {
        49407
    }
}

mod vision {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn num_channels() -> usize {
        3
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_vit_base_patch32() {
        let config = ClipConfig::from_json(b"{}").unwrap();
        assert_eq!(config, ClipConfig::vit_base_patch32());
        assert_eq!(config.vision_config.num_positions(), 50);
    }

    #[test]
    fn legacy_dict_keys_and_null_config_are_read() {
        let json = br#"{"text_config": null, "text_config_dict": {"hidden_size": 64, "num_attention_heads": 4, "eos_token_id": 2},
                        "vision_config_dict": {"patch_size": 16, "hidden_act": "gelu"}, "projection_dim": 256}"#;
        let config = ClipConfig::from_json(json).unwrap();
        assert_eq!(config.text_config.hidden_size, 64);
        assert_eq!(config.text_config.eos_token_id, 2);
        assert_eq!(config.vision_config.patch_size, 16);
        assert_eq!(config.vision_config.hidden_act, Activation::Gelu);
        assert_eq!(config.projection_dim, 256);
    }

    #[test]
    fn inconsistent_configs_are_rejected_with_reason() {
        let err = ClipConfig::from_json(br#"{"vision_config": {"image_size": 224, "patch_size": 30}}"#).unwrap_err();
        assert!(err.to_string().contains("not a multiple of patch_size"), "{err}");
        let err = ClipConfig::from_json(br#"{"text_config": {"hidden_act": "swiglu_unknown"}}"#).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        let err = ClipConfig::from_json(br#"{"model_type": "blip"}"#).unwrap_err();
        assert!(err.to_string().contains("expected `clip`"), "{err}");
    }
}
