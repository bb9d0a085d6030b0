//! `LlamaAttention`: causal self-attention with rotary embeddings on queries and keys and grouped-query
//! attention (`num_key_value_heads` key/value heads, each shared by `num_key_value_groups` query heads).
//!
//! Reference: `LlamaAttention`, `eager_attention_forward` and `repeat_kv` in
//! `transformers/models/llama/modeling_llama.py` (transformers v5.23.0): `softmax(q kᵀ · head_dim^-0.5 +
//! mask) v`, softmax in f32. `repeat_kv` copies each key/value head to its `n_rep` query heads (query head
//! `h` reads key/value head `h / n_rep`); here the query heads of one group are stacked instead, so each
//! key/value head is multiplied once with all its query heads (`[batch, kv_heads, n_rep · seq, head_dim]`):
//! the same dot products, without materialising the repeated keys and values.

use burn::module::Module;
use burn::tensor::{Bool, Tensor, TensorData, activation::softmax, backend::Backend};

use super::cache::LayerCache;
use super::rope::apply_rotary;
use crate::nn::{Dense, dense};
use crate::{Result, weights::VarBuilder};

/// `self_attn`: `q_proj` (`[heads · head_dim, hidden]`), `k_proj` and `v_proj` (`[kv_heads · head_dim,
/// hidden]`), `o_proj` (`[hidden, heads · head_dim]`); biased only when `attention_bias`.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    pub q_proj: Dense<B>,
    pub k_proj: Dense<B>,
    pub v_proj: Dense<B>,
    pub o_proj: Dense<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> LlamaAttention<B> {
    pub fn load(
        vb: &VarBuilder<B>,
        hidden: usize,
        num_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(LlamaAttention {
            q_proj: dense(&vb.pp("q_proj"), hidden, num_heads * head_dim, bias)?,
            k_proj: dense(&vb.pp("k_proj"), hidden, num_kv_heads * head_dim, bias)?,
            v_proj: dense(&vb.pp("v_proj"), hidden, num_kv_heads * head_dim, bias)?,
            o_proj: dense(&vb.pp("o_proj"), num_heads * head_dim, hidden, bias)?,
            num_heads,
            num_kv_heads,
            head_dim,
        })
    }

    /// Attend from `x`'s positions (`start..start + seq`) to every position so far: the cached ones, when
    /// `cache` is given (the new keys and values are written into it), and the new ones.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`; cos, sin: `[1, 1, seq, head_dim]`
    /// - mask: `[seq, start + seq]`, `true` where a query must not see a key (`None`: sees all)
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        (cos, sin): (&Tensor<B, 4>, &Tensor<B, 4>),
        cache: Option<(&mut LayerCache<B>, usize)>,
        mask: Option<&Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let (q, k, v) = self.project(x, cos, sin);
        let (k, v) = match cache {
            Some((cache, start)) => cache.update(start, k, v),
            None => (k, v),
        };
        self.o_proj.forward(self.attend(q, k, v, mask))
    }

    /// Several sequences at once, each with its own cache (continuous batching): `x` holds their new positions
    /// one segment after another; the projections run on all of them together, the attention segment by
    /// segment over its own cache (`(cache, start, len, causal mask)` each). Segment `i` gives what
    /// [`Self::forward`] gives its positions alone.
    ///
    /// # Shapes
    /// - x: `[1, Σ len, hidden]`; cos, sin: `[1, 1, Σ len, head_dim]` (each segment's positions)
    /// - output: `[1, Σ len, hidden]`
    pub fn forward_segments(
        &self,
        x: Tensor<B, 3>,
        (cos, sin): (&Tensor<B, 4>, &Tensor<B, 4>),
        segments: Vec<(&mut LayerCache<B>, usize, usize, Option<&Tensor<B, 2, Bool>>)>,
    ) -> Tensor<B, 3> {
        let (q, k, v) = self.project(x, cos, sin);
        let mut offset = 0;
        let contexts = segments
            .into_iter()
            .map(|(cache, start, len, mask)| {
                let part = |t: &Tensor<B, 4>| t.clone().narrow(2, offset, len);
                let (k, v) = cache.update(start, part(&k), part(&v));
                let context = self.attend(part(&q), k, v, mask);
                offset += len;
                context
            })
            .collect();
        self.o_proj.forward(Tensor::cat(contexts, 1))
    }

    /// Queries, keys (both rotated) and values, heads split out.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`; cos, sin: broadcastable to `[batch, 1, seq, head_dim]`
    /// - output: `[batch, heads, seq, head_dim]`, then twice `[batch, kv_heads, seq, head_dim]`
    fn project(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, seq, _] = x.dims();
        let split = |t: Tensor<B, 3>, h: usize| t.reshape([batch, seq, h, self.head_dim]).swap_dims(1, 2);
        let q = apply_rotary(split(self.q_proj.forward(x.clone()), self.num_heads), cos, sin);
        let k = apply_rotary(split(self.k_proj.forward(x.clone()), self.num_kv_heads), cos, sin);
        let v = split(self.v_proj.forward(x), self.num_kv_heads);
        (q, k, v)
    }

    /// `softmax(q kᵀ · head_dim^-0.5 + mask) v`, the query heads of each key/value head stacked, heads merged.
    ///
    /// # Shapes
    /// - q: `[batch, heads, seq, head_dim]`; k, v: `[batch, kv_heads, keys, head_dim]`; mask: `[seq, keys]`
    /// - output: `[batch, seq, heads · head_dim]`
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        mask: Option<&Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let [batch, heads, seq, head_dim] = q.dims();
        let (kv_heads, keys) = (k.dims()[1], k.dims()[2]);
        // Query heads grouped under their key/value head: [batch, kv_heads, n_rep * seq, head_dim].
        let n_rep = heads / kv_heads;
        let q = q.reshape([batch, kv_heads, n_rep * seq, head_dim]);
        let scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        let mut scores = scores.reshape([batch, heads, seq, keys]);
        if let Some(mask) = mask {
            let mask = mask.clone().reshape([1, 1, seq, keys]).expand([batch, heads, seq, keys]);
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let weights = softmax(scores, 3).reshape([batch, kv_heads, n_rep * seq, keys]);
        let context = weights.matmul(v).reshape([batch, heads, seq, head_dim]).swap_dims(1, 2);
        context.reshape([batch, seq, heads * head_dim])
    }
}

/// `true` where query `i` (position `start + i`) must not see key `j`: `j > start + i`. `None` for a single
/// query, which sees every key.
///
/// # Shapes
/// - output: `[seq, start + seq]`
pub fn causal_mask<B: Backend>(start: usize, seq: usize, device: &B::Device) -> Option<Tensor<B, 2, Bool>> {
    (seq > 1).then(|| {
        let total = start + seq;
        let hide: Vec<bool> = (0..seq).flat_map(|i| (0..total).map(move |j| j > start + i)).collect();
        Tensor::from_data(TensorData::new(hide, [seq, total]), device)
    })
}
