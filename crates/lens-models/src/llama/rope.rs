//! Rotary position embeddings: the inverse frequencies exactly as transformers' rope init functions compute
//! them (in f32, operation for operation), the cos/sin of each position, and `rotate_half`.
//!
//! Reference (transformers v5.23.0): `LlamaRotaryEmbedding.compute_default_rope_parameters`,
//! `LlamaRotaryEmbedding.forward`, `rotate_half` and `apply_rotary_pos_emb` in
//! `transformers/models/llama/modeling_llama.py`; `_compute_linear_scaling_rope_parameters` and
//! `_compute_llama3_parameters` in `transformers/modeling_rope_utils.py`. All three types have an
//! `attention_factor` of 1.0, so cos and sin are not scaled.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::config::{RopeParameters, RopeScaling};

/// `inv_freq` (`[head_dim / 2]`) for these rope parameters.
///
/// Every step is the reference's f32 tensor arithmetic: `base ** (arange(0, dim, 2) / dim)` and its
/// reciprocal; `linear` divides by `factor`; `llama3` computes `wavelen = 2π / inv_freq` (torch's
/// `scalar / tensor` is `reciprocal(tensor) * scalar`), divides the low frequencies by `factor` and blends the
/// medium ones with `smooth = (old_context_len / wavelen - low) / (high - low)`.
pub fn inv_freq(rope: &RopeParameters, head_dim: usize) -> Vec<f32> {
    let base = rope.rope_theta as f32;
    let dim = head_dim as f32;
    let default: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim)).collect();
    match rope.scaling {
        RopeScaling::Default => default,
        RopeScaling::Linear { factor } => default.into_iter().map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old_context_len = original_max_position_embeddings as f64;
            // Python floats, compared with and combined into f32 tensors as f32.
            let low_freq_wavelen = (old_context_len / low_freq_factor) as f32;
            let high_freq_wavelen = (old_context_len / high_freq_factor) as f32;
            let (factor, low, span) =
                (factor as f32, low_freq_factor as f32, (high_freq_factor - low_freq_factor) as f32);
            let two_pi = (2.0 * std::f64::consts::PI) as f32;
            default
                .into_iter()
                .map(|inv| {
                    let wavelen = (1.0 / inv) * two_pi;
                    let inv_llama = if wavelen > low_freq_wavelen { inv / factor } else { inv };
                    let smooth = ((1.0 / wavelen) * old_context_len as f32 - low) / span;
                    let smoothed = (1.0 - smooth) * inv_llama / factor + smooth * inv_llama;
                    let medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
                    if medium { smoothed } else { inv_llama }
                })
                .collect()
        }
    }
}

/// The rotary embedding of one model: its inverse frequencies, turned into cos/sin for the positions a
/// forward pass covers (computed per call, so any position works and nothing grows with the context).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbedding {
    pub fn new(rope: &RopeParameters, head_dim: usize) -> Self {
        RotaryEmbedding { inv_freq: inv_freq(rope, head_dim) }
    }

    /// `[head_dim / 2]`
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// cos and sin of positions `start..start + n`: `freqs = position * inv_freq` in f32, `emb = cat(freqs,
    /// freqs)`.
    ///
    /// # Shapes
    /// - output: two `[1, 1, n, head_dim]` tensors (broadcast over batch and heads)
    pub fn cos_sin<B: Backend>(&self, start: usize, n: usize, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.tables(start..start + n, device)
    }

    /// cos and sin of any positions (the new positions of several sequences, one after another).
    ///
    /// # Shapes
    /// - output: two `[1, 1, positions, head_dim]` tensors (broadcast over batch and heads)
    pub fn cos_sin_at<B: Backend>(&self, positions: &[usize], device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        self.tables(positions.iter().copied(), device)
    }

    /// cos and sin of `positions`, one `head_dim` row each: two `[1, 1, positions, head_dim]` tensors.
    fn tables<B: Backend>(
        &self,
        positions: impl ExactSizeIterator<Item = usize>,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let half = self.inv_freq.len();
        let shape = [1, 1, positions.len(), 2 * half];
        let mut cos = Vec::with_capacity(positions.len() * 2 * half);
        let mut sin = Vec::with_capacity(positions.len() * 2 * half);
        for position in positions {
            let p = position as f32;
            for _ in 0..2 {
                for &f in &self.inv_freq {
                    let angle = p * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        (Tensor::from_data(TensorData::new(cos, shape), device), Tensor::from_data(TensorData::new(sin, shape), device))
    }
}

/// `cat(-x2, x1)` of the two halves of the last dimension.
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]` → same
pub fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let (x1, x2) = (x.clone().narrow(3, 0, d / 2), x.narrow(3, d / 2, d / 2));
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// `x * cos + rotate_half(x) * sin` (`apply_rotary_pos_emb`, for queries and keys alike).
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]`; cos, sin: `[1, 1, seq, head_dim]` → `[batch, heads, seq, head_dim]`
pub fn apply_rotary<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    x.clone() * cos.clone() + rotate_half(x) * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies_are_powers_of_theta() {
        let rope = RopeParameters { rope_theta: 10_000.0, scaling: RopeScaling::Default };
        let f = inv_freq(&rope, 8);
        assert_eq!(f.len(), 4);
        for (got, want) in f.iter().zip([1.0f32, 0.1, 0.01, 0.001]) {
            assert!((got - want).abs() <= want * 1e-6, "{got} vs {want}");
        }
        let linear = inv_freq(&RopeParameters { scaling: RopeScaling::Linear { factor: 4.0 }, ..rope }, 8);
        assert_eq!(linear, f.iter().map(|x| x / 4.0).collect::<Vec<_>>());
    }

    #[test]
    fn llama3_keeps_high_divides_low_and_blends_the_middle() {
        let rope = RopeParameters {
            rope_theta: 500_000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 256,
            },
        };
        let plain = inv_freq(&RopeParameters { scaling: RopeScaling::Default, ..rope }, 16);
        let scaled = inv_freq(&rope, 16);
        // Wavelengths 6.3 and 32 (< 64): kept; 860 and longer (> 256): divided by 8; 167: blended.
        assert_eq!(scaled[..2], plain[..2]);
        assert!(scaled[3..].iter().zip(&plain[3..]).all(|(s, p)| (s - p / 8.0).abs() <= p * 1e-6));
        assert!(scaled[2] < plain[2] && scaled[2] > plain[2] / 8.0);
    }

    #[test]
    fn rotate_half_negates_the_second_half_first() {
        type B = burn::backend::NdArray<f32>;
        let x =
            Tensor::<B, 4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]), &Default::default());
        let r: Vec<f32> = rotate_half(x).into_data().to_vec().unwrap();
        assert_eq!(r, vec![-3.0, -4.0, 1.0, 2.0]);
    }
}
