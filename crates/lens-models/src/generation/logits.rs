//! Logits processors and token choice, on one row of scores at a time.
//!
//! Reference: `RepetitionPenaltyLogitsProcessor`, `MinNewTokensLengthLogitsProcessor`,
//! `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` in
//! `transformers/generation/logits_process.py` (transformers v5.23.0), applied in the order
//! `_get_logits_processor` builds them.

pub(super) use lens_core::rng::SplitMix64;

use super::config::{GenerationConfig, Sampling};

/// The processors every strategy applies: the repetition penalty over every token of the sequence so
/// far (prompt included), and `eos` forbidden before `min_new_tokens`.
pub(super) fn process(scores: &mut [f32], sequence: &[u32], generated: usize, eos: u32, config: &GenerationConfig) {
    if config.repetition_penalty != 1.0 {
        let penalty = config.repetition_penalty;
        // gather → penalise → scatter: a token present twice is penalised once.
        let mut seen = std::collections::HashSet::with_capacity(sequence.len());
        for &token in sequence {
            let Some(score) = scores.get_mut(token as usize) else { continue };
            if seen.insert(token) {
                *score = if *score < 0.0 { *score * penalty } else { *score / penalty };
            }
        }
    }
    if generated < config.min_new_tokens
        && let Some(score) = scores.get_mut(eos as usize)
    {
        *score = f32::NEG_INFINITY;
    }
}

/// `log_softmax` as torch computes it: `x - max - log(Σ exp(x - max))`.
pub(super) fn log_softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f32 = scores.iter().map(|&s| (s - max).exp()).sum();
    let log_sum = sum.ln();
    for s in scores.iter_mut() {
        *s = *s - max - log_sum;
    }
}

/// Index of the largest score; the first one on ties, as `torch.argmax`.
pub(super) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// Temperature, top-k, top-p, then a draw from the softmax.
pub(super) fn sample(scores: &mut [f32], sampling: &Sampling, rng: &mut SplitMix64) -> u32 {
    if sampling.temperature != 1.0 {
        scores.iter_mut().for_each(|s| *s /= sampling.temperature);
    }
    if sampling.top_k > 0 && sampling.top_k < scores.len() {
        // Everything below the k-th largest score goes (ties with it stay, as in the reference).
        let mut sorted: Vec<f32> = scores.to_vec();
        let kth = *sorted.select_nth_unstable_by(sampling.top_k - 1, |a, b| b.total_cmp(a)).1;
        scores.iter_mut().filter(|s| **s < kth).for_each(|s| *s = f32::NEG_INFINITY);
    }
    if sampling.top_p < 1.0 {
        // Drop the least likely tokens whose cumulative probability stays within 1 - top_p; the most
        // likely token always stays.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let probs = softmax(scores);
        let mut cumulative = 0f32;
        for &i in &order[..order.len() - 1] {
            cumulative += probs[i];
            if cumulative <= 1.0 - sampling.top_p {
                scores[i] = f32::NEG_INFINITY;
            } else {
                break;
            }
        }
    }
    let probs = softmax(scores);
    let mut target = rng.next_f64() as f32;
    let mut last = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            last = i;
            if target < p {
                return i as u32;
            }
            target -= p;
        }
    }
    last as u32 // rounding left a sliver at the end
}

fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores_once() {
        let mut scores = vec![2.0, -2.0, 1.0, 4.0];
        let config = GenerationConfig { repetition_penalty: 2.0, ..Default::default() };
        process(&mut scores, &[0, 1, 1, 0], 0, 99, &config);
        assert_eq!(scores, vec![1.0, -4.0, 1.0, 4.0]);
    }

    #[test]
    fn eos_is_forbidden_until_min_new_tokens() {
        let config = GenerationConfig { min_new_tokens: 2, ..Default::default() };
        let mut scores = vec![0.0; 4];
        process(&mut scores, &[], 1, 3, &config);
        assert_eq!(scores[3], f32::NEG_INFINITY);
        let mut scores = vec![0.0; 4];
        process(&mut scores, &[], 2, 3, &config);
        assert_eq!(scores[3], 0.0);
    }

    #[test]
    fn log_softmax_sums_to_one_and_argmax_takes_the_first_maximum() {
        let mut s = vec![1.0f32, 3.0, 3.0, -1.0];
        assert_eq!(argmax(&s), 1);
        log_softmax(&mut s);
        let total: f32 = s.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_keep_only_the_likely_tokens_and_a_seed_repeats() {
        let logits = [5.0f32, 4.0, 0.0, -1.0, -2.0];
        let sampling = Sampling { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 7 };
        let mut rng = SplitMix64::new(7);
        let draws: Vec<u32> = (0..200).map(|_| sample(&mut logits.to_vec(), &sampling, &mut rng)).collect();
        assert!(draws.iter().all(|&t| t < 2), "top_k 2 drew {draws:?}");
        assert!(draws.contains(&0) && draws.contains(&1));
        let mut again = SplitMix64::new(7);
        let repeat: Vec<u32> = (0..200).map(|_| sample(&mut logits.to_vec(), &sampling, &mut again)).collect();
        assert_eq!(draws, repeat);

        // p(0) = 0.72: top_p 0.5 keeps token 0 alone.
        let sampling = Sampling { temperature: 1.0, top_k: 0, top_p: 0.5, seed: 1 };
        let mut rng = SplitMix64::new(1);
        assert!((0..100).all(|_| sample(&mut logits.to_vec(), &sampling, &mut rng) == 0));
    }
}
