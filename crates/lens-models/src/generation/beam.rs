//! Beam search, step for step as `GenerationMixin._beam_search` (transformers v5.23.0) does it, so that
//! the chosen hypotheses, and therefore the token ids, are the reference's.
//!
//! Per input: `num_beams` running hypotheses and `num_beams` finished slots. Each step scores every
//! continuation of every running beam (`log_softmax` + processors + the beam's score), keeps the top
//! `2 × num_beams`, moves those among the first `num_beams` that ended (`eos` or the length limit) into
//! the finished slots with their length-penalised score, and continues the best `num_beams` that did not
//! end. The reference's masking constants (`-1e9` added in `f32`) are kept as they are: they decide
//! which candidates can be chosen, and copying them keeps the same ties.

use super::config::GenerationConfig;
use super::decoder::{Decoder, SpecialTokens};
use super::logits::{self, log_softmax};
use crate::{Error, Result};

const MASKED: f32 = -1.0e9;

#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<u32>,
    score: f32,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// Which running beam of its input it continues.
    beam: usize,
    token: u32,
    score: f32,
    /// It ended: `eos`, or the length limit.
    hits_stop: bool,
}

pub(super) fn beam_search<D: Decoder>(
    decoder: &mut D,
    prompts: &[Vec<u32>],
    special: SpecialTokens,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let vocab = decoder.vocab_size();
    let (batch, num_beams) = (prompts.len(), config.num_beams);
    let prompt_len = prompts[0].len();
    let max_len = prompt_len + config.max_new_tokens;
    let keep = 2 * num_beams; // max(2, 1 + one eos token) × num_beams
    let lp = config.length_penalty as f64;

    let mut running: Vec<Vec<Hypothesis>> = prompts
        .iter()
        .map(|p| {
            (0..num_beams).map(|j| Hypothesis { tokens: p.clone(), score: if j == 0 { 0.0 } else { MASKED } }).collect()
        })
        .collect();
    let mut finished: Vec<Vec<(Hypothesis, bool)>> =
        prompts.iter().map(|p| vec![(Hypothesis { tokens: p.clone(), score: MASKED }, false); num_beams]).collect();
    let mut improvable = vec![true; batch];
    let mut feed: Vec<Vec<u32>> = running.iter().flatten().map(|h| h.tokens.clone()).collect();
    let mut cur_len = prompt_len;

    loop {
        let all_logits = decoder.step(&feed)?;
        if all_logits.len() != batch * num_beams * vocab {
            return Err(Error::invalid_input("decoder returned logits of the wrong size"));
        }
        let mut all_hit = true;
        let mut reorder = Vec::with_capacity(batch * num_beams);
        for b in 0..batch {
            // Scores of every continuation of every beam of input b.
            let mut accumulated = Vec::with_capacity(num_beams * vocab);
            for (j, beam) in running[b].iter().enumerate() {
                let row = b * num_beams + j;
                let mut scores = all_logits[row * vocab..(row + 1) * vocab].to_vec();
                log_softmax(&mut scores);
                logits::process(&mut scores, &beam.tokens, cur_len - prompt_len, special.eos, config);
                accumulated.extend(scores.into_iter().map(|s| s + beam.score));
            }
            let candidates: Vec<Candidate> = top_k(&accumulated, keep)
                .into_iter()
                .map(|(index, score)| {
                    let token = (index % vocab) as u32;
                    Candidate {
                        beam: index / vocab,
                        token,
                        score,
                        hits_stop: token == special.eos || cur_len + 1 >= max_len,
                    }
                })
                .collect();
            all_hit &= candidates.iter().all(|c| c.hits_stop);

            // Running beams for the next step: the best candidates that did not end.
            let running_scores: Vec<f32> =
                candidates.iter().map(|c| c.score + if c.hits_stop { MASKED } else { 0.0 }).collect();
            let next: Vec<(usize, f32)> = top_k(&running_scores, num_beams);

            // Finished slots: merge the best `num_beams` candidates that just ended.
            let denominator = ((cur_len + 1 - prompt_len) as f64).powf(lp) as f32;
            let batch_full = config.early_stopping && finished[b].iter().all(|(_, done)| *done);
            let mut merged: Vec<(Hypothesis, bool)> = finished[b].clone();
            let mut merged_scores: Vec<f32> = merged.iter().map(|(h, _)| h.score).collect();
            for (k, c) in candidates.iter().enumerate() {
                let just_finished = c.hits_stop && k < num_beams;
                let mut score = c.score / denominator;
                score += if batch_full { MASKED } else { 0.0 };
                score += if improvable[b] { 0.0 } else { MASKED };
                score += if just_finished { 0.0 } else { MASKED };
                let mut tokens = running[b][c.beam].tokens.clone();
                tokens.push(c.token);
                merged.push((Hypothesis { tokens, score }, just_finished));
                merged_scores.push(score);
            }
            finished[b] = top_k(&merged_scores, num_beams).into_iter().map(|(i, _)| merged[i].clone()).collect();

            let previous = std::mem::take(&mut running[b]);
            running[b] = next
                .into_iter()
                .map(|(k, score)| {
                    let c = &candidates[k];
                    let mut tokens = previous[c.beam].tokens.clone();
                    tokens.push(c.token);
                    reorder.push(b * num_beams + c.beam);
                    Hypothesis { tokens, score }
                })
                .collect();
        }
        decoder.reorder(&reorder);
        cur_len += 1;

        // `_check_early_stop_heuristic` (early_stopping = true/false): can the best running beam still beat
        // the worst finished one, judged at the current length?
        let denominator = ((cur_len - prompt_len) as f64).powf(lp) as f32;
        for b in 0..batch {
            let best_possible = running[b][0].score / denominator;
            let worst = finished[b].iter().map(|(h, _)| h.score).fold(f32::INFINITY, f32::min);
            let any_better = finished[b].iter().any(|(_, done)| best_possible > if *done { worst } else { MASKED });
            improvable[b] &= any_better;
        }
        let all_finished = finished.iter().flatten().all(|(_, done)| *done);
        let open = !(all_finished && config.early_stopping);
        if !(improvable.iter().any(|&i| i) && open && !all_hit) {
            break;
        }
        feed = running.iter().flatten().map(|h| vec![*h.tokens.last().expect("non-empty")]).collect();
    }

    // The best finished hypothesis of each input, padded to the longest (with `pad`, or `eos` when
    // `pad` is 0: the reference's `pad_token_id or eos_token_id`).
    let best: Vec<Vec<u32>> = finished.into_iter().map(|slots| slots[0].0.tokens.clone()).collect();
    let fill = if special.pad != 0 { special.pad } else { special.eos };
    let longest = best.iter().map(Vec::len).max().unwrap_or(prompt_len);
    Ok(best
        .into_iter()
        .map(|mut tokens| {
            tokens.resize(longest, fill);
            tokens
        })
        .collect())
}

/// The `k` largest values with their indices, largest first (`torch.topk`, sorted). Equal values keep
/// index order.
fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && v.partial_cmp(&best[k - 1].1) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= v);
        best.insert(at, (i, v));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_stable() {
        assert_eq!(top_k(&[1.0, 5.0, 3.0, 5.0, -1.0], 3), vec![(1, 5.0), (3, 5.0), (2, 3.0)]);
        assert_eq!(top_k(&[2.0], 3), vec![(0, 2.0)]);
    }
}
