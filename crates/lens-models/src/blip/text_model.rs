//! BLIP's text decoder: BERT with causal self-attention, cross-attention to the image states in every
//! layer, post-norm residuals (BERT's blocks, [`crate::bert::layers`]), and the masked-LM head (tied to the
//! word embeddings) as the LM head.
//!
//! Reference: `BlipTextEmbeddings`, `BlipTextSelfAttention`, `BlipTextLayer`, `BlipTextModel`,
//! `BlipTextLMHeadModel` in `transformers/models/blip/modeling_blip_text.py` (transformers v5.23.0).
//!
//! Decoding is incremental: [`DecoderCache`] holds each layer's self-attention keys/values of the
//! tokens seen so far and the cross-attention keys/values of the image, computed once.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use super::config::BlipTextConfig;
use crate::bert::layers::{BertAttention, BertOutput};
use crate::cpu::{self, Heads};
use crate::gemm::{View, product_with_bias};
use crate::nn::{
    Activation, Dense, dense, embedding, from_host, host_matmul, layer_norm, layer_norm_host, mask_host, to_host,
};
use crate::{Error, Result, weights::VarBuilder};

/// One decoder layer: causal self-attention, cross-attention to the image, feed-forward.
#[derive(Module, Debug)]
pub struct BlipTextLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub crossattention: BertAttention<B>,
    /// `intermediate.dense`
    pub intermediate: Dense<B>,
    pub output: BertOutput<B>,
    #[module(skip)]
    pub act: Activation,
    /// The three norms' epsilon (burn keeps a `LayerNorm`'s own private).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> BlipTextLayer<B> {
    fn load(vb: &VarBuilder<B>, c: &BlipTextConfig) -> Result<Self> {
        let (heads, eps) = (c.num_attention_heads, c.layer_norm_eps);
        Ok(BlipTextLayer {
            attention: BertAttention::load(&vb.pp("attention"), c.hidden_size, c.hidden_size, heads, eps)?,
            crossattention: BertAttention::load(
                &vb.pp("crossattention"),
                c.hidden_size,
                c.encoder_hidden_size,
                heads,
                eps,
            )?,
            intermediate: dense(&vb.pp("intermediate").pp("dense"), c.hidden_size, c.intermediate_size, true)?,
            output: BertOutput::load(&vb.pp("output"), c.intermediate_size, c.hidden_size, eps)?,
            act: c.hidden_act,
            layer_norm_eps: eps,
        })
    }

    /// Whether every weight of the layer is in host memory: then decoding runs on host rows.
    fn is_host(&self) -> bool {
        let attention = |a: &BertAttention<B>| {
            [&a.attn.query, &a.attn.key, &a.attn.value, &a.output.dense].iter().all(|d| d.is_host())
        };
        attention(&self.attention)
            && attention(&self.crossattention)
            && self.intermediate.is_host()
            && self.output.dense.is_host()
    }

    /// [`Self::forward`] on host rows: `x` is `[rows * n, hidden]`, the `n` new positions of each row.
    fn forward_host(
        &self,
        x: &[f32],
        rows: usize,
        n: usize,
        cache: &mut HostLayerCache,
        mask: Option<&cpu::Mask>,
    ) -> Vec<f32> {
        let m = rows * n;
        let hidden = x.len() / m;
        let eps = self.layer_norm_eps;
        // `LayerNorm(dense(y) + residual)`, BERT's post-norm output block.
        let output = |block: &BertOutput<B>, y: &[f32], residual: &[f32]| {
            let mut sum = block.dense.forward_host(y, m);
            cpu::add_assign(&mut sum, residual);
            layer_norm_host(&block.layer_norm, eps, &sum)
        };
        let heads = self.attention.attn.num_heads;
        let shape = |keys: usize| Heads { batch: rows, seq: n, keys, heads, head_dim: hidden / heads };

        let attn = &self.attention.attn;
        let q = attn.query.forward_host(x, m);
        cache.append(&attn.key.forward_host(x, m), &attn.value.forward_host(x, m), rows, n, hidden);
        let keys = cache.seen;
        let context = cpu::attention(
            View::rows(&q, hidden),
            View::rows(&cache.self_k, hidden),
            View::rows(&cache.self_v, hidden),
            shape(keys),
            mask,
        );
        let h = output(&self.attention.output, &context, x);

        let q = self.crossattention.attn.query.forward_host(&h, m);
        let (k, v) = (View::rows(&cache.cross_k, hidden), View::rows(&cache.cross_v, hidden));
        let cross = cpu::attention(View::rows(&q, hidden), k, v, shape(cache.positions), None);
        let h = output(&self.crossattention.output, &cross, &h);

        let mut ff = self.intermediate.forward_host(&h, m);
        self.act.forward_host(&mut ff);
        output(&self.output, &ff, &h)
    }

    fn forward(&self, x: Tensor<B, 3>, cache: &mut LayerCache<B>, mask: Option<&Tensor<B, 4, Bool>>) -> Tensor<B, 3> {
        let self_attn = &self.attention.attn;
        let (k, v) = self_attn.key_value(x.clone());
        let (k, v) = match (cache.self_k.take(), cache.self_v.take()) {
            (Some(pk), Some(pv)) => (Tensor::cat(vec![pk, k], 3), Tensor::cat(vec![pv, v], 2)),
            _ => (k, v),
        };
        cache.self_k = Some(k.clone());
        cache.self_v = Some(v.clone());
        let h = self.attention.output.forward(self_attn.attend(x.clone(), k, v, mask), x);

        let cross = self.crossattention.attn.attend(h.clone(), cache.cross_k.clone(), cache.cross_v.clone(), None);
        let h = self.crossattention.output.forward(cross, h);

        let ff = self.act.forward(self.intermediate.forward(h.clone()));
        self.output.forward(ff, h)
    }
}

/// Keys and values one layer has computed so far.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// Keys `[rows, heads, head_dim, tokens so far]` (transposed), values `[rows, heads, tokens so far, head_dim]`.
    self_k: Option<Tensor<B, 4>>,
    self_v: Option<Tensor<B, 4>>,
    /// The same over the image positions, fixed for the whole generation.
    cross_k: Tensor<B, 4>,
    cross_v: Tensor<B, 4>,
}

/// One layer's keys and values on host rows (the decoder on burn-ndarray), each `[rows, tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct HostLayerCache {
    self_k: Vec<f32>,
    self_v: Vec<f32>,
    /// Tokens in `self_k` and `self_v` per row.
    seen: usize,
    /// Over the image positions, fixed for the whole generation.
    cross_k: Vec<f32>,
    cross_v: Vec<f32>,
    positions: usize,
}

impl HostLayerCache {
    /// Each row's `n` new keys and values (`[rows * n, hidden]`) after its cached ones.
    fn append(&mut self, k: &[f32], v: &[f32], rows: usize, n: usize, hidden: usize) {
        let (old, new) = (self.seen * hidden, n * hidden);
        let grow = |cache: &[f32], fresh: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(rows * (old + new));
            for r in 0..rows {
                out.extend_from_slice(&cache[r * old..(r + 1) * old]);
                out.extend_from_slice(&fresh[r * new..(r + 1) * new]);
            }
            out
        };
        self.self_k = grow(&self.self_k, k);
        self.self_v = grow(&self.self_v, v);
        self.seen += n;
    }

    /// Row `i` becomes old row `order[i]` in the self-attention caches.
    fn reorder(&mut self, order: &[usize]) {
        let row = self.self_k.len() / order.len().max(1);
        let pick = |cache: &[f32]| -> Vec<f32> {
            order.iter().flat_map(|&r| &cache[r * row..(r + 1) * row]).copied().collect()
        };
        self.self_k = pick(&self.self_k);
        self.self_v = pick(&self.self_v);
    }
}

/// The decoder's state between steps: per-layer key/value caches and the number of tokens seen.
#[derive(Debug, Clone)]
pub struct DecoderCache<B: Backend> {
    layers: Layers<B>,
    seen: usize,
}

/// The per-layer caches, as burn tensors or, when the decoder runs on host rows, host vectors.
#[derive(Debug, Clone)]
enum Layers<B: Backend> {
    Device(Vec<LayerCache<B>>),
    Host(Vec<HostLayerCache>),
}

impl<B: Backend> DecoderCache<B> {
    /// Tokens already fed to the decoder.
    pub fn len(&self) -> usize {
        self.seen
    }

    pub fn is_empty(&self) -> bool {
        self.seen == 0
    }

    /// Rows follow `rows` (beam search moving hypotheses between beams): row `i` becomes old row `rows[i]`.
    /// Only the self-attention caches move: every beam of one image shares its cross-attention states,
    /// and beams never leave their image.
    pub fn reorder(&mut self, rows: &[usize]) {
        if rows.iter().enumerate().all(|(i, &r)| i == r) {
            return;
        }
        let layers = match &mut self.layers {
            Layers::Device(layers) => layers,
            Layers::Host(layers) => {
                layers.iter_mut().for_each(|layer| layer.reorder(rows));
                return;
            }
        };
        let Some(device) = layers.first().map(|l| l.cross_k.device()) else { return };
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]),
            &device,
        );
        for layer in layers {
            layer.self_k = layer.self_k.take().map(|t| t.select(0, index.clone()));
            layer.self_v = layer.self_v.take().map(|t| t.select(0, index.clone()));
        }
    }
}

/// `text_decoder`: BERT embeddings, decoder layers and the LM head.
#[derive(Module, Debug)]
pub struct BlipTextLMHeadModel<B: Backend> {
    /// `bert.embeddings.word_embeddings.weight`: `[vocab, hidden]`.
    pub word_embeddings: Param<Tensor<B, 2>>,
    /// `bert.embeddings.position_embeddings.weight`: `[max_positions, hidden]`.
    pub position_embeddings: Param<Tensor<B, 2>>,
    /// `bert.embeddings.LayerNorm`
    pub embeddings_norm: LayerNorm<B>,
    pub layers: Vec<BlipTextLayer<B>>,
    /// `cls.predictions.transform.dense`
    pub transform_dense: Dense<B>,
    /// `cls.predictions.transform.LayerNorm`
    pub transform_norm: LayerNorm<B>,
    /// `cls.predictions.decoder.weight` `[vocab, hidden]`: the word embeddings themselves when the
    /// checkpoint ties them (the same tensor, not a copy).
    pub decoder_weight: Param<Tensor<B, 2>>,
    /// `cls.predictions.bias` (= `cls.predictions.decoder.bias`): `[vocab]`.
    pub decoder_bias: Param<Tensor<B, 1>>,
    /// On burn-ndarray, the decoder's weight and bias in host memory, multiplied by [`crate::gemm`]: burn's
    /// `matmul` would copy the `[vocab, hidden]` weight (94 MB for BLIP-base) at every step. A second copy
    /// of the weight when it is tied to the embeddings.
    #[module(skip)]
    pub decoder_host: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    #[module(skip)]
    pub act: Activation,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
}

impl<B: Backend> BlipTextLMHeadModel<B> {
    pub fn load(vb: &VarBuilder<B>, c: &BlipTextConfig) -> Result<Self> {
        let (bert, head) = (vb.pp("bert"), vb.pp("cls").pp("predictions"));
        let e = bert.pp("embeddings");
        let word_embeddings = embedding(&e.pp("word_embeddings"), c.vocab_size, c.hidden_size)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| BlipTextLayer::load(&bert.pp("encoder").pp("layer").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        // Published checkpoints store the tied LM head once, under the embeddings (and the bias under
        // `cls.predictions.bias`); untied conversions carry `decoder.weight` / `decoder.bias` too.
        let decoder = head.pp("decoder");
        let decoder_weight = if decoder.contains("weight") {
            Param::from_tensor(decoder.tensor("weight", [c.vocab_size, c.hidden_size])?)
        } else {
            Param::from_tensor(word_embeddings.val())
        };
        let decoder_bias = if head.contains("bias") {
            head.tensor("bias", [c.vocab_size])?
        } else {
            decoder.tensor("bias", [c.vocab_size])?
        };
        let transform = head.pp("transform");
        let decoder_host =
            host_matmul::<B>().then(|| Arc::new((to_host(decoder_weight.val()), to_host(decoder_bias.clone()))));
        Ok(BlipTextLMHeadModel {
            word_embeddings,
            position_embeddings: embedding(&e.pp("position_embeddings"), c.max_position_embeddings, c.hidden_size)?,
            embeddings_norm: layer_norm(&e.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            layers,
            transform_dense: dense(&transform.pp("dense"), c.hidden_size, c.hidden_size, true)?,
            transform_norm: layer_norm(&transform.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            decoder_weight,
            decoder_bias: Param::from_tensor(decoder_bias),
            decoder_host,
            act: c.hidden_act,
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
        })
    }

    /// A fresh cache over `image_embeds` (`[rows, image positions, encoder hidden]`): the cross-attention
    /// keys and values of every layer, computed once.
    pub fn start(&self, image_embeds: Tensor<B, 3>) -> DecoderCache<B> {
        if !self.layers.is_empty() && self.layers.iter().all(BlipTextLayer::is_host) {
            let [rows, positions, _] = image_embeds.dims();
            let image = to_host(image_embeds);
            let layers = self
                .layers
                .iter()
                .map(|layer| {
                    let attn = &layer.crossattention.attn;
                    let (cross_k, cross_v) = (
                        attn.key.forward_host(&image, rows * positions),
                        attn.value.forward_host(&image, rows * positions),
                    );
                    HostLayerCache { self_k: Vec::new(), self_v: Vec::new(), seen: 0, cross_k, cross_v, positions }
                })
                .collect();
            return DecoderCache { layers: Layers::Host(layers), seen: 0 };
        }
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let (cross_k, cross_v) = layer.crossattention.attn.key_value(image_embeds.clone());
                LayerCache { self_k: None, self_v: None, cross_k, cross_v }
            })
            .collect();
        DecoderCache { layers: Layers::Device(layers), seen: 0 }
    }

    /// Feed the next tokens of every row and return the final hidden states of the new positions.
    ///
    /// `attention_mask` (1 = token, 0 = padding; covering every token so far, cached ones included) hides
    /// padding as the reference does; `None` means no padding.
    ///
    /// # Shapes
    /// - input_ids: `rows` rows of `n` new ids → `[rows, n, hidden]`
    pub fn forward_hidden(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
        cache: &mut DecoderCache<B>,
    ) -> Result<Tensor<B, 3>> {
        let rows = input_ids.len();
        let n = input_ids.first().map(Vec::len).unwrap_or(0);
        if rows == 0 || n == 0 || input_ids.iter().any(|r| r.len() != n) {
            return Err(Error::invalid_input("token batch must be non-empty with rows of equal length"));
        }
        let (past, total) = (cache.seen, cache.seen + n);
        if total > self.max_position_embeddings {
            return Err(Error::invalid_input(format!(
                "{total} tokens exceed max_position_embeddings {}",
                self.max_position_embeddings
            )));
        }
        if let Some(&bad) = input_ids.iter().flatten().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::invalid_input(format!("token id {bad} outside vocabulary of {}", self.vocab_size)));
        }
        if let Some(mask) = attention_mask
            && (mask.len() != rows || mask.iter().any(|m| m.len() != total))
        {
            return Err(Error::invalid_input("attention mask must cover every token so far"));
        }
        let device = self.word_embeddings.val().device();
        let flat: Vec<i64> = input_ids.iter().flatten().map(|&id| id as i64).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [rows * n]), &device);
        let hidden = self.word_embeddings.val().dims()[1];
        let tokens = self.word_embeddings.val().select(0, ids).reshape([rows, n, hidden]);
        let positions = self.position_embeddings.val().narrow(0, past, n).unsqueeze::<3>();
        let mut x = self.embeddings_norm.forward(tokens + positions);

        let mask = decoder_mask::<B>(past, n, attention_mask, &device);
        match &mut cache.layers {
            Layers::Device(caches) => {
                for (layer, layer_cache) in self.layers.iter().zip(caches.iter_mut()) {
                    x = layer.forward(x, layer_cache, mask.as_ref());
                }
            }
            Layers::Host(caches) => {
                let dims = x.dims();
                let mask = mask.as_ref().map(mask_host);
                let mut rows = to_host(x);
                for (layer, layer_cache) in self.layers.iter().zip(caches.iter_mut()) {
                    rows = layer.forward_host(&rows, dims[0], n, layer_cache, mask.as_ref());
                }
                x = from_host(rows, dims, &device);
            }
        }
        cache.seen = total;
        Ok(x)
    }

    /// The LM head: vocabulary logits of hidden states.
    ///
    /// # Shapes
    /// - hidden: `[rows, n, hidden]` → `[rows, n, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [rows, n, d] = hidden.dims();
        let h = self.transform_norm.forward(self.act.forward(self.transform_dense.forward(hidden)));
        if let Some(host) = &self.decoder_host {
            let (weight, bias) = (&host.0, &host.1);
            let (device, m) = (h.device(), rows * n);
            let h = to_host(h.reshape([m, d]));
            let (h, weight) = (View::rows(&h, d), View::rows(weight, d).t());
            let logits = product_with_bias(m, d, self.vocab_size, h, weight, Some(bias));
            return from_host(logits, [rows, n, self.vocab_size], &device);
        }
        // `W · hᵀ` reads the `[vocab, hidden]` weight in its stored order; `h · Wᵀ` would make the
        // backend copy all of it into a transposed layout on every step.
        let logits = self.decoder_weight.val().matmul(h.reshape([rows * n, d]).transpose()).transpose()
            + self.decoder_bias.val().unsqueeze::<2>();
        logits.reshape([rows, n, self.vocab_size])
    }
}

/// `true` where a new query must not see a key: keys after it (causal), and padding. `None` when nothing
/// is hidden (one new token and no padding).
fn decoder_mask<B: Backend>(
    past: usize,
    n: usize,
    attention_mask: Option<&[Vec<u32>]>,
    device: &B::Device,
) -> Option<Tensor<B, 4, Bool>> {
    let total = past + n;
    let causal = (n > 1).then(|| {
        // Query i (position past + i) sees keys 0..=past + i.
        let hide: Vec<bool> = (0..n).flat_map(|i| (0..total).map(move |j| j > past + i)).collect();
        Tensor::<B, 2, Bool>::from_data(TensorData::new(hide, [n, total]), device).reshape([1, 1, n, total])
    });
    let padding = attention_mask.filter(|rows| rows.iter().flatten().any(|&m| m == 0)).map(|rows| {
        let hide: Vec<bool> = rows.iter().flat_map(|r| r.iter().map(|&m| m == 0)).collect();
        Tensor::<B, 2, Bool>::from_data(TensorData::new(hide, [rows.len(), total]), device)
            .reshape([rows.len(), 1, 1, total])
            .expand([rows.len(), 1, n, total])
    });
    match (causal, padding) {
        (Some(c), Some(p)) => {
            let rows = p.dims()[0];
            Some(c.expand([rows, 1, n, total]).bool_or(p))
        }
        (c, p) => c.or(p),
    }
}
