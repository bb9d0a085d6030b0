//! Autoregressive generation shared by every decoder in this crate: greedy search, beam search and
//! top-k / top-p sampling over a [`Decoder`] that keeps its own key/value cache.
//!
//! Reference: `GenerationMixin` in `transformers/generation/utils.py` and the logits processors in
//! `transformers/generation/logits_process.py` (transformers v5.23.0). Greedy and beam search return the
//! very token ids the reference returns; sampling is seeded and reproducible, but its random stream is
//! our own (not torch's).

mod beam;
mod logits;

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

/// A decoder that generation can drive: it feeds tokens after those it has seen and keeps its own
/// key/value caches. Rows are independent sequences (for beam search, `batch × num_beams` of them,
/// the beams of one input next to each other).
pub trait Decoder {
    /// Feed each row's next tokens (the whole prompt on the first call, then one token) and return the
    /// logits of each row's last position, `rows × vocab` values, row after row.
    fn step(&mut self, tokens: &[Vec<u32>]) -> Result<Vec<f32>>;

    /// Row `i` continues what old row `rows[i]` was (beam search moving hypotheses between beams).
    fn reorder(&mut self, rows: &[usize]);

    /// Vocabulary size: the length of each row of logits.
    fn vocab_size(&self) -> usize;
}

/// The special tokens generation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Generating it ends a sequence.
    pub eos: u32,
    /// Fills sequences that ended before the longest one.
    pub pad: u32,
}

/// Generate continuations of `prompts` (one per input, all the same length). The decoder must hold
/// `prompts.len() × num_beams` rows, each input's rows next to each other. Returns, per input, its
/// prompt followed by the generated tokens, padded as the reference pads them.
pub fn generate<D: Decoder>(
    decoder: &mut D,
    prompts: &[Vec<u32>],
    tokens: SpecialTokens,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    config.validate()?;
    let prompt_len = prompts.first().map(Vec::len).unwrap_or(0);
    if prompts.is_empty() || prompt_len == 0 || prompts.iter().any(|p| p.len() != prompt_len) {
        return Err(Error::invalid_input("prompts must be non-empty and of equal length"));
    }
    if config.num_beams > 1 {
        beam::beam_search(decoder, prompts, tokens, config)
    } else {
        greedy_or_sample(decoder, prompts, tokens, config)
    }
}

/// `GenerationMixin._sample`: one token per row and step, the best one (or a sampled one), until every
/// row produced `eos` or `max_new_tokens` were generated. Ended rows get `pad`.
fn greedy_or_sample<D: Decoder>(
    decoder: &mut D,
    prompts: &[Vec<u32>],
    tokens: SpecialTokens,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let vocab = decoder.vocab_size();
    let prompt_len = prompts[0].len();
    let max_len = prompt_len + config.max_new_tokens;
    let mut sequences = prompts.to_vec();
    let mut unfinished = vec![true; prompts.len()];
    // One stream per row, all from the same seed: a row's text does not depend on what it is batched with.
    let mut rngs: Vec<_> = prompts.iter().map(|_| config.sampling.map(|s| logits::SplitMix64::new(s.seed))).collect();
    let mut feed = prompts.to_vec();
    loop {
        let all_logits = decoder.step(&feed)?;
        if all_logits.len() != prompts.len() * vocab {
            return Err(Error::invalid_input("decoder returned logits of the wrong size"));
        }
        let cur_len = sequences[0].len();
        for (row, scores) in all_logits.chunks_exact(vocab).enumerate() {
            let mut scores = scores.to_vec();
            logits::process(&mut scores, &sequences[row], cur_len - prompt_len, tokens.eos, config);
            let next = match (&config.sampling, rngs[row].as_mut()) {
                (Some(sampling), Some(rng)) => logits::sample(&mut scores, sampling, rng),
                _ => logits::argmax(&scores),
            };
            let next = if unfinished[row] { next } else { tokens.pad };
            sequences[row].push(next);
            unfinished[row] &= next != tokens.eos;
        }
        if sequences[0].len() >= max_len || !unfinished.iter().any(|&u| u) {
            return Ok(sequences);
        }
        feed = sequences.iter().map(|s| vec![*s.last().expect("non-empty")]).collect();
    }
}
