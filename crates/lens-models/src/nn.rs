//! The few building blocks the ported models share, loaded by their published names.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Tensor, activation, backend::Backend};
use serde::Deserialize;

use crate::{Result, weights::VarBuilder};

/// A PyTorch `nn.Linear` at `vb` (`weight` `[out, in]`, optional `bias` `[out]`).
pub fn linear<B: Backend>(vb: &VarBuilder<B>, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
    let weight = Param::from_tensor(vb.linear_weight("weight", d_in, d_out)?);
    let bias = if bias { Some(Param::from_tensor(vb.tensor("bias", [d_out])?)) } else { None };
    Ok(Linear { weight, bias })
}

/// A PyTorch `nn.LayerNorm` at `vb` (`weight` and `bias`, both `[d]`).
pub fn layer_norm<B: Backend>(vb: &VarBuilder<B>, d: usize, eps: f64) -> Result<LayerNorm<B>> {
    let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(vb.device());
    norm.gamma = Param::from_tensor(vb.tensor("weight", [d])?);
    norm.beta = Some(Param::from_tensor(vb.tensor("bias", [d])?));
    Ok(norm)
}

/// An `nn.Embedding` table `[num, d]` at `vb`.
pub fn embedding<B: Backend>(vb: &VarBuilder<B>, num: usize, d: usize) -> Result<Param<Tensor<B, 2>>> {
    Ok(Param::from_tensor(vb.tensor("weight", [num, d])?))
}

/// Non-overlapping `p × p` patches of NCHW pixels, each flattened in a `Conv2d` weight's (channel, row,
/// column) order: a stride-`p` convolution with a `p × p` kernel is then one matmul with the kernel
/// reshaped to `[channels * p * p, out]`.
///
/// # Shapes
/// - pixels: `[batch, channels, height, width]` → `[batch * (height / p) * (width / p), channels * p * p]`
pub fn patches<B: Backend>(pixels: Tensor<B, 4>, p: usize) -> Tensor<B, 2> {
    let [batch, channels, height, width] = pixels.dims();
    let (gh, gw) = (height / p, width / p);
    pixels
        .reshape([batch, channels, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([batch * gh * gw, channels * p * p])
}

/// Activation functions named as in `transformers`' `ACT2FN` (`hidden_act` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, the original CLIP's approximation.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU (erf).
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

impl Activation {
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Activation::Gelu => activation::gelu(x),
            Activation::GeluTanh => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
            Activation::Silu => activation::silu(x),
        }
    }
}

/// Two linear layers with an activation between them (`fc1`, `fc2` in CLIP and BLIP's ViT).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> Mlp<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, intermediate: usize, act: Activation) -> Result<Self> {
        Ok(Mlp {
            fc1: linear(&vb.pp("fc1"), hidden, intermediate, true)?,
            fc2: linear(&vb.pp("fc2"), intermediate, hidden, true)?,
            act,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}
