//! The LLaMA decoder: `LlamaDecoderLayer`, `LlamaModel` (token embeddings, layers, final norm) and
//! `LlamaForCausalLM` (the model and its LM head, tied to the embeddings or not).
//!
//! Reference: `LlamaDecoderLayer`, `LlamaModel`, `LlamaForCausalLM` in
//! `transformers/models/llama/modeling_llama.py` (transformers v5.23.0). Positions start at the cache's
//! length (`past_key_values.get_seq_length()`), the causal mask lets query `i` see keys up to its own
//! position, and rows are independent sequences of equal length (no padding mask).

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use super::attention::{LlamaAttention, causal_mask};
use super::cache::KvCache;
use super::config::LlamaConfig;
use super::mlp::LlamaMlp;
use super::norm::RmsNorm;
use super::rope::RotaryEmbedding;
use crate::nn::{Dense, Int8Linear, Table, dense, table};
use crate::{Error, Result, weights::VarBuilder};

/// `layers.{i}`: `x + self_attn(input_layernorm(x))`, then `x + mlp(post_attention_layernorm(x))`.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer<B: Backend> {
    pub self_attn: LlamaAttention<B>,
    pub mlp: LlamaMlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> LlamaDecoderLayer<B> {
    pub fn load(vb: &VarBuilder<B>, c: &LlamaConfig) -> Result<Self> {
        let (hidden, eps) = (c.hidden_size, c.rms_norm_eps);
        Ok(LlamaDecoderLayer {
            self_attn: LlamaAttention::load(
                &vb.pp("self_attn"),
                hidden,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim,
                c.attention_bias,
            )?,
            mlp: LlamaMlp::load(&vb.pp("mlp"), hidden, c.intermediate_size, c.hidden_act, c.mlp_bias)?,
            input_layernorm: RmsNorm::load(&vb.pp("input_layernorm"), hidden, eps)?,
            post_attention_layernorm: RmsNorm::load(&vb.pp("post_attention_layernorm"), hidden, eps)?,
        })
    }

    /// The layer around its attention, which `attend` runs on the normed input (with or without a cache, one
    /// sequence or several).
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    fn forward_with(
        &self,
        x: Tensor<B, 3>,
        attend: impl FnOnce(&LlamaAttention<B>, Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let x_attn = x.clone() + attend(&self.self_attn, self.input_layernorm.forward(x));
        x_attn.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x_attn))
    }
}

/// `LlamaModel` (published under `model.`; LLaVA's under `language_model.model.` or `model.language_model.`).
#[derive(Module, Debug)]
pub struct LlamaModel<B: Backend> {
    /// `embed_tokens.weight`: `[vocab, hidden]`, f32 or int8.
    pub embed_tokens: Table<B>,
    pub layers: Vec<LlamaDecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    #[module(skip)]
    pub rotary_emb: RotaryEmbedding,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> LlamaModel<B> {
    /// Load from `vb` at the model's own prefix (`embed_tokens`, `layers.{i}`, `norm` below it).
    pub fn load(vb: &VarBuilder<B>, c: &LlamaConfig) -> Result<Self> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| LlamaDecoderLayer::load(&vb.pp("layers").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(LlamaModel {
            embed_tokens: table(&vb.pp("embed_tokens"), c.vocab_size, c.hidden_size)?,
            layers,
            norm: RmsNorm::load(&vb.pp("norm"), c.hidden_size, c.rms_norm_eps)?,
            rotary_emb: RotaryEmbedding::new(&c.rope_parameters, c.head_dim),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_key_value_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        })
    }

    /// An empty cache for this model: `batch` rows, up to `capacity` positions, allocated now.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        let device = self.norm.weight.val().device();
        KvCache::new(self.layers.len(), batch, self.num_key_value_heads, capacity, self.head_dim, &device)
    }

    /// `embed_tokens(input_ids)`.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids → `[batch, seq, hidden]`
    pub fn embed(&self, input_ids: &[Vec<u32>]) -> Result<Tensor<B, 3>> {
        let batch = input_ids.len();
        let seq = input_ids.first().map(Vec::len).unwrap_or(0);
        if batch == 0 || seq == 0 || input_ids.iter().any(|r| r.len() != seq) {
            return Err(Error::invalid_input("token batch must be non-empty with rows of equal length"));
        }
        if let Some(&bad) = input_ids.iter().flatten().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::invalid_input(format!("token id {bad} outside vocabulary of {}", self.vocab_size)));
        }
        let device = self.norm.weight.val().device();
        let flat: Vec<u32> = input_ids.iter().flatten().copied().collect();
        Ok(self.embed_tokens.gather(&flat, &device).reshape([batch, seq, self.hidden_size]))
    }

    /// The decoder over input embeddings (`inputs_embeds`): positions continue from the cache, whose keys and
    /// values are extended in place; without a cache the positions start at 0 and nothing is kept.
    /// Returns the final-normed hidden states of the new positions.
    ///
    /// # Shapes
    /// - embeds: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward_embeds(&self, embeds: Tensor<B, 3>, mut cache: Option<&mut KvCache<B>>) -> Result<Tensor<B, 3>> {
        let [batch, seq, hidden] = embeds.dims();
        if batch == 0 || seq == 0 || hidden != self.hidden_size {
            return Err(Error::invalid_input(format!(
                "embeddings of shape [{batch}, {seq}, {hidden}] do not fit a decoder of hidden size {}",
                self.hidden_size
            )));
        }
        let start = match cache.as_deref() {
            Some(cache) => {
                if cache.num_layers() != self.layers.len() {
                    return Err(Error::invalid_input("the cache was made for another model"));
                }
                cache.start(batch, seq)?
            }
            None => 0,
        };
        let device = embeds.device();
        let (cos, sin) = self.rotary_emb.cos_sin::<B>(start, seq, &device);
        let mask = causal_mask::<B>(start, seq, &device);
        let mut x = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c.layer_mut(i), start));
            x = layer.forward_with(x, |attn, h| attn.forward(h, (&cos, &sin), layer_cache, mask.as_ref()));
        }
        if let Some(cache) = cache {
            cache.advance(seq);
        }
        Ok(self.norm.forward(x))
    }

    /// One forward pass over several independent sequences at once (continuous batching): segment `i` is
    /// `lens[i]` new positions of sequence `i` (its whole prompt, or its last token), continuing its own cache
    /// (of one row), which is extended in place. The linear layers see every segment's positions in one
    /// product, so the weights are read once per pass however many sequences share it. Segment `i` equals
    /// [`Self::forward_embeds`] of its positions alone.
    ///
    /// # Shapes
    /// - embeds: `[1, Σ lens, hidden]`, the segments one after another; `caches`: one per segment
    /// - output: `[1, Σ lens, hidden]`
    pub fn forward_segments(
        &self,
        embeds: Tensor<B, 3>,
        caches: &mut [&mut KvCache<B>],
        lens: &[usize],
    ) -> Result<Tensor<B, 3>> {
        let [batch, total, hidden] = embeds.dims();
        let fits = batch == 1 && hidden == self.hidden_size && lens.len() == caches.len() && !lens.is_empty();
        if !fits || lens.contains(&0) || lens.iter().sum::<usize>() != total {
            return Err(Error::invalid_input(format!(
                "embeddings of shape [{batch}, {total}, {hidden}] for segments of {lens:?} positions: one row, \
                 hidden size {}, one cache per segment",
                self.hidden_size
            )));
        }
        let mut starts = Vec::with_capacity(lens.len());
        for (cache, &len) in caches.iter().zip(lens) {
            if cache.num_layers() != self.layers.len() {
                return Err(Error::invalid_input("the cache was made for another model"));
            }
            starts.push(cache.start(1, len)?);
        }
        let device = embeds.device();
        let positions: Vec<usize> = starts.iter().zip(lens).flat_map(|(&s, &len)| s..s + len).collect();
        let (cos, sin) = self.rotary_emb.cos_sin_at::<B>(&positions, &device);
        let masks: Vec<_> = starts.iter().zip(lens).map(|(&s, &len)| causal_mask::<B>(s, len, &device)).collect();
        let mut x = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            let segments = caches
                .iter_mut()
                .zip(starts.iter().zip(lens).zip(&masks))
                .map(|(c, ((&start, &len), mask))| (c.layer_mut(i), start, len, mask.as_ref()))
                .collect();
            x = layer.forward_with(x, |attn, h| attn.forward_segments(h, (&cos, &sin), segments));
        }
        caches.iter_mut().zip(lens).for_each(|(c, &len)| c.advance(len));
        Ok(self.norm.forward(x))
    }

    /// [`Self::embed`] then [`Self::forward_embeds`].
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids → `[batch, seq, hidden]`
    pub fn forward(&self, input_ids: &[Vec<u32>], cache: Option<&mut KvCache<B>>) -> Result<Tensor<B, 3>> {
        self.forward_embeds(self.embed(input_ids)?, cache)
    }
}

/// `LlamaForCausalLM`: `model` and the LM head.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM<B: Backend> {
    pub model: LlamaModel<B>,
    /// `lm_head.weight` (`[vocab, hidden]`); `None` when tied to `model.embed_tokens`.
    pub lm_head: Option<Dense<B>>,
}

impl LlamaConfig {
    /// A model with deterministic random weights (benchmarks); real weights come from
    /// [`LlamaForCausalLM::load`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> LlamaForCausalLM<B> {
        let vb = VarBuilder::random(0x11A3A, 0.02, device);
        LlamaForCausalLM::load(&vb, self).expect("random weights always have the configured shapes")
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Load a checkpoint in the HF layout: `model.*` and `lm_head.weight`.
    pub fn load(vb: &VarBuilder<B>, config: &LlamaConfig) -> Result<Self> {
        Self::load_with_prefixes(vb, config, "model", "lm_head")
    }

    /// Load with the decoder under `model_prefix` and the head under `lm_head_prefix` (LLaVA checkpoints:
    /// `language_model.model` / `language_model.lm_head`, or, as transformers 5 writes them,
    /// `model.language_model` / `lm_head`).
    ///
    /// With `tie_word_embeddings` the head is `embed_tokens` and `lm_head.weight` is not read, present or not
    /// (`_tied_weights_keys`); without it `lm_head.weight` must be in the checkpoint (transformers would
    /// initialise a missing one randomly: here it is an error naming the tensor).
    pub fn load_with_prefixes(
        vb: &VarBuilder<B>,
        config: &LlamaConfig,
        model_prefix: &str,
        lm_head_prefix: &str,
    ) -> Result<Self> {
        let model = LlamaModel::load(&vb.pp(model_prefix), config)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(dense(&vb.pp(lm_head_prefix), config.hidden_size, config.vocab_size, false)?)
        };
        Ok(LlamaForCausalLM { model, lm_head })
    }

    /// Length of each row of logits.
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size
    }

    /// An empty cache for this model: `batch` rows, up to `capacity` positions, allocated now.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        self.model.new_cache(batch, capacity)
    }

    /// The LM head: vocabulary logits of final hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]` → `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match (&self.lm_head, &self.model.embed_tokens) {
            (Some(head), _) => head.forward(hidden),
            (None, Table::F32(weight)) => {
                let [batch, seq, d] = hidden.dims();
                // `W · hᵀ` reads the `[vocab, hidden]` table in its stored order (no transposed copy per call).
                let logits = weight.val().matmul(hidden.reshape([batch * seq, d]).transpose()).transpose();
                logits.reshape([batch, seq, self.model.vocab_size])
            }
            // The int8 kernel takes `[out, in]` rows: the embedding table is exactly that.
            (None, Table::Int8(table)) => Int8Linear::new(table.table.clone(), None).forward(hidden),
        }
    }

    /// Logits at every new position (teacher forcing, or a prefill when `cache` is given).
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids → `[batch, seq, vocab]`
    pub fn forward(&self, input_ids: &[Vec<u32>], cache: Option<&mut KvCache<B>>) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.model.forward(input_ids, cache)?))
    }
}
