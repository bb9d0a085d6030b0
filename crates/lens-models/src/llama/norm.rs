//! `LlamaRMSNorm`: `weight * x / sqrt(mean(x²) + eps)`, with the statistics in f32.
//!
//! Reference: `LlamaRMSNorm` in `transformers/models/llama/modeling_llama.py` (transformers v5.23.0):
//! the input is cast to f32, `variance = x.pow(2).mean(-1)`, `x * rsqrt(variance + eps)`, cast back to the
//! input's dtype, then multiplied by the weight. The same order here (the casts are no-ops on f32 backends).

use burn::module::{Module, Param};
use burn::tensor::{FloatDType, Tensor, backend::Backend};

use crate::{Result, weights::VarBuilder};

/// `input_layernorm`, `post_attention_layernorm`, `norm`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// `weight`: `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm { weight: Param::from_tensor(vb.tensor("weight", [hidden])?), eps })
    }

    /// # Shapes
    /// - x: `[..., hidden]` → `[..., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(FloatDType::F32);
        let variance = x.clone().square().mean_dim(D - 1);
        // `rsqrt` as `1 / sqrt`, a correctly rounded division (what torch computes). Not `recip()`: burn-ndarray
        // runs it on x86 with the approximate `rcp` instruction (12 to 14 bits) over the part of the buffer that is
        // vector-aligned, exactly elsewhere, so its result depends on where the allocator put the buffer.
        let rms = (variance + self.eps).sqrt();
        let x = x * (Tensor::ones_like(&rms) / rms);
        let weight = self.weight.val().unsqueeze::<D>();
        weight * x.cast(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = burn::backend::NdArray<f32>;

    /// Within an ulp or two of the f64 computation on every row, however many rows (burn-ndarray's `recip()`
    /// is approximate, to 12 bits, on the vector-aligned part of buffers of 32 or more elements).
    #[test]
    fn every_row_is_normalised_to_f32_precision() {
        let device = Default::default();
        let (rows, hidden) = (48, 8);
        let xs: Vec<f32> = (0..rows * hidden).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let weights: Vec<f32> = (0..hidden).map(|i| 0.5 + i as f32 / 8.0).collect();
        let norm = RmsNorm::<B> {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weights.clone(), [hidden]), &device)),
            eps: 1e-6,
        };
        let x = Tensor::<B, 2>::from_data(TensorData::new(xs.clone(), [rows, hidden]), &device);
        let ours: Vec<f32> = norm.forward(x).into_data().to_vec().unwrap();
        for (r, (row, out)) in xs.chunks(hidden).zip(ours.chunks(hidden)).enumerate() {
            let mean = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hidden as f64;
            let scale = 1.0 / (mean + 1e-6).sqrt();
            for ((&v, &o), &w) in row.iter().zip(out).zip(&weights) {
                let expected = w as f64 * v as f64 * scale;
                assert!((o as f64 - expected).abs() <= 1e-6 * expected.abs().max(1e-3), "row {r}: {o} vs {expected}");
            }
        }
    }
}
