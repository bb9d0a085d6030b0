//! BLIP configuration, deserialised from the checkpoint's `config.json` with HF key names and
//! `transformers`' defaults (which are Salesforce/blip-image-captioning-base's values).
//!
//! Reference: `transformers/models/blip/configuration_blip.py` (transformers v5.23.0).

use serde::Deserialize;

use crate::{Error, Result, nn::Activation};

/// The BERT decoder (`text_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the image states the cross-attention reads; `BlipConfig` sets it to the vision width.
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// `[DEC]`: replaces the prompt's first token (`[CLS]`) and starts unconditional captions.
    pub bos_token_id: u32,
    pub pad_token_id: u32,
    /// `[SEP]`: ends a caption (BLIP's `generate()` passes it as `eos_token_id`).
    pub sep_token_id: u32,
    /// Appended to the unconditional prompt, then dropped with the prompt's last token.
    pub eos_token_id: u32,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        BlipTextConfig {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            pad_token_id: 0,
            sep_token_id: 102,
            eos_token_id: 2,
        }
    }
}

/// The ViT image encoder (`vision_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        BlipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl BlipVisionConfig {
    /// Patches along one side of the image.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patches plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// `BlipConfig`: both parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlipConfig {
    pub text_config: BlipTextConfig,
    pub vision_config: BlipVisionConfig,
}

#[derive(Deserialize)]
struct RawBlipConfig {
    #[serde(default)]
    text_config: Option<BlipTextConfig>,
    #[serde(default)]
    vision_config: Option<BlipVisionConfig>,
    #[serde(default)]
    model_type: Option<String>,
}

impl BlipConfig {
    /// Parse a checkpoint's `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawBlipConfig = serde_json::from_slice(bytes).map_err(|e| Error::config("config.json", e))?;
        if let Some(model_type) = raw.model_type.as_deref()
            && model_type != "blip"
        {
            return Err(Error::config("config.json", format!("model_type is `{model_type}`, expected `blip`")));
        }
        let mut config = BlipConfig {
            text_config: raw.text_config.unwrap_or_default(),
            vision_config: raw.vision_config.unwrap_or_default(),
        };
        // `BlipConfig.__post_init__`: the decoder cross-attends to the vision tower's states.
        config.text_config.encoder_hidden_size = config.vision_config.hidden_size;
        config.validate()?;
        Ok(config)
    }

    /// Salesforce/blip-image-captioning-base: the defaults of `BlipConfig()`.
    pub fn base() -> Self {
        BlipConfig::default()
    }

    /// Salesforce/blip-image-captioning-large: a ViT-L/16 image encoder, the same decoder.
    pub fn large() -> Self {
        let vision_config = BlipVisionConfig {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            ..BlipVisionConfig::default()
        };
        let text_config = BlipTextConfig { encoder_hidden_size: 1024, ..BlipTextConfig::default() };
        BlipConfig { text_config, vision_config }
    }

    /// Reject configurations the architecture cannot run, with the reason.
    pub fn validate(&self) -> Result<()> {
        let (v, t) = (&self.vision_config, &self.text_config);
        let fail = |msg: String| Err(Error::config("config.json", msg));
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return fail(format!("image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size));
        }
        for (part, hidden, heads) in
            [("vision", v.hidden_size, v.num_attention_heads), ("text", t.hidden_size, t.num_attention_heads)]
        {
            if heads == 0 || hidden % heads != 0 {
                return fail(format!("{part} hidden_size {hidden} is not divisible by num_attention_heads {heads}"));
            }
        }
        if t.max_position_embeddings < 2 {
            return fail("max_position_embeddings must be at least 2".into());
        }
        for (name, id) in [("bos", t.bos_token_id), ("pad", t.pad_token_id), ("sep", t.sep_token_id)] {
            if id as usize >= t.vocab_size {
                return fail(format!("{name}_token_id {id} is outside the vocabulary of {}", t.vocab_size));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_blip_base() {
        let config = BlipConfig::from_json(b"{}").unwrap();
        assert_eq!(config, BlipConfig::base());
        assert_eq!(config.vision_config.num_positions(), 577);
    }

    #[test]
    fn decoder_reads_the_vision_width() {
        let json = br#"{"model_type": "blip", "vision_config": {"hidden_size": 1024, "num_attention_heads": 16},
                        "text_config": {"encoder_hidden_size": 768}}"#;
        assert_eq!(BlipConfig::from_json(json).unwrap().text_config.encoder_hidden_size, 1024);
    }

    #[test]
    fn inconsistent_configs_are_rejected_with_reason() {
        let err = BlipConfig::from_json(br#"{"vision_config": {"patch_size": 15}}"#).unwrap_err();
        assert!(err.to_string().contains("not a multiple of patch_size"), "{err}");
        let err = BlipConfig::from_json(br#"{"model_type": "clip"}"#).unwrap_err();
        assert!(err.to_string().contains("expected `blip`"), "{err}");
        let err = BlipConfig::from_json(br#"{"text_config": {"vocab_size": 100}}"#).unwrap_err();
        assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    }
}
