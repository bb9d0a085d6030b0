//! Sentence embeddings as sentence-transformers computes them for BERT-family models (all-MiniLM-L6-v2 and
//! the like): the texts tokenized (truncated at `max_seq_length`, padded to the longest), the encoder's
//! token states averaged over the attention mask (or the `[CLS]` state, as `1_Pooling/config.json` says),
//! then L2-normalised when `modules.json` lists a `Normalize` module.
//!
//! Reference: sentence-transformers' `Transformer`, `Pooling`, `Normalize` modules; all-MiniLM-L6-v2's model
//! card gives the same computation in plain transformers, which `models/generate_bert_fixtures.py` runs.

use burn::tensor::backend::Backend;
use serde::Deserialize;

use super::config::BertConfig;
use super::model::BertModel;
use crate::tokenizer::{HfTokenizer, TextTokenizer};
use crate::weights::Weights;
use crate::{Error, Result};

/// Most texts embedded in one forward pass (longer lists are split).
pub const MAX_BATCH: usize = 32;

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The average of the real tokens' states.
    Mean,
    /// The first token's (`[CLS]`) state.
    Cls,
}

/// The files of a sentence-transformers model directory.
#[derive(Debug, Default, Clone)]
pub struct SentenceFiles {
    pub config: Vec<u8>,
    pub weights: Vec<(String, Vec<u8>)>,
    pub tokenizer: Vec<u8>,
    /// `sentence_bert_config.json`, when present.
    pub sentence_config: Option<Vec<u8>>,
    /// `modules.json`, when present.
    pub modules: Option<Vec<u8>>,
    /// `1_Pooling/config.json` (or the pooling module's folder), when present.
    pub pooling: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PoolingConfig {
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// A loaded sentence embedder.
#[derive(Debug)]
pub struct SentenceEmbedder<B: Backend> {
    pub config: BertConfig,
    pub model: BertModel<B>,
    tokenizer: HfTokenizer,
    pub max_seq_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
}

impl<B: Backend> SentenceEmbedder<B> {
    /// Build from the model's files (taken, so the weight bytes are not copied).
    pub fn load(files: SentenceFiles, device: &B::Device) -> Result<Self> {
        let config = BertConfig::from_json(&files.config)?;
        let max_seq_length = match &files.sentence_config {
            Some(bytes) => serde_json::from_slice::<SentenceConfig>(bytes)
                .map_err(|e| Error::config("sentence_bert_config.json", e))?
                .max_seq_length
                .unwrap_or(config.max_position_embeddings),
            None => config.max_position_embeddings,
        }
        .min(config.max_position_embeddings);
        let modules: Vec<ModuleEntry> = match &files.modules {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::config("modules.json", e))?,
            None => Vec::new(),
        };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let pooling = match &files.pooling {
            None => Pooling::Mean,
            Some(bytes) => {
                let p: PoolingConfig =
                    serde_json::from_slice(bytes).map_err(|e| Error::config("1_Pooling/config.json", e))?;
                match (
                    p.pooling_mode_mean_tokens,
                    p.pooling_mode_cls_token,
                    p.pooling_mode_max_tokens,
                    p.pooling_mode_mean_sqrt_len_tokens,
                ) {
                    (true, false, false, false) => Pooling::Mean,
                    (false, true, false, false) => Pooling::Cls,
                    _ => {
                        return Err(Error::config(
                            "1_Pooling/config.json",
                            "only one of mean-tokens or cls-token pooling is supported",
                        ));
                    }
                }
            }
        };
        let tokenizer = HfTokenizer::unpadded(&files.tokenizer, max_seq_length)?;
        let weights = Weights::from_buffers(files.weights)?;
        let vb = weights.builder::<B>(device);
        // Checkpoints saved from BertForMaskedLM and friends nest the encoder under `bert.`.
        let vb = if weights.contains("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let model = BertModel::load(&vb, &config)?;
        Ok(SentenceEmbedder { config, model, tokenizer, max_seq_length, pooling, normalize })
    }

    /// The embedding's length.
    pub fn dims(&self) -> usize {
        self.config.hidden_size
    }

    /// Token ids and attention masks of `texts`, padded (with the pad id) to the longest.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Vec<Vec<u32>>, Vec<Vec<u32>>)> {
        let encoded = self.tokenizer.encode_batch(texts)?;
        let seq = encoded.iter().map(|t| t.ids.len()).max().unwrap_or(0);
        let pad = self.config.pad_token_id;
        let ids = encoded.iter().map(|t| padded(&t.ids, seq, pad)).collect();
        let mask = encoded.iter().map(|t| padded(&vec![1; t.ids.len()], seq, 0)).collect();
        Ok((ids, mask))
    }

    /// One embedding per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_BATCH) {
            let (ids, mask) = self.tokenize(chunk)?;
            let states = self.model.forward(&ids, &mask)?;
            let [batch, seq, hidden] = states.dims();
            let values = states
                .into_data()
                .into_vec::<f32>()
                .map_err(|e| Error::invalid_input(format!("token states: {e:?}")))?;
            for b in 0..batch {
                let rows = &values[b * seq * hidden..(b + 1) * seq * hidden];
                let mut v = match self.pooling {
                    Pooling::Cls => rows[..hidden].to_vec(),
                    Pooling::Mean => mean_over_mask(rows, &mask[b], hidden),
                };
                if self.normalize {
                    // torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// `row` padded with `pad` to `len`.
fn padded(row: &[u32], len: usize, pad: u32) -> Vec<u32> {
    let mut out = row.to_vec();
    out.resize(len, pad);
    out
}

/// The average of the rows whose mask is 1 (sentence-transformers clamps the count at 1e-9).
fn mean_over_mask(rows: &[f32], mask: &[u32], hidden: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    let mut count = 0f32;
    for (row, &m) in rows.chunks_exact(hidden).zip(mask) {
        if m == 1 {
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
            count += 1.0;
        }
    }
    let count = count.max(1e-9);
    sum.iter_mut().for_each(|s| *s /= count);
    sum
}

#[cfg(not(target_arch = "wasm32"))]
impl SentenceFiles {
    /// Read a sentence-transformers model directory (`config.json`, the safetensors, `tokenizer.json`, and the
    /// optional `sentence_bert_config.json`, `modules.json`, pooling config).
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        use crate::files::{read_file, read_optional, read_safetensors};
        let modules = read_optional(dir, "modules.json")?;
        let pooling_dir = modules
            .as_deref()
            .and_then(|m| serde_json::from_slice::<Vec<ModuleEntry>>(m).ok())
            .and_then(|m| m.into_iter().find(|e| e.kind.ends_with(".Pooling")).map(|e| e.path))
            .filter(|p| !p.is_empty() && !p.contains(['/', '\\']) && p != "..")
            .unwrap_or_else(|| "1_Pooling".into());
        Ok(SentenceFiles {
            config: read_file(dir, "config.json")?,
            weights: read_safetensors(dir)?,
            tokenizer: read_file(dir, "tokenizer.json")?,
            sentence_config: read_optional(dir, "sentence_bert_config.json")?,
            modules,
            pooling: read_optional(dir, &format!("{pooling_dir}/config.json"))?,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl<B: Backend> SentenceEmbedder<B> {
    /// Load a sentence-transformers model directory (see [`SentenceFiles::read_dir`]).
    pub fn from_dir(dir: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        Self::load(SentenceFiles::read_dir(dir.as_ref())?, device)
    }
}
