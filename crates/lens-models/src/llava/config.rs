//! LLaVA configuration: `config.json` of a `LlavaForConditionalGeneration` checkpoint, with transformers' defaults.
//!
//! Reference: `LlavaConfig` in `transformers/models/llava/configuration_llava.py` (transformers v5.23.0).
//!
//! - `vision_config`: a CLIP vision tower (`model_type` `clip_vision_model`). Missing altogether, it is LLaVA-1.5's
//!   (`CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, patch_size=14, image_size=336,
//!   num_hidden_layers=24, num_attention_heads=16, projection_dim=768)`); present, its missing keys take
//!   `CLIPVisionConfig`'s own defaults (as transformers builds a given dict);
//! - `text_config`: a LLaMA decoder ([`LlamaConfig::from_value`]); missing, `LlamaConfig()`'s defaults;
//! - `image_token_index` (also read as `image_token_id`, transformers' alias), default 32000;
//! - `vision_feature_layer`: an index into the vision tower's hidden states (negative from the end), or a list of
//!   them whose states are concatenated on the feature dimension; default -2;
//! - `vision_feature_select_strategy`: `default` drops the class token, `full` keeps it;
//! - `projector_hidden_act` (default `gelu`), `multimodal_projector_bias` (default true);
//! - `image_seq_length` (default 576): read, but never used by the model, as in transformers;
//! - `tie_word_embeddings`: the head is the token embeddings when it or `text_config.tie_word_embeddings` is true
//!   (`LlavaConfig.__post_init__`).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::clip::ClipVisionConfig;
use crate::llama::LlamaConfig;
use crate::nn::Activation;
use crate::{Error, Result};

const FILE: &str = "config.json";

/// `vision_feature_select_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FeatureSelectStrategy {
    /// The class token is dropped: `(image_size / patch_size)^2` features per image.
    #[serde(rename = "default")]
    Default,
    /// The class token is kept: one feature more.
    #[serde(rename = "full")]
    Full,
}

/// `vision_feature_layer`: one hidden-state index or several (concatenated), negative from the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionFeatureLayer {
    One(i64),
    Many(Vec<i64>),
}

impl<'de> Deserialize<'de> for VisionFeatureLayer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(i64),
            Many(Vec<i64>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(i) => VisionFeatureLayer::One(i),
            OneOrMany::Many(v) => VisionFeatureLayer::Many(v),
        })
    }
}

impl VisionFeatureLayer {
    /// The indices as written.
    pub fn indices(&self) -> Vec<i64> {
        match self {
            VisionFeatureLayer::One(i) => vec![*i],
            VisionFeatureLayer::Many(v) => v.clone(),
        }
    }

    /// The indices into the `num_layers + 1` hidden states (`hidden_states[0]` is the encoder's input), as Python
    /// indexes a list; an index outside it is an error.
    pub fn resolve(&self, num_layers: usize) -> Result<Vec<usize>> {
        let states = num_layers as i64 + 1;
        let indices = self.indices();
        if indices.is_empty() {
            return Err(Error::config(FILE, "vision_feature_layer is an empty list"));
        }
        indices
            .into_iter()
            .map(|i| {
                let resolved = if i < 0 { states + i } else { i };
                if (0..states).contains(&resolved) {
                    Ok(resolved as usize)
                } else {
                    Err(Error::config(
                        FILE,
                        format!("vision_feature_layer {i} is outside the {states} hidden states of the vision tower"),
                    ))
                }
            })
            .collect()
    }
}

/// A LLaVA checkpoint's configuration, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub vision_config: ClipVisionConfig,
    /// The decoder's; `tie_word_embeddings` here is the effective one (LLaVA's or the text config's).
    pub text_config: LlamaConfig,
    /// The `<image>` placeholder id (`image_token_index`).
    pub image_token_id: u32,
    pub vision_feature_layer: VisionFeatureLayer,
    pub vision_feature_select_strategy: FeatureSelectStrategy,
    pub projector_hidden_act: Activation,
    pub multimodal_projector_bias: bool,
    /// Image tokens per image as the config states it (unused by the model; old configs omit it).
    pub image_seq_length: usize,
    /// The top-level `pad_token_id` (llava-hf: `<pad>`), if any.
    pub pad_token_id: Option<u32>,
}

/// `config.json` as published; unknown keys are ignored.
#[derive(Deserialize)]
struct RawLlavaConfig {
    #[serde(default)]
    vision_config: Option<Value>,
    #[serde(default)]
    text_config: Option<Value>,
    #[serde(default)]
    image_token_index: Option<u32>,
    #[serde(default)]
    image_token_id: Option<u32>,
    #[serde(default)]
    image_seq_length: Option<usize>,
    #[serde(default)]
    projector_hidden_act: Option<Activation>,
    #[serde(default)]
    vision_feature_select_strategy: Option<FeatureSelectStrategy>,
    #[serde(default)]
    vision_feature_layer: Option<VisionFeatureLayer>,
    #[serde(default)]
    multimodal_projector_bias: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    model_type: Option<String>,
}

impl Default for LlavaConfig {
    /// llava-hf/llava-1.5-7b-hf's architecture: the defaults of `LlavaConfig()`.
    fn default() -> Self {
        LlavaConfig::from_json(b"{}").expect("the defaults are a valid configuration")
    }
}

impl LlavaConfig {
    /// Parse a checkpoint's `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawLlavaConfig = serde_json::from_slice(bytes).map_err(|e| Error::config(FILE, e))?;
        if let Some(model_type) = raw.model_type.as_deref()
            && model_type != "llava"
        {
            return Err(Error::config(FILE, format!("model_type is `{model_type}`, expected `llava`")));
        }
        let vision_config = match raw.vision_config {
            None | Some(Value::Null) => llava_vision_defaults(),
            Some(value) => {
                if let Some(model_type) = value.get("model_type").and_then(Value::as_str)
                    && model_type != "clip_vision_model"
                {
                    return Err(Error::config(
                        FILE,
                        format!("vision_config.model_type is `{model_type}`; only CLIP vision towers are supported"),
                    ));
                }
                ClipVisionConfig::deserialize(&value).map_err(|e| Error::config(FILE, format!("vision_config: {e}")))?
            }
        };
        let mut text_config = match raw.text_config {
            None | Some(Value::Null) => LlamaConfig::default(),
            Some(value) => LlamaConfig::from_value(&value)?,
        };
        text_config.tie_word_embeddings |= raw.tie_word_embeddings.unwrap_or(false);
        let config = LlavaConfig {
            vision_config,
            text_config,
            image_token_id: raw.image_token_index.or(raw.image_token_id).unwrap_or(32000),
            vision_feature_layer: raw.vision_feature_layer.unwrap_or(VisionFeatureLayer::One(-2)),
            vision_feature_select_strategy: raw
                .vision_feature_select_strategy
                .unwrap_or(FeatureSelectStrategy::Default),
            projector_hidden_act: raw.projector_hidden_act.unwrap_or(Activation::Gelu),
            multimodal_projector_bias: raw.multimodal_projector_bias.unwrap_or(true),
            image_seq_length: raw.image_seq_length.unwrap_or(576),
            pad_token_id: raw.pad_token_id,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reject configurations the architecture cannot run, with the reason.
    pub fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let fail = |msg: String| Err(Error::config(FILE, msg));
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return fail(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if v.num_attention_heads == 0 || v.hidden_size % v.num_attention_heads != 0 {
            return fail(format!(
                "vision hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        self.vision_feature_layer.resolve(v.num_hidden_layers)?;
        // `image_token_index` outside the text vocabulary is not refused here: transformers embeds the placeholders
        // too (`get_input_embeddings()(input_ids)`), so such a model fails on the first prompt with an image, and
        // so does this one (`LlamaModel::embed` refuses the id). `LlavaConfig()`'s own defaults are such a pair.
        Ok(())
    }

    /// Image features (and so `<image>` positions) per image: the patches, plus the class token with `full`.
    pub fn image_features_per_image(&self) -> usize {
        let grid = self.vision_config.grid_size();
        grid * grid + usize::from(self.vision_feature_select_strategy == FeatureSelectStrategy::Full)
    }

    /// Width of the features the projector takes: the vision width times the number of layers selected.
    pub fn projector_input_size(&self) -> usize {
        self.vision_config.hidden_size * self.vision_feature_layer.indices().len()
    }
}

/// `LlavaConfig.sub_configs_defaults["vision_config"]`: LLaVA-1.5's CLIP ViT-L/14 at 336 px.
fn llava_vision_defaults() -> ClipVisionConfig {
    ClipVisionConfig {
        hidden_size: 1024,
        intermediate_size: 4096,
        projection_dim: 768,
        num_hidden_layers: 24,
        num_attention_heads: 16,
        image_size: 336,
        patch_size: 14,
        ..ClipVisionConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_llava_1_5_7b() {
        let c = LlavaConfig::default();
        let v = &c.vision_config;
        assert_eq!((v.hidden_size, v.num_hidden_layers, v.image_size, v.patch_size), (1024, 24, 336, 14));
        assert_eq!(v.hidden_act, Activation::QuickGelu);
        assert_eq!((c.text_config.hidden_size, c.text_config.vocab_size, c.image_token_id), (4096, 32000, 32000));
        assert_eq!(c.vision_feature_layer.resolve(24).unwrap(), vec![23]);
        assert_eq!(c.vision_feature_select_strategy, FeatureSelectStrategy::Default);
        assert_eq!((c.projector_hidden_act, c.multimodal_projector_bias), (Activation::Gelu, true));
        assert_eq!((c.image_seq_length, c.image_features_per_image()), (576, 576));
        assert!(!c.text_config.tie_word_embeddings);
    }

    #[test]
    fn keys_aliases_and_lists_are_read() {
        let c = LlavaConfig::from_json(
            br#"{"image_token_id": 5, "vision_feature_layer": [-3, -1], "vision_feature_select_strategy": "full",
                 "text_config": {"vocab_size": 100, "tie_word_embeddings": true},
                 "vision_config": {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 3}}"#,
        )
        .unwrap();
        assert_eq!(c.image_token_id, 5);
        assert_eq!(c.vision_feature_layer.resolve(3).unwrap(), vec![1, 3]);
        assert_eq!(c.projector_input_size(), 32);
        // A given vision_config takes CLIPVisionConfig's defaults, not LLaVA's.
        assert_eq!((c.vision_config.image_size, c.vision_config.patch_size), (224, 32));
        assert_eq!(c.image_features_per_image(), 50);
        assert!(c.text_config.tie_word_embeddings);
        let c = LlavaConfig::from_json(br#"{"tie_word_embeddings": true, "text_config": {"vocab_size": 32064}}"#);
        assert!(c.unwrap().text_config.tie_word_embeddings);
    }

    #[test]
    fn bad_configs_are_rejected_with_reason() {
        let err = |json: &str| LlavaConfig::from_json(json.as_bytes()).unwrap_err().to_string();
        let ok_text = r#""text_config": {"vocab_size": 32064}"#;
        assert!(
            err(&format!(r#"{{{ok_text}, "vision_feature_layer": -26}}"#)).contains("outside the 25 hidden states")
        );
        assert!(err(&format!(r#"{{{ok_text}, "vision_feature_layer": []}}"#)).contains("empty"));
        assert!(err(&format!(r#"{{{ok_text}, "vision_feature_select_strategy": "cls"}}"#)).contains("config.json"));
        assert!(
            err(&format!(r#"{{{ok_text}, "vision_config": {{"model_type": "siglip_vision_model"}}}}"#))
                .contains("only CLIP")
        );
        assert!(err(r#"{"model_type": "llava_next"}"#).contains("expected `llava`"));
        assert!(err(&format!(r#"{{{ok_text}, "projector_hidden_act": "swiglu"}}"#)).contains("config.json"));
    }
}
