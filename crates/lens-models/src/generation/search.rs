//! [`generate`]: the entry point, which validates the request and picks the strategy, and greedy /
//! sampled search (`GenerationMixin._sample` in `transformers/generation/utils.py`, transformers
//! v5.23.0); beam search is in `beam.rs`.

use std::ops::ControlFlow;

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
        greedy_or_sample(decoder, prompts, tokens, config, &mut |_| ControlFlow::Continue(()))
    }
}

/// [`generate`] for greedy search and sampling, calling `on_tokens` with each row's new token as soon as it
/// is chosen (rows that ended get `pad`). `ControlFlow::Break` stops generation there (a stop string was
/// seen, the reader went away); the sequences so far are returned. Beam search cannot stream: which
/// hypothesis wins is known only at the end, so `num_beams > 1` is refused.
pub fn generate_streaming<D: Decoder>(
    decoder: &mut D,
    prompts: &[Vec<u32>],
    tokens: SpecialTokens,
    config: &GenerationConfig,
    on_tokens: &mut dyn FnMut(&[u32]) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>> {
    check_prompts(prompts, config)?;
    if config.num_beams > 1 {
        return Err(Error::invalid_input("beam search cannot stream tokens: use num_beams = 1"));
    }
    greedy_or_sample(decoder, prompts, tokens, config, on_tokens)
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
    on_tokens: &mut dyn FnMut(&[u32]) -> ControlFlow<()>,
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
        let newest: Vec<u32> = sequences.iter().map(|s| *s.last().expect("non-empty")).collect();
        if on_tokens(&newest).is_break() {
            return Ok(sequences);
        }
        if sequences[0].len() >= max_len || !unfinished.iter().any(|&u| u) {
            return Ok(sequences);
        }
        feed = sequences.iter().map(|s| vec![*s.last().expect("non-empty")]).collect();
    }
}
