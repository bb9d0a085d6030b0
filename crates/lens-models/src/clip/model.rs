//! The joint CLIP model: both towers, their projections into the shared space, and the logit scale;
//! and [`ClipTextTower`], the text half alone (what the edge loads: the image tower would not fit).
//!
//! Reference: `CLIPModel` in `transformers/models/clip/modeling_clip.py` (transformers v5.23.0).
//! [`ClipModel::get_image_features`] / [`ClipModel::get_text_features`] are named after, and return
//! the same values as, the HF methods: projected, not yet normalised.

use burn::module::{Module, Param};
use burn::tensor::{ElementConversion, Tensor, backend::Backend};

use super::config::{ClipConfig, ClipTextConfig};
use super::text_model::ClipTextTransformer;
use super::vision_model::ClipVisionTransformer;
use crate::nn::{Dense, dense};
use crate::{Result, weights::VarBuilder};

/// The joint CLIP model: both towers, their projections into the shared space, and the logit scale.
#[derive(Module, Debug)]
pub struct ClipModel<B: Backend> {
    pub text: ClipTextTower<B>,
    pub vision_model: ClipVisionTransformer<B>,
    /// `visual_projection.weight` (no bias): `[vision hidden, projection]` in f32, `[projection, vision
    /// hidden]` int8 rows in an artifact.
    pub visual_projection: Dense<B>,
    /// `logit_scale`, a log-temperature: logits are `exp(logit_scale) · cos`.
    pub logit_scale: Param<Tensor<B, 1>>,
}

/// The text tower and its projection into the shared space: text embeddings without the image half.
/// Its tensors have the names they have in the joint checkpoint.
#[derive(Module, Debug)]
pub struct ClipTextTower<B: Backend> {
    pub text_model: ClipTextTransformer<B>,
    /// `text_projection.weight` (no bias), laid out as [`ClipModel::visual_projection`].
    pub text_projection: Dense<B>,
}

impl<B: Backend> ClipTextTower<B> {
    /// Load `text_model.*` and `text_projection.weight` from a CLIP checkpoint (or an artifact of either).
    pub fn load(vb: &VarBuilder<B>, text: &ClipTextConfig, projection_dim: usize) -> Result<Self> {
        Ok(ClipTextTower {
            text_model: ClipTextTransformer::load(&vb.pp("text_model"), text)?,
            text_projection: dense(&vb.pp("text_projection"), text.hidden_size, projection_dim, false)?,
        })
    }

    /// Projected text embeddings (not normalised), one per row of token ids.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of equal length → `[batch, projection_dim]`
    pub fn get_text_features(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<Tensor<B, 2>> {
        let text = self.text_model.forward(input_ids, attention_mask)?;
        Ok(self.text_projection.forward(text.pooler_output))
    }
}

impl ClipConfig {
    /// A model with deterministic random weights (benchmarks); real weights come from [`ClipModel::load`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipModel<B> {
        let vb = VarBuilder::random(0x11E5, 0.02, device);
        ClipModel::load(&vb, self).expect("random weights always have the configured shapes")
    }
}

impl<B: Backend> ClipModel<B> {
    /// Load from a checkpoint whose tensors are named as in openai/clip-vit-base-patch32.
    pub fn load(vb: &VarBuilder<B>, config: &ClipConfig) -> Result<Self> {
        let (t, v, p) = (&config.text_config, &config.vision_config, config.projection_dim);
        let logit_scale = vb.tensor("logit_scale", [1])?;
        // Loading order is the checkpoint's: the text tower first, its projection after the image one.
        let text_model = ClipTextTransformer::load(&vb.pp("text_model"), t)?;
        let vision_model = ClipVisionTransformer::load(&vb.pp("vision_model"), v)?;
        let visual_projection = dense(&vb.pp("visual_projection"), v.hidden_size, p, false)?;
        let text_projection = dense(&vb.pp("text_projection"), t.hidden_size, p, false)?;
        Ok(ClipModel {
            text: ClipTextTower { text_model, text_projection },
            vision_model,
            visual_projection,
            logit_scale: Param::from_tensor(logit_scale),
        })
    }

    /// Side length of the square images the vision tower takes.
    pub fn image_size(&self) -> usize {
        self.vision_model.image_size
    }

    /// Projected image embeddings (not normalised).
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, image_size, image_size]`
    /// - output: `[batch, projection_dim]`
    pub fn get_image_features(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual_projection.forward(self.vision_model.forward(pixels).pooler_output)
    }

    /// Projected text embeddings (not normalised), one per row of token ids.
    ///
    /// # Shapes
    /// - input_ids: `batch` rows of equal length → `[batch, projection_dim]`
    pub fn get_text_features(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: Option<&[Vec<u32>]>,
    ) -> Result<Tensor<B, 2>> {
        self.text.get_text_features(input_ids, attention_mask)
    }

    /// `exp(logit_scale)`, the temperature the model was trained with.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale.val().exp().into_scalar().elem::<f32>()
    }

    /// `logits_per_image`: `exp(logit_scale) · cos(image_i, text_j)`.
    ///
    /// # Shapes
    /// - image_embeds: `[images, dim]`, text_embeds: `[texts, dim]` → `[images, texts]`
    pub fn logits_per_image(&self, image_embeds: Tensor<B, 2>, text_embeds: Tensor<B, 2>) -> Tensor<B, 2> {
        let images = l2_normalize(image_embeds);
        let texts = l2_normalize(text_embeds);
        images.matmul(texts.transpose()) * self.logit_scale.val().exp().unsqueeze::<2>()
    }
}

/// Divide each row by its L2 norm.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}
