//! `BlipForConditionalGeneration`: the ViT image encoder and the BERT decoder, teacher-forced logits
//! and `generate()`.
//!
//! Reference: `BlipForConditionalGeneration` in `transformers/models/blip/modeling_blip.py`
//! (transformers v5.23.0).

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use super::config::BlipConfig;
use super::text_model::{BlipTextLMHeadModel, DecoderCache};
use super::vision_model::BlipVisionModel;
use crate::generation::{self, Decoder, GenerationConfig, SpecialTokens};
use crate::{Error, Result, weights::VarBuilder};

/// `BlipForConditionalGeneration`: `vision_model` and `text_decoder`.
#[derive(Module, Debug)]
pub struct BlipForConditionalGeneration<B: Backend> {
    pub vision_model: BlipVisionModel<B>,
    pub text_decoder: BlipTextLMHeadModel<B>,
    #[module(skip)]
    pub special: BlipSpecialTokens,
}

/// The decoder's special ids, from `text_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlipSpecialTokens {
    pub bos: u32,
    pub sep: u32,
    pub pad: u32,
    pub eos: u32,
}

impl BlipConfig {
    /// A model with deterministic random weights (benchmarks); real weights come from
    /// [`BlipForConditionalGeneration::load`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> BlipForConditionalGeneration<B> {
        let vb = VarBuilder::random(0xB11B, 0.02, device);
        BlipForConditionalGeneration::load(&vb, self).expect("random weights always have the configured shapes")
    }
}

impl<B: Backend> BlipForConditionalGeneration<B> {
    /// Load from a checkpoint whose tensors are named as in Salesforce/blip-image-captioning-base.
    pub fn load(vb: &VarBuilder<B>, config: &BlipConfig) -> Result<Self> {
        let t = &config.text_config;
        Ok(BlipForConditionalGeneration {
            vision_model: BlipVisionModel::load(&vb.pp("vision_model"), &config.vision_config)?,
            text_decoder: BlipTextLMHeadModel::load(&vb.pp("text_decoder"), t)?,
            special: BlipSpecialTokens {
                bos: t.bos_token_id,
                sep: t.sep_token_id,
                pad: t.pad_token_id,
                eos: t.eos_token_id,
            },
        })
    }

    /// Side length of the square images the vision tower takes.
    pub fn image_size(&self) -> usize {
        self.vision_model.image_size
    }

    /// Teacher-forced logits (`BlipForConditionalGeneration.forward`): the decoder reads `input_ids`
    /// as given (the caller replaces the first id by `bos`, as `generate()` does).
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, size, size]`; input_ids, attention_mask: `batch` rows of `seq`
    /// - output: `[batch, seq, vocab]`
    pub fn forward(
        &self,
        pixels: Tensor<B, 4>,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<Tensor<B, 3>> {
        if input_ids.len() != pixels.dims()[0] {
            return Err(Error::invalid_input("one row of token ids per image is needed"));
        }
        let image_embeds = self.vision_model.forward(pixels);
        let mut cache = self.text_decoder.start(image_embeds);
        let hidden = self.text_decoder.forward_hidden(input_ids, attention_mask, &mut cache)?;
        Ok(self.text_decoder.logits(hidden))
    }

    /// `BlipForConditionalGeneration.generate`: the prompt's first id becomes `bos` and its last id
    /// (the tokenizer's `[SEP]`) is dropped; without a prompt the decoder starts from `bos` alone.
    /// Returns the ids `generate()` returns: the prompt, then the caption, padded as the reference pads.
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, size, size]`; prompt: tokenizer ids with `[CLS]` … `[SEP]`, shared by all images
    pub fn generate(
        &self,
        pixels: Tensor<B, 4>,
        prompt: Option<&[u32]>,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        config.validate()?;
        let batch = pixels.dims()[0];
        let mut prompt_ids = match prompt {
            Some(ids) if ids.len() >= 2 => ids.to_vec(),
            Some(_) => return Err(Error::invalid_input("a prompt needs at least its [CLS] and [SEP] tokens")),
            None => vec![self.special.bos, self.special.eos],
        };
        prompt_ids[0] = self.special.bos;
        prompt_ids.pop();
        let limit = self.text_decoder.max_position_embeddings;
        if prompt_ids.len() + config.max_new_tokens > limit {
            return Err(Error::invalid_input(format!(
                "a prompt of {} tokens plus {} new tokens exceeds the decoder's {limit} positions",
                prompt_ids.len(),
                config.max_new_tokens
            )));
        }
        let image_embeds = self.vision_model.forward(pixels);
        // Each image's states repeated once per beam, beams of one image next to each other.
        let beams = config.num_beams;
        let image_embeds = if beams > 1 {
            let [b, positions, hidden] = image_embeds.dims();
            image_embeds.unsqueeze_dim::<4>(1).expand([b, beams, positions, hidden]).reshape([
                b * beams,
                positions,
                hidden,
            ])
        } else {
            image_embeds
        };
        let mut decoder = CachedDecoder { model: &self.text_decoder, cache: self.text_decoder.start(image_embeds) };
        let prompts = vec![prompt_ids; batch];
        let special = SpecialTokens { eos: self.special.sep, pad: self.special.pad };
        generation::generate(&mut decoder, &prompts, special, config)
    }
}

/// The text decoder and its cache, driven by [`generation::generate`].
struct CachedDecoder<'a, B: Backend> {
    model: &'a BlipTextLMHeadModel<B>,
    cache: DecoderCache<B>,
}

impl<B: Backend> Decoder for CachedDecoder<'_, B> {
    fn step(&mut self, tokens: &[Vec<u32>]) -> Result<Vec<f32>> {
        let hidden = self.model.forward_hidden(tokens, None, &mut self.cache)?;
        let [rows, n, d] = hidden.dims();
        // Only the last position's logits are needed (`logits_to_keep=1`).
        let last = hidden.slice([0..rows, n - 1..n, 0..d]);
        let logits = self.model.logits(last);
        logits.into_data().convert::<f32>().to_vec().map_err(|e| Error::invalid_input(format!("{e:?}")))
    }

    fn reorder(&mut self, rows: &[usize]) {
        self.cache.reorder(rows);
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size
    }
}
