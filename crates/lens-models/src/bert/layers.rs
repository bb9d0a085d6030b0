//! BERT's building blocks, as BERT, MiniLM and BLIP's text decoder share them: multi-head attention with
//! separate `query`, `key`, `value`, and the post-norm output blocks `LayerNorm(dense(x) + residual)`.
//!
//! Reference: `BertSelfAttention` (eager), `BertSelfOutput`, `BertAttention`, `BertOutput` in
//! `transformers/models/bert/modeling_bert.py` (transformers v5.23.0); BLIP's copies in `modeling_blip_text.py`.

use burn::module::Module;
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Tensor, activation::softmax, backend::Backend};

use crate::nn::{Dense, dense, layer_norm};
use crate::{Result, weights::VarBuilder};

/// `query`, `key`, `value` of one attention block (`attention.self` or `crossattention.self`).
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Dense<B>,
    pub key: Dense<B>,
    pub value: Dense<B>,
    pub num_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, kv_in: usize, num_heads: usize) -> Result<Self> {
        Ok(BertSelfAttention {
            query: dense(&vb.pp("query"), hidden, hidden, true)?,
            key: dense(&vb.pp("key"), kv_in, hidden, true)?,
            value: dense(&vb.pp("value"), kv_in, hidden, true)?,
            num_heads,
        })
    }

    /// `[rows, seq, in]` → `[rows, heads, seq, head_dim]`.
    fn heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [rows, seq, hidden] = x.dims();
        x.reshape([rows, seq, self.num_heads, hidden / self.num_heads]).swap_dims(1, 2)
    }

    /// Keys (transposed, `[rows, heads, head_dim, seq]`, ready for `q · kᵀ`) and values
    /// (`[rows, heads, seq, head_dim]`) of `states`.
    pub fn key_value(&self, states: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (self.heads(self.key.forward(states.clone())).swap_dims(2, 3), self.heads(self.value.forward(states)))
    }

    /// `softmax(q kᵀ / √d + mask) v`, heads merged back.
    ///
    /// # Shapes
    /// - x: `[rows, seq, hidden]`; k_t: `[rows, heads, head_dim, keys]`; v: `[rows, heads, keys, head_dim]`
    /// - mask: `[rows or 1, 1, seq, keys]`, `true` where a query must not see a key
    pub fn attend(
        &self,
        x: Tensor<B, 3>,
        k_t: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let [rows, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let q = self.heads(self.query.forward(x));
        let keys = k_t.dims()[3];
        let mut scores = q.matmul(k_t) / (head_dim as f64).sqrt();
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.clone().expand([rows, self.num_heads, seq, keys]), f32::NEG_INFINITY);
        }
        softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([rows, seq, hidden])
    }
}

/// `dense`, then `LayerNorm(dense(x) + residual)` (BERT's post-norm output blocks).
#[derive(Module, Debug)]
pub struct BertOutput<B: Backend> {
    pub dense: Dense<B>,
    /// `LayerNorm`
    pub layer_norm: LayerNorm<B>,
}

impl<B: Backend> BertOutput<B> {
    pub fn load(vb: &VarBuilder<B>, d_in: usize, hidden: usize, eps: f64) -> Result<Self> {
        Ok(BertOutput {
            dense: dense(&vb.pp("dense"), d_in, hidden, true)?,
            layer_norm: layer_norm(&vb.pp("LayerNorm"), hidden, eps)?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}

/// `attention.self` + `attention.output` (or the same under `crossattention`).
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub attn: BertSelfAttention<B>,
    pub output: BertOutput<B>,
}

impl<B: Backend> BertAttention<B> {
    /// `hidden` wide queries over `kv_in` wide keys and values (the same for self-attention).
    pub fn load(vb: &VarBuilder<B>, hidden: usize, kv_in: usize, num_heads: usize, eps: f64) -> Result<Self> {
        Ok(BertAttention {
            attn: BertSelfAttention::load(&vb.pp("self"), hidden, kv_in, num_heads)?,
            output: BertOutput::load(&vb.pp("output"), hidden, hidden, eps)?,
        })
    }

    /// Self-attention over `x` with its output block: `LayerNorm(dense(attend(x)) + x)`.
    ///
    /// # Shapes
    /// - x: `[rows, seq, hidden]`; mask: `[rows or 1, 1, seq, seq]`, `true` where a query must not see a key
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let (k_t, v) = self.attn.key_value(x.clone());
        self.output.forward(self.attn.attend(x.clone(), k_t, v, mask), x)
    }
}
