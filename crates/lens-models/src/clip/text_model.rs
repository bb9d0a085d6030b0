//! The CLIP text tower: token + position embeddings, causal pre-norm encoder, final norm, pooling at
//! the end-of-text token.
//!
//! Reference: `CLIPTextEmbeddings`, `CLIPTextTransformer` in
//! `transformers/models/clip/modeling_clip.py` (transformers v5.23.0). Pooling copies the reference
//! exactly: configs with `eos_token_id == 2` (the original checkpoints, whose config predates the
//! tokenizer's real EOS id) pool at the position of the largest token id; all others pool at the first
//! position holding `eos_token_id`.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use super::config::ClipTextConfig;
use super::encoder::{BaseModelOutputWithPooling, ClipEncoder};
use crate::nn::{Table, check_token_ids, embedding, layer_norm, table};
use crate::{Result, weights::VarBuilder};

/// `text_model.embeddings`.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings<B: Backend> {
    /// `token_embedding.weight`: `[vocab, hidden]`, f32 or int8 rows.
    pub token_embedding: Table<B>,
    /// `position_embedding.weight`: `[max_positions, hidden]`.
    pub position_embedding: Param<Tensor<B, 2>>,
}

/// `text_model`.
#[derive(Module, Debug)]
pub struct ClipTextTransformer<B: Backend> {
    pub embeddings: ClipTextEmbeddings<B>,
    pub encoder: ClipEncoder<B>,
    pub final_layer_norm: LayerNorm<B>,
    pub eos_token_id: u32,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
}

impl<B: Backend> ClipTextTransformer<B> {
    pub fn load(vb: &VarBuilder<B>, c: &ClipTextConfig) -> Result<Self> {
        let dims = c.encoder_dims();
        let e = vb.pp("embeddings");
        Ok(ClipTextTransformer {
            embeddings: ClipTextEmbeddings {
                token_embedding: table(&e.pp("token_embedding"), c.vocab_size, c.hidden_size)?,
                position_embedding: embedding(&e.pp("position_embedding"), c.max_position_embeddings, c.hidden_size)?,
            },
            encoder: ClipEncoder::load(&vb.pp("encoder"), &dims)?,
            final_layer_norm: layer_norm(&vb.pp("final_layer_norm"), c.hidden_size, c.layer_norm_eps)?,
            eos_token_id: c.eos_token_id,
            vocab_size: c.vocab_size,
            max_position_embeddings: c.max_position_embeddings,
        })
    }

    /// Run the tower on token ids, one row per text, all rows of equal length.
    ///
    /// `attention_mask` (1 = token, 0 = padding), when given, hides padding from every query as the
    /// reference does; pooled outputs do not depend on it because attention is causal.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids, `seq <= max_position_embeddings`
    /// - output: [`BaseModelOutputWithPooling`]
    pub fn forward(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<BaseModelOutputWithPooling<B>> {
        let (x, mask) = self.embed(input_ids, attention_mask)?;
        let [batch, seq, hidden] = x.dims();
        let device = x.device();
        let x = self.encoder.forward(x, Some(&mask));
        let last_hidden_state = self.final_layer_norm.forward(x);

        let rows: Vec<i64> =
            input_ids.iter().enumerate().map(|(b, ids)| (b * seq + self.pool_position(ids)) as i64).collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [batch]), &device);
        let pooler_output = last_hidden_state.clone().reshape([batch * seq, hidden]).select(0, rows);
        Ok(BaseModelOutputWithPooling { last_hidden_state, pooler_output })
    }

    /// Every hidden state of the tower, as `CLIPTextModel(input_ids, attention_mask,
    /// output_hidden_states=True).hidden_states` gives them: `hidden_states[0]` is the embeddings
    /// (token + position), `hidden_states[i]` the output of encoder layer `i`. None has
    /// `final_layer_norm` applied, so the last one is [`forward`](Self::forward)'s `last_hidden_state`
    /// before that norm. Inputs are checked as in [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids, `seq <= max_position_embeddings`
    /// - output: `num_hidden_layers + 1` tensors of `[batch, seq, hidden]`
    pub fn hidden_states(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<Vec<Tensor<B, 3>>> {
        let (x, mask) = self.embed(input_ids, attention_mask)?;
        Ok(self.encoder.forward_hidden_states(x, Some(&mask)))
    }

    /// The encoder's input and its attention mask, after checking the ids.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids
    /// - output: embeddings `[batch, seq, hidden]`, mask `[batch or 1, 1, seq, seq]`
    fn embed(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 4, Bool>)> {
        let (batch, seq) = check_token_ids(input_ids, self.max_position_embeddings, self.vocab_size)?;
        let device = self.embeddings.position_embedding.val().device();
        let flat: Vec<u32> = input_ids.iter().flatten().copied().collect();
        let hidden = self.embeddings.token_embedding.dims()[1];
        let tokens = self.embeddings.token_embedding.gather(&flat, &device).reshape([batch, seq, hidden]);
        let positions = self.embeddings.position_embedding.val().slice([0..seq]).unsqueeze::<3>();
        Ok((tokens + positions, causal_mask::<B>(seq, attention_mask, &device)))
    }

    /// Index of the token whose state represents the whole text.
    pub fn pool_position(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == 2 {
            // torch.argmax returns the first maximal index.
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&id| id == max).unwrap_or(0)
        } else {
            // No EOS at all: the reference's argmax of an all-false mask is position 0.
            ids.iter().position(|&id| id == self.eos_token_id).unwrap_or(0)
        }
    }
}

/// `true` where query `i` must not see key `j`: `j > i`, or `j` is padding.
fn causal_mask<B: Backend>(seq: usize, attention_mask: Option<&[Vec<u32>]>, device: &B::Device) -> Tensor<B, 4, Bool> {
    let causal = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, device).unsqueeze::<4>();
    match attention_mask {
        None => causal,
        Some(rows) => {
            let batch = rows.len();
            let padding: Vec<bool> = rows.iter().flat_map(|r| r.iter().map(|&m| m == 0)).collect();
            let padding = Tensor::<B, 2, Bool>::from_data(TensorData::new(padding, [batch, seq]), device)
                .reshape([batch, 1, 1, seq])
                .expand([batch, 1, seq, seq]);
            causal.expand([batch, 1, seq, seq]).bool_or(padding)
        }
    }
}
