//! Generation with LLaMA: [`LlamaDecoder`] drives the model and its [`KvCache`] for the shared
//! [`generation`] module (greedy, sampling, beam search), and [`LlamaForCausalLM::generate`] sizes the cache
//! and handles the several end-of-sequence ids LLaMA 3 checkpoints name.
//!
//! Reference: `GenerationMixin.generate` in `transformers/generation/utils.py` (transformers v5.23.0).
//! The prompt is fed whole (prefill), then one token per step; only the last position's logits are computed
//! (`logits_to_keep=1`).
//!
//! Several EOS ids: the shared search stops a row on one id. The reference stops it on any of them
//! (`_prepare_special_tokens` keeps `eos_token_id` as a list) and forbids all of them before
//! `min_new_tokens` (`MinNewTokensLengthLogitsProcessor`). So the decoder forbids the other ids too before
//! `min_new_tokens`, and after a row produced one of the others it offers only the first id, which ends the
//! row in the search; [`LlamaForCausalLM::generate`] then writes `pad` where that forced id went, and drops the
//! column it may have added after every row had ended. Greedy and sampled ids come out as the reference's;
//! beam search supports one EOS id only (an error otherwise).

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::cache::KvCache;
use super::model::LlamaForCausalLM;
use crate::generation::{self, Decoder, GenerationConfig, SpecialTokens};
use crate::{Error, Result};

/// The ids generation needs, from `generation_config.json` (else `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LlamaSpecialTokens {
    /// Prepended by the tokenizer (`tokenizer.json` post-processor); not added again here.
    pub bos: Option<u32>,
    /// Generating any of these ends a row; empty: rows run to `max_new_tokens`.
    pub eos: Vec<u32>,
    /// Fills rows that ended before the longest one; `None`: the first EOS id (as `generate()` does).
    pub pad: Option<u32>,
}

impl LlamaSpecialTokens {
    /// The EOS ids, each once, in their order (the first is the one the search stops on).
    pub fn unique_eos(&self) -> Vec<u32> {
        let mut eos: Vec<u32> = Vec::with_capacity(self.eos.len());
        for &id in &self.eos {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        eos
    }

    /// The padding id `generate()` uses: `pad`, else the first EOS id, else 0 (never written then).
    pub fn pad_id(&self) -> u32 {
        self.pad.or(self.eos.first().copied()).unwrap_or(0)
    }
}

/// Before `min_new_tokens` were generated, `ids` (the EOS ids other than the one the search forbids itself)
/// cannot be chosen.
pub(crate) fn forbid_early_eos(scores: &mut [f32], ids: &[u32], generated: usize, min_new_tokens: usize) {
    if generated < min_new_tokens {
        for &id in ids {
            if let Some(s) = scores.get_mut(id as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// A [`LlamaForCausalLM`] with its cache, driven by [`generation::generate`].
pub struct LlamaDecoder<'a, B: Backend> {
    model: &'a LlamaForCausalLM<B>,
    cache: KvCache<B>,
    /// The EOS id the search stops on, and the others.
    eos: u32,
    extra_eos: Vec<u32>,
    min_new_tokens: usize,
    /// Calls to `step` so far: tokens generated before the current step.
    steps: usize,
    /// Rows that produced one of `extra_eos`.
    ended: Vec<bool>,
    /// Input embeddings the first step feeds instead of embedding its tokens (LLaVA's image features).
    prefill: Option<Tensor<B, 3>>,
}

impl<'a, B: Backend> LlamaDecoder<'a, B> {
    /// A decoder of `rows` rows (for beam search, inputs × beams) and up to `capacity` positions, stopping on
    /// `eos` (the first is the one the search stops on, see the module docs).
    pub fn new(
        model: &'a LlamaForCausalLM<B>,
        rows: usize,
        capacity: usize,
        eos: &[u32],
        min_new_tokens: usize,
    ) -> Self {
        LlamaDecoder {
            model,
            cache: model.new_cache(rows, capacity),
            eos: eos.first().copied().unwrap_or(u32::MAX),
            extra_eos: eos.iter().skip(1).copied().filter(|&id| Some(&id) != eos.first()).collect(),
            min_new_tokens,
            steps: 0,
            ended: vec![false; rows],
            prefill: None,
        }
    }

    /// Feed `embeds` (`[rows, prompt_len, hidden]`, `inputs_embeds`) on the first step instead of the embeddings
    /// of its tokens; later steps embed their tokens as usual.
    pub fn with_prefill_embeds(mut self, embeds: Tensor<B, 3>) -> Self {
        self.prefill = Some(embeds);
        self
    }

    /// The cache, as filled so far.
    pub fn cache(&self) -> &KvCache<B> {
        &self.cache
    }
}

impl<B: Backend> Decoder for LlamaDecoder<'_, B> {
    fn step(&mut self, tokens: &[Vec<u32>]) -> Result<Vec<f32>> {
        if self.steps > 0 {
            for (ended, row) in self.ended.iter_mut().zip(tokens) {
                *ended |= row.last().is_some_and(|t| self.extra_eos.contains(t));
            }
        }
        let hidden = match self.prefill.take() {
            Some(embeds) => {
                let [rows, n, _] = embeds.dims();
                if rows != tokens.len() || tokens.iter().any(|t| t.len() != n) {
                    return Err(Error::invalid_input("prefill embeddings do not match the first step's tokens"));
                }
                self.model.model.forward_embeds(embeds, Some(&mut self.cache))?
            }
            None => self.model.model.forward(tokens, Some(&mut self.cache))?,
        };
        let [rows, n, d] = hidden.dims();
        let last = hidden.slice([0..rows, n - 1..n, 0..d]);
        let mut logits: Vec<f32> = self
            .model
            .logits(last)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| Error::invalid_input(format!("{e:?}")))?;
        if !self.extra_eos.is_empty() {
            let vocab = self.model.vocab_size();
            for (row, scores) in logits.chunks_exact_mut(vocab).enumerate() {
                if self.ended[row] {
                    scores.fill(f32::NEG_INFINITY);
                    if let Some(s) = scores.get_mut(self.eos as usize) {
                        *s = 0.0;
                    }
                } else {
                    forbid_early_eos(scores, &self.extra_eos, self.steps, self.min_new_tokens);
                }
            }
        }
        self.steps += 1;
        Ok(logits)
    }

    fn reorder(&mut self, rows: &[usize]) {
        self.cache.reorder(rows);
        self.ended = rows.iter().map(|&r| self.ended[r]).collect();
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// `generate()`: continue each prompt (all of one length, no padding) with greedy search, sampling or beam
    /// search as `config` says. Returns per prompt its ids followed by the generated ones, rows that ended
    /// early filled with the padding id, as the reference returns them.
    ///
    /// The cache is allocated once for `prompt + max_new_tokens` positions of `prompts × num_beams` rows.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        special: &LlamaSpecialTokens,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        self.generate_from_embeds(prompts, None, special, config)
    }

    /// [`Self::generate`] with the prompts' input embeddings given (`inputs_embeds`, `[prompts, prompt_len,
    /// hidden]`: LLaVA's, image features in place): the prefill feeds them, the decoding steps embed the new
    /// tokens. `None`: the prompts' own embeddings, as [`Self::generate`].
    pub fn generate_from_embeds(
        &self,
        prompts: &[Vec<u32>],
        prompt_embeds: Option<Tensor<B, 3>>,
        special: &LlamaSpecialTokens,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        config.validate()?;
        let prompt_len = prompts.first().map(Vec::len).unwrap_or(0);
        if prompts.is_empty() || prompt_len == 0 || prompts.iter().any(|p| p.len() != prompt_len) {
            return Err(Error::invalid_input("prompts must be non-empty and of equal length"));
        }
        let eos = special.unique_eos();
        if config.num_beams > 1 && eos.len() > 1 {
            return Err(Error::invalid_input(format!(
                "beam search stops on one end-of-sequence id; this model has {} ({eos:?})",
                eos.len()
            )));
        }
        let pad = special.pad_id();
        let rows = prompts.len() * config.num_beams;
        let mut decoder =
            LlamaDecoder::new(self, rows, prompt_len + config.max_new_tokens, &eos, config.min_new_tokens);
        if let Some(embeds) = prompt_embeds {
            if embeds.dims()[..2] != [prompts.len(), prompt_len] {
                return Err(Error::invalid_input("prompt embeddings do not match the prompts"));
            }
            // Beam search feeds each prompt once per beam, the beams of one prompt next to each other.
            let repeat: Vec<i64> = (0..rows).map(|r| (r / config.num_beams) as i64).collect();
            let index = Tensor::<B, 1, Int>::from_data(TensorData::new(repeat, [rows]), &embeds.device());
            decoder = decoder.with_prefill_embeds(embeds.select(0, index));
        }
        let search_tokens = SpecialTokens { eos: decoder.eos, pad };
        let mut out = generation::generate(&mut decoder, prompts, search_tokens, config)?;
        if eos.len() > 1 {
            let mut last_end = Some(0);
            for row in &mut out {
                match row.iter().skip(prompt_len).position(|t| eos.contains(t)).map(|i| prompt_len + i) {
                    Some(end) => {
                        row[end + 1..].fill(pad);
                        last_end = last_end.map(|e: usize| e.max(end));
                    }
                    None => last_end = None,
                }
            }
            // Every row ended: the reference stopped right after the last of them.
            if let Some(end) = last_end {
                out.iter_mut().for_each(|row| row.truncate(end + 1));
            }
        }
        Ok(out)
    }
}
