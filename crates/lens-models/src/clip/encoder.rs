//! The pre-norm transformer encoder both CLIP towers share.
//!
//! Reference: `CLIPAttention`, `CLIPMLP`, `CLIPEncoderLayer`, `CLIPEncoder` in
//! `transformers/models/clip/modeling_clip.py` (transformers v5.23.0). Hidden states follow the
//! reference's `output_hidden_states=True` (recorded per `CLIPEncoderLayer`, with
//! `tie_last_hidden_states=False` in both towers: the last state is not normalised).

use burn::module::Module;
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Tensor, activation::softmax, backend::Backend};

use crate::cpu::{self, Heads};
use crate::gemm::View;
use crate::nn::{Activation, Dense, Mlp, dense, from_host, layer_norm, mask_host, pre_norm_residual_host, to_host};
use crate::{Result, weights::VarBuilder};

/// Sizes of one tower's encoder.
#[derive(Debug, Clone, Copy)]
pub struct EncoderDims {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
    pub act: Activation,
}

/// What a tower returns (HF's `BaseModelOutputWithPooling`).
#[derive(Debug, Clone)]
pub struct BaseModelOutputWithPooling<B: Backend> {
    /// `[batch, seq, hidden]`
    pub last_hidden_state: Tensor<B, 3>,
    /// One state per input summarising it, `[batch, hidden]`: the post-normed class token (vision),
    /// the final-normed end-of-text token (text).
    pub pooler_output: Tensor<B, 2>,
}

/// Multi-head self-attention with separate `q_proj`, `k_proj`, `v_proj`, `out_proj` (all biased; f32 or
/// int8 weights).
#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub q_proj: Dense<B>,
    pub k_proj: Dense<B>,
    pub v_proj: Dense<B>,
    pub out_proj: Dense<B>,
    pub num_heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, num_heads: usize) -> Result<Self> {
        Ok(ClipAttention {
            q_proj: dense(&vb.pp("q_proj"), hidden, hidden, true)?,
            k_proj: dense(&vb.pp("k_proj"), hidden, hidden, true)?,
            v_proj: dense(&vb.pp("v_proj"), hidden, hidden, true)?,
            out_proj: dense(&vb.pp("out_proj"), hidden, hidden, true)?,
            num_heads,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - mask: `[batch or 1, 1, seq, seq]`, `true` where a query may NOT attend to a key
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<B, 3>| t.reshape([batch, seq, self.num_heads, head_dim]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));

        let mut scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        if let Some(mask) = mask {
            // Broadcast over batch and heads where the mask has size 1.
            scores = scores.mask_fill(mask.clone().expand([batch, self.num_heads, seq, seq]), f32::NEG_INFINITY);
        }
        let context = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden]);
        self.out_proj.forward(context)
    }

    fn is_host(&self) -> bool {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj].iter().all(|p| p.is_host())
    }

    /// [`Self::forward`] on host rows: `x` is `[batch * seq, hidden]`.
    fn forward_host(&self, x: &[f32], batch: usize, seq: usize, mask: Option<&cpu::Mask>) -> Vec<f32> {
        let rows = batch * seq;
        let hidden = x.len() / rows;
        let (q, k, v) =
            (self.q_proj.forward_host(x, rows), self.k_proj.forward_host(x, rows), self.v_proj.forward_host(x, rows));
        let shape = Heads { batch, seq, keys: seq, heads: self.num_heads, head_dim: hidden / self.num_heads };
        let context =
            cpu::attention(View::rows(&q, hidden), View::rows(&k, hidden), View::rows(&v, hidden), shape, mask);
        self.out_proj.forward_host(&context, rows)
    }
}

/// `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    pub self_attn: ClipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: Mlp<B>,
    pub layer_norm2: LayerNorm<B>,
    /// Both norms' epsilon (burn keeps a `LayerNorm`'s own private).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> ClipEncoderLayer<B> {
    pub fn load(vb: &VarBuilder<B>, d: &EncoderDims) -> Result<Self> {
        Ok(ClipEncoderLayer {
            self_attn: ClipAttention::load(&vb.pp("self_attn"), d.hidden_size, d.num_heads)?,
            layer_norm1: layer_norm(&vb.pp("layer_norm1"), d.hidden_size, d.layer_norm_eps)?,
            mlp: Mlp::load(&vb.pp("mlp"), d.hidden_size, d.intermediate_size, d.act)?,
            layer_norm2: layer_norm(&vb.pp("layer_norm2"), d.hidden_size, d.layer_norm_eps)?,
            layer_norm_eps: d.layer_norm_eps,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }

    fn is_host(&self) -> bool {
        self.self_attn.is_host() && self.mlp.is_host()
    }

    /// [`Self::forward`] on host rows, in place: `x` is `[batch * seq, hidden]`.
    fn forward_host(&self, x: &mut [f32], batch: usize, seq: usize, mask: Option<&cpu::Mask>) {
        let eps = self.layer_norm_eps;
        pre_norm_residual_host(x, &self.layer_norm1, eps, |h| self.self_attn.forward_host(h, batch, seq, mask));
        pre_norm_residual_host(x, &self.layer_norm2, eps, |h| self.mlp.forward_host(h, batch * seq));
    }
}

/// A stack of [`ClipEncoderLayer`]s (`encoder.layers.{i}`).
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub layers: Vec<ClipEncoderLayer<B>>,
}

impl<B: Backend> ClipEncoder<B> {
    pub fn load(vb: &VarBuilder<B>, d: &EncoderDims) -> Result<Self> {
        let layers =
            (0..d.num_layers).map(|i| ClipEncoderLayer::load(&vb.pp("layers").pp(i), d)).collect::<Result<Vec<_>>>()?;
        Ok(ClipEncoder { layers })
    }

    /// The last layer's output (HF's `last_hidden_state`); the states in between are dropped as soon
    /// as the next layer has read them.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, mut x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        if self.is_host() {
            return self.forward_host(x, mask, false).pop().expect("the last state");
        }
        for layer in &self.layers {
            x = layer.forward(x, mask);
        }
        x
    }

    /// Whether every layer's weights are in host memory: then the layers run on host rows ([`crate::cpu`]),
    /// the input read out once and the output put back once.
    fn is_host(&self) -> bool {
        !self.layers.is_empty() && self.layers.iter().all(ClipEncoderLayer::is_host)
    }

    /// The layers on host rows; returns the last state, or every state (the input first) with `all`.
    fn forward_host(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>, all: bool) -> Vec<Tensor<B, 3>> {
        let dims @ [batch, seq, _] = x.dims();
        let device = x.device();
        let mask = mask.map(mask_host);
        let mut x = to_host(x);
        let mut states = Vec::new();
        for layer in &self.layers {
            if all {
                states.push(from_host(x.clone(), dims, &device));
            }
            layer.forward_host(&mut x, batch, seq, mask.as_ref());
        }
        states.push(from_host(x, dims, &device));
        states
    }

    /// Every hidden state, as `CLIPEncoder` returns them with `output_hidden_states=True`: the input
    /// `x` first, then the output of each layer in order, so `hidden_states[i]` has gone through `i`
    /// layers and the last one is [`forward`](Self::forward)'s output. Nothing is normalised after
    /// the last layer (the towers' `post_layernorm` / `final_layer_norm` are not applied).
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`; mask as in [`ClipAttention::forward`]
    /// - output: `num_layers + 1` tensors of `[batch, seq, hidden]`
    pub fn forward_hidden_states(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>) -> Vec<Tensor<B, 3>> {
        if self.is_host() {
            return self.forward_host(x, mask, true);
        }
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(x);
        for layer in &self.layers {
            let input = hidden_states.last().expect("holds at least the input").clone();
            hidden_states.push(layer.forward(input, mask));
        }
        hidden_states
    }
}
