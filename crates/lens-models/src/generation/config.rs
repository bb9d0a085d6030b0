//! What to generate and how: `GenerationConfig` with `transformers`' field names and defaults, and its
//! limits.
//!
//! Reference: `GenerationConfig` in `transformers/generation/configuration_utils.py` (transformers
//! v5.23.0).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Most new tokens one request may ask for.
pub const MAX_NEW_TOKENS: usize = 256;
/// Most beams one request may ask for.
pub const MAX_BEAMS: usize = 16;

/// Top-k / top-p sampling settings (`do_sample=True`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Logits are divided by this before the softmax (> 0).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0: all).
    pub top_p: f32,
    /// Seed of the random stream: the same seed and inputs give the same text.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 1.0, top_k: 50, top_p: 1.0, seed: 0 }
    }
}

/// How to generate: `transformers`' `GenerationConfig` fields of the same names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Tokens to generate at most, not counting the prompt.
    pub max_new_tokens: usize,
    /// End-of-sequence is forbidden until this many tokens were generated.
    pub min_new_tokens: usize,
    /// 1: greedy (or sampling); more: beam search.
    pub num_beams: usize,
    /// Beam scores are divided by `length ^ length_penalty`.
    pub length_penalty: f32,
    /// Beam search stops as soon as `num_beams` hypotheses are finished.
    pub early_stopping: bool,
    /// > 1 discourages tokens already in the sequence (CTRL's penalty).
    pub repetition_penalty: f32,
    /// `Some`: sample instead of searching (only with `num_beams` = 1).
    pub sampling: Option<Sampling>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 20,
            min_new_tokens: 0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: false,
            repetition_penalty: 1.0,
            sampling: None,
        }
    }
}

impl GenerationConfig {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid_input(m));
        if self.max_new_tokens == 0 || self.max_new_tokens > MAX_NEW_TOKENS {
            return bad(format!("max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, not {}", self.max_new_tokens));
        }
        if self.min_new_tokens > self.max_new_tokens {
            return bad(format!(
                "min_new_tokens ({}) is more than max_new_tokens ({})",
                self.min_new_tokens, self.max_new_tokens
            ));
        }
        if self.num_beams == 0 || self.num_beams > MAX_BEAMS {
            return bad(format!("num_beams must be between 1 and {MAX_BEAMS}, not {}", self.num_beams));
        }
        if !self.length_penalty.is_finite() {
            return bad("length_penalty must be finite".into());
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!("repetition_penalty must be positive, not {}", self.repetition_penalty));
        }
        if let Some(s) = &self.sampling {
            if self.num_beams > 1 {
                return bad("sampling works with num_beams = 1 only".into());
            }
            if !(s.temperature.is_finite() && s.temperature > 0.0) {
                return bad(format!("temperature must be positive, not {}", s.temperature));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return bad(format!("top_p must be in (0, 1], not {}", s.top_p));
            }
        }
        Ok(())
    }
}
