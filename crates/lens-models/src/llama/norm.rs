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
        let x = x * (variance + self.eps).sqrt().recip();
        let weight = self.weight.val().unsqueeze::<D>();
        weight * x.cast(dtype)
    }
}
