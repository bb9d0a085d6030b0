//! [`generate`]: the entry point, which validates the request and picks the strategy, and greedy /
//! sampled search (`GenerationMixin._sample` in `transformers/generation/utils.py`, transformers
//! v5.23.0); beam search is in `beam.rs`.

use super::beam;
use super::config::GenerationConfig;
use super::decoder::{Decoder, SpecialTokens};
use super::logits;
use crate::{Error, Result};

/// Generate continuations of `prompts` (one per input, all the same length). The decoder must hold
/// `prompts.len() × num_beams` rows, each input's rows next to each other. Returns, per input, its
/// prompt followed by the generated tokens, padded as the reference pads them.
pub fn generate<D: Decoder>(
    decoder: &mut D,
    prompts: &[Vec<u32>],
    tokens: SpecialTokens,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    check_prompts(prompts, config)?;
    if config.num_beams > 1 {
        beam::beam_search(decoder, prompts, tokens, config)
    } else {
        greedy_or_sample(decoder, prompts, tokens, config)
    }
}

fn check_prompts(prompts: &[Vec<u32>], config: &GenerationConfig) -> Result<()> {
    config.validate()?;
    let prompt_len = prompts.first().map(Vec::len).unwrap_or(0);
    if prompts.is_empty() || prompt_len == 0 || prompts.iter().any(|p| p.len() != prompt_len) {
        return Err(Error::invalid_input("prompts must be non-empty and of equal length"));
    }
    Ok(())
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
    let mut rows: Vec<TokenPicker> = prompts.iter().map(|p| TokenPicker::new(p, tokens.eos, config)).collect();
    let mut unfinished = vec![true; prompts.len()];
    let mut feed = prompts.to_vec();
    loop {
        let all_logits = decoder.step(&feed)?;
        if all_logits.len() != prompts.len() * vocab {
            return Err(Error::invalid_input("decoder returned logits of the wrong size"));
        }
        for ((row, scores), unfinished) in rows.iter_mut().zip(all_logits.chunks_exact(vocab)).zip(&mut unfinished) {
            let next = row.choose(&mut scores.to_vec());
            // An ended row still draws, so that every row's random stream stays where it would be alone.
            let next = if *unfinished { next } else { tokens.pad };
            row.push(next);
            *unfinished &= next != tokens.eos;
        }
        if rows[0].generated() >= config.max_new_tokens || !unfinished.iter().any(|&u| u) {
            return Ok(rows.into_iter().map(TokenPicker::into_sequence).collect());
        }
        feed = rows.iter().map(|r| vec![r.last()]).collect();
    }
}

/// Greedy search or sampling for one sequence, a token at a time: the logits processors, then the best
/// token or a seeded draw. [`generate`] runs one per row; a caller that runs the model itself (sequences
/// decoded together, each joining and leaving on its own) runs one per sequence and gets the same ids.
#[derive(Debug, Clone)]
pub struct TokenPicker {
    /// The prompt, then every token pushed.
    sequence: Vec<u32>,
    prompt_len: usize,
    /// One stream per sequence, from the request's seed: a sequence's text does not depend on what it is
    /// decoded with.
    rng: Option<logits::SplitMix64>,
    eos: u32,
    config: GenerationConfig,
}

impl TokenPicker {
    /// A picker continuing `prompt` (non-empty), ending on `eos`; `config` is not checked here
    /// ([`GenerationConfig::validate`]).
    pub fn new(prompt: &[u32], eos: u32, config: &GenerationConfig) -> Self {
        TokenPicker {
            sequence: prompt.to_vec(),
            prompt_len: prompt.len(),
            rng: config.sampling.map(|s| logits::SplitMix64::new(s.seed)),
            eos,
            config: config.clone(),
        }
    }

    /// The next token for this step's `scores` (`[vocab]` logits of the last position, processed in place);
    /// not yet part of the sequence ([`Self::push`]).
    pub fn choose(&mut self, scores: &mut [f32]) -> u32 {
        logits::process(scores, &self.sequence, self.generated(), self.eos, &self.config);
        match (&self.config.sampling, self.rng.as_mut()) {
            (Some(sampling), Some(rng)) => logits::sample(scores, sampling, rng),
            _ => logits::argmax(scores),
        }
    }

    /// Append `token` to the sequence.
    pub fn push(&mut self, token: u32) {
        self.sequence.push(token);
    }

    /// Tokens pushed after the prompt.
    pub fn generated(&self) -> usize {
        self.sequence.len() - self.prompt_len
    }

    /// The last token of the sequence (the prompt's before any was pushed).
    pub fn last(&self) -> u32 {
        *self.sequence.last().expect("a non-empty prompt")
    }

    /// The prompt.
    pub fn prompt(&self) -> &[u32] {
        &self.sequence[..self.prompt_len]
    }

    /// The tokens pushed after the prompt.
    pub fn generated_ids(&self) -> &[u32] {
        &self.sequence[self.prompt_len..]
    }

    /// The prompt and the tokens pushed.
    pub fn into_sequence(self) -> Vec<u32> {
        self.sequence
    }
}
