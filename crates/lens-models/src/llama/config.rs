//! LLaMA configuration, deserialised from the checkpoint's `config.json` with HF key names and
//! `transformers`' defaults (which are meta-llama/Llama-2-7b-hf's values).
//!
//! Reference: `LlamaConfig` in `transformers/models/llama/configuration_llama.py` and the RoPE parameter
//! handling of `transformers/modeling_rope_utils.py` and `transformers/configuration_utils.py`
//! (transformers v5.23.0). Both layouts of the rotary settings are read:
//!
//! - the published one (LLaMA 2, LLaMA 3.1 on the hub): top-level `rope_theta` and `rope_scaling`
//!   (`{"rope_type" | "type": ..., "factor": ...}` or `null`);
//! - transformers 5's: `rope_parameters` (`{"rope_type": ..., "rope_theta": ..., ...}`).
//!
//! They resolve as `RotaryEmbeddingConfigMixin.convert_rope_params_to_dict` and `standardize_rope_params`
//! resolve them: `rope_scaling` wins when it is a non-empty object (`rope_scaling or rope_parameters`);
//! `rope_theta` comes from that object, else from the top level, else 10000; `rope_type` from `rope_type`,
//! else `type`, else `default`; for `llama3`, `original_max_position_embeddings` comes from the top level
//! when present there (`standardize_rope_params` assigns it when the rope init function runs), else from
//! the object, else `max_position_embeddings`.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::nn::Activation;
use crate::{Error, Result};

const FILE: &str = "config.json";

/// How the rotary frequencies are derived from `1 / theta^(2i / head_dim)` (`rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// `default`: the frequencies as they are (LLaMA 1 and 2).
    Default,
    /// `linear`: every frequency divided by `factor` (position interpolation).
    Linear { factor: f64 },
    /// `llama3` (LLaMA 3.1 and later): long wavelengths divided by `factor`, short ones kept, the band
    /// between smoothly interpolated.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
}

/// The resolved rotary settings: transformers' `config.rope_parameters` after standardisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParameters {
    pub rope_theta: f64,
    pub scaling: RopeScaling,
}

/// `LlamaConfig`, with every default and derived value resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); `num_attention_heads` when the config has none.
    pub num_key_value_heads: usize,
    /// Width of one head; `hidden_size / num_attention_heads` when the config has none.
    pub head_dim: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    /// One id or several (`eos_token_id` is an int or a list); empty when `null`.
    pub eos_token_id: Vec<u32>,
    /// The LM head is `embed_tokens` itself (no `lm_head.weight` is read).
    pub tie_word_embeddings: bool,
    pub rope_parameters: RopeParameters,
    pub attention_bias: bool,
    pub mlp_bias: bool,
}

/// `config.json` as published; unknown keys are ignored, as transformers keeps them as attributes.
#[derive(Deserialize)]
struct RawLlamaConfig {
    #[serde(default = "defaults::vocab_size")]
    vocab_size: usize,
    #[serde(default = "defaults::hidden_size")]
    hidden_size: usize,
    #[serde(default = "defaults::intermediate_size")]
    intermediate_size: usize,
    #[serde(default = "defaults::num_hidden_layers")]
    num_hidden_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "defaults::hidden_act")]
    hidden_act: Activation,
    #[serde(default = "defaults::max_position_embeddings")]
    max_position_embeddings: usize,
    #[serde(default = "defaults::rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "defaults::bos_token_id")]
    bos_token_id: Option<u32>,
    #[serde(default = "defaults::eos_token_id")]
    eos_token_id: TokenIds,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<Map<String, Value>>,
    #[serde(default)]
    rope_parameters: Option<Map<String, Value>>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    partial_rotary_factor: Option<f64>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    model_type: Option<String>,
}

/// A token id field that is an int, a list of ints or `null` (`eos_token_id` in config.json and
/// generation_config.json).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenIds(pub Vec<u32>);

impl<'de> Deserialize<'de> for TokenIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(u32),
            Many(Vec<u32>),
        }
        Ok(TokenIds(match Option::<OneOrMany>::deserialize(deserializer)? {
            None => Vec::new(),
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
        }))
    }
}

impl Default for LlamaConfig {
    /// meta-llama/Llama-2-7b-hf: the defaults of `LlamaConfig()`.
    fn default() -> Self {
        LlamaConfig::from_json(b"{}").expect("the defaults are a valid configuration")
    }
}

impl LlamaConfig {
    /// Parse a checkpoint's `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawLlamaConfig = serde_json::from_slice(bytes).map_err(|e| Error::config(FILE, e))?;
        Self::from_raw(raw)
    }

    /// Read an already parsed `config.json` object (LLaVA's `text_config`).
    pub fn from_value(value: &Value) -> Result<Self> {
        let raw: RawLlamaConfig = RawLlamaConfig::deserialize(value).map_err(|e| Error::config(FILE, e))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawLlamaConfig) -> Result<Self> {
        if let Some(model_type) = raw.model_type.as_deref()
            && model_type != "llama"
        {
            return Err(Error::config(FILE, format!("model_type is `{model_type}`, expected `llama`")));
        }
        if raw.num_attention_heads == 0 {
            return Err(Error::config(FILE, "num_attention_heads must be positive"));
        }
        let rope_parameters = resolve_rope(&raw)?;
        let config = LlamaConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            // `LlamaConfig.__post_init__`.
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / raw.num_attention_heads),
            hidden_act: raw.hidden_act,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            pad_token_id: raw.pad_token_id,
            bos_token_id: raw.bos_token_id,
            eos_token_id: raw.eos_token_id.0,
            tie_word_embeddings: raw.tie_word_embeddings,
            rope_parameters,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
        };
        config.validate()?;
        Ok(config)
    }

    /// Reject configurations the architecture cannot run, with the reason.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::config(FILE, msg));
        let (hidden, heads, kv) = (self.hidden_size, self.num_attention_heads, self.num_key_value_heads);
        if self.vocab_size == 0 || hidden == 0 || self.intermediate_size == 0 {
            return fail("vocab_size, hidden_size and intermediate_size must be positive".into());
        }
        // `LlamaConfig.validate_architecture`.
        if heads == 0 || hidden % heads != 0 {
            return fail(format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"));
        }
        if kv == 0 || heads % kv != 0 {
            return fail(format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return fail(format!("head_dim {} must be even and positive (rotary halves)", self.head_dim));
        }
        if self.max_position_embeddings == 0 {
            return fail("max_position_embeddings must be positive".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return fail(format!("rms_norm_eps {} must be a non-negative number", self.rms_norm_eps));
        }
        let named = [("bos_token_id", self.bos_token_id), ("pad_token_id", self.pad_token_id)];
        let eos = self.eos_token_id.iter().map(|&id| ("eos_token_id", Some(id)));
        for (name, id) in named.into_iter().chain(eos) {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return fail(format!("{name} {id} is outside the vocabulary of {}", self.vocab_size));
            }
        }
        Ok(())
    }

    /// Query heads per key/value head (`num_key_value_groups`).
    pub fn num_key_value_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

/// `rope_parameters` as transformers resolves them (see the module docs).
fn resolve_rope(raw: &RawLlamaConfig) -> Result<RopeParameters> {
    let fail = |msg: String| Err(Error::config(FILE, msg));
    let empty = Map::new();
    let params = match (&raw.rope_scaling, &raw.rope_parameters) {
        (Some(scaling), _) if !scaling.is_empty() => scaling,
        (_, Some(params)) => params,
        _ => &empty,
    };
    let number = |key: &str| -> Result<Option<f64>> {
        match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::config(FILE, format!("rope `{key}` is not a number"))),
        }
    };
    let rope_theta = number("rope_theta")?.or(raw.rope_theta).unwrap_or(10_000.0);
    if !(rope_theta.is_finite() && rope_theta > 0.0) {
        return fail(format!("rope_theta {rope_theta} must be a positive number"));
    }
    let rope_type = match params.get("rope_type").or_else(|| params.get("type")) {
        None | Some(Value::Null) => "default",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return fail(format!("rope_type {other} is not a string")),
    };
    let required = |key: &str| -> Result<f64> {
        let value = number(key)?
            .ok_or_else(|| Error::config(FILE, format!("rope_type `{rope_type}` needs `{key}` in its parameters")))?;
        if !(value.is_finite() && value > 0.0) {
            return Err(Error::config(FILE, format!("rope `{key}` {value} must be a positive number")));
        }
        Ok(value)
    };
    // `partial_rotary_factor` is read by the `linear` and `llama3` init functions only; LLaMA rotates the
    // whole head, so a fraction would not even run in the reference.
    let partial = number("partial_rotary_factor")?.or(raw.partial_rotary_factor);
    if rope_type != "default"
        && let Some(p) = partial.filter(|&p| p != 1.0)
    {
        return fail(format!("partial_rotary_factor {p} is not supported: LLaMA rotates the whole head"));
    }
    let scaling = match rope_type {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: required("factor")? },
        "llama3" => {
            let (low, high) = (required("low_freq_factor")?, required("high_freq_factor")?);
            if low == high {
                return fail(format!("llama3 rope: low_freq_factor and high_freq_factor are both {low}"));
            }
            let original = match (raw.original_max_position_embeddings, params.get("original_max_position_embeddings"))
            {
                (Some(top_level), _) => top_level,
                (None, None | Some(Value::Null)) => raw.max_position_embeddings,
                (None, Some(v)) => v.as_u64().map(|v| v as usize).filter(|&v| v > 0).ok_or_else(|| {
                    Error::config(FILE, format!("rope original_max_position_embeddings {v} is not a positive integer"))
                })?,
            };
            RopeScaling::Llama3 {
                factor: required("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            }
        }
        other => {
            return fail(format!("rope_type `{other}` is not supported (default, linear and llama3 are)"));
        }
    };
    Ok(RopeParameters { rope_theta, scaling })
}

/// `LlamaConfig`'s defaults (transformers v5.23.0).
mod defaults {
    use crate::nn::Activation;

    use super::TokenIds;

    pub fn vocab_size() -> usize {
        32000
    }
    pub fn hidden_size() -> usize {
        4096
    }
    pub fn intermediate_size() -> usize {
        11008
    }
    pub fn num_hidden_layers() -> usize {
        32
    }
    pub fn num_attention_heads() -> usize {
        32
    }
    pub fn hidden_act() -> Activation {
        Activation::Silu
    }
    pub fn max_position_embeddings() -> usize {
        2048
    }
    pub fn rms_norm_eps() -> f64 {
        1e-6
    }
    pub fn bos_token_id() -> Option<u32> {
        Some(1)
    }
    pub fn eos_token_id() -> TokenIds {
        TokenIds(vec![2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_llama_2_7b() {
        let c = LlamaConfig::from_json(b"{}").unwrap();
        assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_key_value_heads, c.head_dim), (4096, 32, 32, 128));
        assert_eq!((c.bos_token_id, c.eos_token_id.as_slice(), c.pad_token_id), (Some(1), &[2][..], None));
        assert_eq!(c.rope_parameters, RopeParameters { rope_theta: 10_000.0, scaling: RopeScaling::Default });
        assert!(!c.tie_word_embeddings && !c.attention_bias && !c.mlp_bias);
        assert_eq!(c, LlamaConfig::default());
    }

    #[test]
    fn token_ids_are_an_int_a_list_or_null() {
        let c = LlamaConfig::from_json(br#"{"eos_token_id": [128001, 128009], "vocab_size": 128256}"#).unwrap();
        assert_eq!(c.eos_token_id, vec![128001, 128009]);
        let c = LlamaConfig::from_json(br#"{"eos_token_id": null, "bos_token_id": null}"#).unwrap();
        assert!(c.eos_token_id.is_empty() && c.bos_token_id.is_none());
    }

    #[test]
    fn rope_layouts_resolve_alike() {
        let legacy = br#"{"rope_theta": 500000.0, "max_position_embeddings": 131072, "rope_scaling": {"type": "llama3",
            "factor": 8, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;
        let v5 =
            br#"{"max_position_embeddings": 131072, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
            "factor": 8.0, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}"#;
        let (a, b) = (LlamaConfig::from_json(legacy).unwrap(), LlamaConfig::from_json(v5).unwrap());
        assert_eq!(a.rope_parameters, b.rope_parameters);
        assert_eq!(
            a.rope_parameters.scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            }
        );
        // An empty or null rope_scaling leaves rope_parameters in charge.
        let c =
            LlamaConfig::from_json(br#"{"rope_scaling": {}, "rope_parameters": {"rope_type": "linear", "factor": 2}}"#)
                .unwrap();
        assert_eq!(c.rope_parameters.scaling, RopeScaling::Linear { factor: 2.0 });
    }

    #[test]
    fn bad_configs_are_rejected_with_reason() {
        let err = |json: &str| LlamaConfig::from_json(json.as_bytes()).unwrap_err().to_string();
        assert!(err(r#"{"rope_scaling": {"type": "yarn", "factor": 4}}"#).contains("`yarn` is not supported"));
        assert!(err(r#"{"rope_scaling": {"rope_type": "linear"}}"#).contains("needs `factor`"));
        assert!(
            err(r#"{"rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1}}"#)
                .contains("high_freq_factor")
        );
        assert!(err(r#"{"num_attention_heads": 7}"#).contains("not a multiple of num_attention_heads"));
        assert!(err(r#"{"num_key_value_heads": 5}"#).contains("num_key_value_heads"));
        assert!(err(r#"{"head_dim": 127}"#).contains("even"));
        assert!(err(r#"{"eos_token_id": 40000}"#).contains("outside the vocabulary"));
        assert!(err(r#"{"model_type": "mistral"}"#).contains("expected `llama`"));
        assert!(err(r#"{"hidden_act": "swiglu"}"#).contains("config.json"));
        assert!(err(r#"{"rope_theta": -1}"#).contains("rope_theta"));
    }
}
