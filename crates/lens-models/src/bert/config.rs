//! `config.json` of a BERT-family encoder (BERT, MiniLM, the sentence-transformers models built on them).

use serde::Deserialize;

use crate::{Error, Result, nn::Activation};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// Only `absolute` position embeddings are implemented (every BERT and MiniLM checkpoint).
    pub position_embedding_type: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        // bert-base-uncased.
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        }
    }
}

impl BertConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let config: BertConfig = serde_json::from_slice(bytes).map_err(|e| Error::config("config.json", e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config("config.json", m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 || self.type_vocab_size == 0 {
            return bad("vocab_size, max_position_embeddings and type_vocab_size must be positive".into());
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!("position_embedding_type `{}` (only absolute)", self.position_embedding_type));
        }
        Ok(())
    }
}
