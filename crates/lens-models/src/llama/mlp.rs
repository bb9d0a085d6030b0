//! `LlamaMLP`: the gated feed-forward block, `down_proj(act(gate_proj(x)) * up_proj(x))` (SiLU in every
//! published LLaMA).
//!
//! Reference: `LlamaMLP` in `transformers/models/llama/modeling_llama.py` (transformers v5.23.0).

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use crate::nn::{Activation, Dense, dense};
use crate::{Result, weights::VarBuilder};

/// `mlp`: `gate_proj`, `up_proj` (`[intermediate, hidden]`), `down_proj` (`[hidden, intermediate]`); biased
/// only when `mlp_bias`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    pub gate_proj: Dense<B>,
    pub up_proj: Dense<B>,
    pub down_proj: Dense<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> LlamaMlp<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, intermediate: usize, act: Activation, bias: bool) -> Result<Self> {
        Ok(LlamaMlp {
            gate_proj: dense(&vb.pp("gate_proj"), hidden, intermediate, bias)?,
            up_proj: dense(&vb.pp("up_proj"), hidden, intermediate, bias)?,
            down_proj: dense(&vb.pp("down_proj"), intermediate, hidden, bias)?,
            act,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.act.forward(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
