//! `LlavaForConditionalGeneration`: a CLIP vision tower, the multimodal projector and a LLaMA decoder.
//!
//! Reference: `LlavaMultiModalProjector`, `LlavaModel.get_image_features`, `LlavaModel.get_placeholder_mask`,
//! `LlavaModel.forward` and `LlavaForConditionalGeneration` in `transformers/models/llava/modeling_llava.py`
//! (transformers v5.23.0):
//!
//! 1. the vision tower's hidden states (`hidden_states[0]` the embeddings after `pre_layrnorm`, then each encoder
//!    layer's output; `post_layernorm` is never applied) at `vision_feature_layer`, the class token dropped with
//!    the `default` strategy, several layers concatenated on the feature dimension;
//! 2. `linear_2(act(linear_1(features)))`;
//! 3. the prompt's token embeddings, where the `<image>` positions (in row-major order over the batch) take the
//!    image features in order (`masked_scatter`); the number of positions must equal the number of features;
//! 4. the LLaMA decoder over these `inputs_embeds`, and its LM head.
//!
//! Only the layers up to the deepest selected one are run (LLaVA-1.5 reads layer -2 of 24: the last is skipped).

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::config::{FeatureSelectStrategy, LlavaConfig};
use crate::clip::vision_model::ClipVisionTransformer;
use crate::generation::GenerationConfig;
use crate::llama::{KvCache, LlamaForCausalLM, LlamaSpecialTokens};
use crate::nn::{Activation, Dense, dense};
use crate::{Error, Result, weights::VarBuilder};

/// `multi_modal_projector`: `linear_1` → `projector_hidden_act` → `linear_2`.
#[derive(Module, Debug)]
pub struct LlavaMultiModalProjector<B: Backend> {
    pub linear_1: Dense<B>,
    pub linear_2: Dense<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> LlavaMultiModalProjector<B> {
    pub fn load(vb: &VarBuilder<B>, c: &LlavaConfig) -> Result<Self> {
        let (d_in, d_out, bias) = (c.projector_input_size(), c.text_config.hidden_size, c.multimodal_projector_bias);
        Ok(LlavaMultiModalProjector {
            linear_1: dense(&vb.pp("linear_1"), d_in, d_out, bias)?,
            linear_2: dense(&vb.pp("linear_2"), d_out, d_out, bias)?,
            act: c.projector_hidden_act,
        })
    }

    /// # Shapes
    /// - features: `[images, tokens, vision_hidden * layers]` → `[images, tokens, text_hidden]`
    pub fn forward(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        self.linear_2.forward(self.act.forward(self.linear_1.forward(features)))
    }
}

/// Where a checkpoint keeps each part of the model: the prefixes its tensors are published under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlavaTensorLayout {
    /// The LLaMA decoder (`embed_tokens`, `layers.{i}`, `norm` below it).
    pub language_model: &'static str,
    /// The LM head (`weight` below it); not read when the embeddings are tied.
    pub lm_head: &'static str,
    /// The CLIP vision transformer (`embeddings`, `pre_layrnorm`, `encoder`, `post_layernorm` below it).
    pub vision_tower: &'static str,
    pub multi_modal_projector: &'static str,
}

impl LlavaTensorLayout {
    /// As llava-hf/llava-1.5-*-hf publish their checkpoints (transformers 4).
    pub const PUBLISHED: LlavaTensorLayout = LlavaTensorLayout {
        language_model: "language_model.model",
        lm_head: "language_model.lm_head",
        vision_tower: "vision_tower.vision_model",
        multi_modal_projector: "multi_modal_projector",
    };

    /// transformers 5's parameter names (`model.state_dict()`).
    pub const TRANSFORMERS_5: LlavaTensorLayout = LlavaTensorLayout {
        language_model: "model.language_model",
        lm_head: "lm_head",
        vision_tower: "model.vision_tower",
        multi_modal_projector: "model.multi_modal_projector",
    };

    /// The layout of the tensors `vb` holds, each part found on its own: the decoder under `language_model.model`
    /// or `model.language_model` (the head beside it: `language_model.lm_head` or `lm_head`), the vision tower
    /// under `vision_tower.vision_model`, `vision_tower`, `model.vision_tower.vision_model` or `model.vision_tower`
    /// (transformers 5's `save_pretrained` writes `vision_tower.*`), the projector under `multi_modal_projector` or
    /// `model.multi_modal_projector`. A part found nowhere takes the name of the decoder's layout, which the
    /// loader's error then names.
    pub fn detect<B: Backend>(vb: &VarBuilder<B>) -> Self {
        let find = |candidates: &[&'static str], probe: &str| -> Option<&'static str> {
            candidates.iter().copied().find(|p| vb.pp(p).contains(probe))
        };
        let family = if vb.contains("model.language_model.embed_tokens.weight")
            && !vb.contains("language_model.model.embed_tokens.weight")
        {
            Self::TRANSFORMERS_5
        } else {
            Self::PUBLISHED
        };
        let vision_tower = find(
            &["vision_tower.vision_model", "vision_tower", "model.vision_tower.vision_model", "model.vision_tower"],
            "embeddings.class_embedding",
        )
        .unwrap_or(family.vision_tower);
        let multi_modal_projector = find(&["multi_modal_projector", "model.multi_modal_projector"], "linear_1.weight")
            .unwrap_or(family.multi_modal_projector);
        LlavaTensorLayout { vision_tower, multi_modal_projector, ..family }
    }
}

/// `LlavaForConditionalGeneration`.
#[derive(Module, Debug)]
pub struct LlavaForConditionalGeneration<B: Backend> {
    pub vision_tower: ClipVisionTransformer<B>,
    pub multi_modal_projector: LlavaMultiModalProjector<B>,
    pub language_model: LlamaForCausalLM<B>,
    /// `vision_feature_layer` resolved to indices into the hidden states.
    #[module(skip)]
    pub feature_layers: Vec<usize>,
    /// `full` keeps the class token.
    #[module(skip)]
    pub keep_class_token: bool,
    #[module(skip)]
    pub image_token_id: u32,
    #[module(skip)]
    pub image_size: usize,
    #[module(skip)]
    pub num_channels: usize,
}

impl<B: Backend> LlavaForConditionalGeneration<B> {
    /// Load a checkpoint, its tensor layout detected ([`LlavaTensorLayout::detect`]).
    pub fn load(vb: &VarBuilder<B>, config: &LlavaConfig) -> Result<Self> {
        Self::load_with_layout(vb, config, LlavaTensorLayout::detect(vb))
    }

    /// Load a checkpoint whose tensors are under `layout`'s prefixes.
    pub fn load_with_layout(vb: &VarBuilder<B>, config: &LlavaConfig, layout: LlavaTensorLayout) -> Result<Self> {
        config.validate()?;
        let v = &config.vision_config;
        Ok(LlavaForConditionalGeneration {
            vision_tower: ClipVisionTransformer::load(&vb.pp(layout.vision_tower), v)?,
            multi_modal_projector: LlavaMultiModalProjector::load(&vb.pp(layout.multi_modal_projector), config)?,
            language_model: LlamaForCausalLM::load_with_prefixes(
                vb,
                &config.text_config,
                layout.language_model,
                layout.lm_head,
            )?,
            feature_layers: config.vision_feature_layer.resolve(v.num_hidden_layers)?,
            keep_class_token: config.vision_feature_select_strategy == FeatureSelectStrategy::Full,
            image_token_id: config.image_token_id,
            image_size: v.image_size,
            num_channels: v.num_channels,
        })
    }

    /// Image features (and `<image>` positions) per image.
    pub fn tokens_per_image(&self) -> usize {
        let grid = self.image_size / self.vision_tower.embeddings.patch_size;
        grid * grid + usize::from(self.keep_class_token)
    }

    /// The vision features the projector takes: the selected hidden states, class token dropped (`default`) or
    /// kept (`full`), concatenated on the feature dimension in `vision_feature_layer`'s order.
    ///
    /// # Shapes
    /// - pixels: `[images, channels, image_size, image_size]` → `[images, tokens, vision_hidden * layers]`
    pub fn selected_image_features(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let [n, c, h, w] = pixels.dims();
        if n == 0 || c != self.num_channels || h != self.image_size || w != self.image_size {
            return Err(Error::invalid_input(format!(
                "pixel values of shape [{n}, {c}, {h}, {w}] do not fit a vision tower taking [images, {}, {s}, {s}]",
                self.num_channels,
                s = self.image_size
            )));
        }
        let tower = &self.vision_tower;
        let deepest = *self.feature_layers.iter().max().expect("resolve() refuses an empty list");
        let mut states: Vec<Option<Tensor<B, 3>>> = vec![None; deepest + 1];
        let mut x = tower.pre_layrnorm.forward(tower.embeddings.forward(pixels));
        for (i, state) in states.iter_mut().enumerate() {
            if i > 0 {
                x = tower.encoder.layers[i - 1].forward(x, None);
            }
            if self.feature_layers.contains(&i) {
                *state = Some(x.clone());
            }
        }
        let selected: Vec<Tensor<B, 3>> = self
            .feature_layers
            .iter()
            .map(|&i| {
                let state = states[i].clone().expect("kept above");
                if self.keep_class_token {
                    state
                } else {
                    let [n, seq, d] = state.dims();
                    state.slice([0..n, 1..seq, 0..d])
                }
            })
            .collect();
        Ok(Tensor::cat(selected, 2))
    }

    /// `get_image_features`: the projected features of each image, what fills its `<image>` positions.
    ///
    /// # Shapes
    /// - pixels: `[images, channels, image_size, image_size]` → `[images, tokens, text_hidden]`
    pub fn image_features(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        Ok(self.multi_modal_projector.forward(self.selected_image_features(pixels)?))
    }

    /// The decoder's input embeddings: the tokens' embeddings, each `<image>` position (row-major over the batch)
    /// replaced by the next image feature. The positions must be exactly as many as the features.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids; image_features: `[images, tokens, text_hidden]`
    /// - output: `[batch, seq, text_hidden]`
    pub fn embed(&self, input_ids: &[Vec<u32>], image_features: Option<Tensor<B, 3>>) -> Result<Tensor<B, 3>> {
        let embeds = self.language_model.model.embed(input_ids)?;
        let positions = input_ids.iter().flatten().filter(|&&t| t == self.image_token_id).count();
        let Some(features) = image_features else {
            if positions > 0 {
                return Err(Error::invalid_input(format!(
                    "the prompt holds {positions} image tokens but no image was given"
                )));
            }
            return Ok(embeds);
        };
        let [images, tokens, d] = features.dims();
        let [batch, seq, hidden] = embeds.dims();
        if d != hidden {
            return Err(Error::invalid_input(format!("image features of width {d} for a decoder of width {hidden}")));
        }
        if positions != images * tokens {
            return Err(Error::invalid_input(format!(
                "image features and image tokens do not match: the prompt holds {positions} image tokens, the {images} \
                 image(s) give {} features ({tokens} each)",
                images * tokens
            )));
        }
        // `masked_scatter` as one gather: position p reads row p of the text embeddings, or row
        // `batch * seq + k` (the k-th image feature) where it holds the k-th `<image>`.
        let text_rows = batch * seq;
        let mut next_feature = text_rows;
        let index: Vec<i64> = input_ids
            .iter()
            .flatten()
            .enumerate()
            .map(|(p, &t)| {
                if t == self.image_token_id {
                    next_feature += 1;
                    (next_feature - 1) as i64
                } else {
                    p as i64
                }
            })
            .collect();
        let device = embeds.device();
        let table =
            Tensor::cat(vec![embeds.reshape([text_rows, hidden]), features.reshape([images * tokens, hidden])], 0);
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [text_rows]), &device);
        Ok(table.select(0, index).reshape([batch, seq, hidden]))
    }

    /// [`Self::embed`] with the features of `pixels` (none: text only).
    ///
    /// # Shapes
    /// - pixels: `[images, channels, image_size, image_size]` → `[batch, seq, text_hidden]`
    pub fn inputs_embeds(&self, input_ids: &[Vec<u32>], pixels: Option<Tensor<B, 4>>) -> Result<Tensor<B, 3>> {
        let features = pixels.map(|p| self.image_features(p)).transpose()?;
        self.embed(input_ids, features)
    }

    /// `model.model(...).last_hidden_state`: the final-normed hidden states of the new positions (through the
    /// cache when given, as [`crate::llama::LlamaModel::forward_embeds`]).
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids → `[batch, seq, text_hidden]`
    pub fn hidden_states(
        &self,
        input_ids: &[Vec<u32>],
        pixels: Option<Tensor<B, 4>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        self.language_model.model.forward_embeds(self.inputs_embeds(input_ids, pixels)?, cache)
    }

    /// Logits at every new position: the prompt with its images (a prefill when `cache` is given), or later
    /// tokens without pixels.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of `seq` ids → `[batch, seq, vocab]`
    pub fn forward(
        &self,
        input_ids: &[Vec<u32>],
        pixels: Option<Tensor<B, 4>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        Ok(self.language_model.logits(self.hidden_states(input_ids, pixels, cache)?))
    }

    /// An empty cache: `batch` rows, up to `capacity` positions.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        self.language_model.new_cache(batch, capacity)
    }

    /// `generate(input_ids, pixel_values)`: the prompts (of equal length, `<image>` already expanded) prefilled
    /// with their image features in place, then decoded one token at a time from token ids, as
    /// [`LlamaForCausalLM::generate`] (greedy, sampling, beam search). Returns per prompt its ids followed by the
    /// generated ones.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        pixels: Option<Tensor<B, 4>>,
        special: &LlamaSpecialTokens,
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        config.validate()?;
        let embeds = self.inputs_embeds(prompts, pixels)?;
        self.language_model.generate_from_embeds(prompts, Some(embeds), special, config)
    }
}
