//! The BERT encoder: word + position + token-type embeddings, LayerNorm, then post-norm layers of
//! bidirectional self-attention (padding hidden from every query) and a feed-forward block.
//!
//! Reference: `BertEmbeddings`, `BertLayer`, `BertEncoder`, `BertModel` in
//! `transformers/models/bert/modeling_bert.py` (transformers v5.23.0, eager attention). The pooler
//! (`pooler.dense`, tanh of the first token) is not loaded: sentence embeddings pool the token states.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use super::config::BertConfig;
use super::layers::{BertAttention, BertOutput};
use crate::nn::{Activation, Dense, check_token_ids, dense, embedding, layer_norm};
use crate::{Error, Result, weights::VarBuilder};

/// `embeddings`.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Param<Tensor<B, 2>>,
    pub position_embeddings: Param<Tensor<B, 2>>,
    pub token_type_embeddings: Param<Tensor<B, 2>>,
    /// `LayerNorm`
    pub layer_norm: LayerNorm<B>,
}

/// `encoder.layer.{i}`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    /// `intermediate.dense`
    pub intermediate: Dense<B>,
    pub output: BertOutput<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> BertLayer<B> {
    fn load(vb: &VarBuilder<B>, c: &BertConfig) -> Result<Self> {
        let (hidden, eps) = (c.hidden_size, c.layer_norm_eps);
        Ok(BertLayer {
            attention: BertAttention::load(&vb.pp("attention"), hidden, hidden, c.num_attention_heads, eps)?,
            intermediate: dense(&vb.pp("intermediate").pp("dense"), hidden, c.intermediate_size, true)?,
            output: BertOutput::load(&vb.pp("output"), c.intermediate_size, hidden, eps)?,
            act: c.hidden_act,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, mask: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let h = self.attention.forward(x, Some(mask));
        let ff = self.act.forward(self.intermediate.forward(h.clone()));
        self.output.forward(ff, h)
    }
}

/// `BertModel` without its pooler.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub layers: Vec<BertLayer<B>>,
    #[module(skip)]
    pub vocab_size: usize,
    #[module(skip)]
    pub max_position_embeddings: usize,
}

impl<B: Backend> BertModel<B> {
    /// `vb` at the model's root: `embeddings.*`, `encoder.layer.*` (a `bert.` prefix is the caller's).
    pub fn load(vb: &VarBuilder<B>, c: &BertConfig) -> Result<Self> {
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| BertLayer::load(&vb.pp("encoder").pp("layer").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(&e.pp("word_embeddings"), c.vocab_size, c.hidden_size)?,
                position_embeddings: embedding(&e.pp("position_embeddings"), c.max_position_embeddings, c.hidden_size)?,
                token_type_embeddings: embedding(&e.pp("token_type_embeddings"), c.type_vocab_size, c.hidden_size)?,
                layer_norm: layer_norm(&e.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            },
            layers,
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
        })
    }

    /// The last layer's token states (HF's `last_hidden_state`), token type 0 throughout.
    ///
    /// # Shapes
    /// - input_ids, attention_mask: `batch` rows of `seq` (1 = token, 0 = padding), `seq <= max_position_embeddings`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, input_ids: &[Vec<u32>], attention_mask: &[Vec<u32>]) -> Result<Tensor<B, 3>> {
        let (batch, seq) = check_token_ids(input_ids, self.max_position_embeddings, self.vocab_size)?;
        if attention_mask.len() != batch || attention_mask.iter().any(|r| r.len() != seq) {
            return Err(Error::invalid_input("one attention mask row, as long as its ids, per row of ids"));
        }
        let e = &self.embeddings;
        let device = e.word_embeddings.val().device();
        let hidden = e.word_embeddings.val().dims()[1];
        let flat: Vec<i64> = input_ids.iter().flatten().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [batch * seq]), &device);
        let words = e.word_embeddings.val().select(0, ids).reshape([batch, seq, hidden]);
        let positions = e.position_embeddings.val().slice([0..seq]).unsqueeze::<3>();
        let token_type = e.token_type_embeddings.val().slice([0..1]).unsqueeze::<3>();
        let mut x = e.layer_norm.forward(words + positions + token_type);

        // `true` where a key is padding, for every query.
        let padding: Vec<bool> = attention_mask.iter().flat_map(|r| r.iter().map(|&m| m == 0)).collect();
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(padding, [batch, seq]), &device)
            .reshape([batch, 1, 1, seq])
            .expand([batch, 1, seq, seq]);
        for layer in &self.layers {
            x = layer.forward(x, &mask);
        }
        Ok(x)
    }
}
