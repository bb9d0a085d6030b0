//! The CLIP vision tower: patch embedding, class token, positions, pre-norm encoder, pooled class token.
//!
//! Reference: `CLIPVisionEmbeddings`, `CLIPVisionTransformer` in
//! `transformers/models/clip/modeling_clip.py` (transformers v5.23.0). The published module names
//! include the checkpoint's typo `pre_layrnorm`.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, backend::Backend};

use super::config::ClipVisionConfig;
use super::encoder::{BaseModelOutputWithPooling, ClipEncoder};
use crate::nn::{Dense, dense_shaped, layer_norm, patches};
use crate::{Result, weights::VarBuilder};

/// `vision_model.embeddings`.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings<B: Backend> {
    /// `class_embedding`: `[hidden]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `patch_embedding.weight` (a bias-free `Conv2d` `[hidden, channels, patch, patch]` with stride =
    /// kernel): one matmul over flattened patches, `[channels * patch * patch] → [hidden]`.
    pub patch_embedding: Dense<B>,
    /// `position_embedding.weight`: `[num_patches + 1, hidden]`.
    pub position_embedding: Param<Tensor<B, 2>>,
    pub patch_size: usize,
}

impl<B: Backend> ClipVisionEmbeddings<B> {
    pub fn load(vb: &VarBuilder<B>, c: &ClipVisionConfig) -> Result<Self> {
        let (h, p, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        Ok(ClipVisionEmbeddings {
            class_embedding: Param::from_tensor(vb.tensor("class_embedding", [h])?),
            patch_embedding: dense_shaped(&vb.pp("patch_embedding"), &[h, ch, p, p], false)?,
            position_embedding: Param::from_tensor(
                vb.pp("position_embedding").tensor("weight", [c.num_positions(), h])?,
            ),
            patch_size: p,
        })
    }

    /// # Shapes
    /// - pixels: `[batch, channels, height, width]`, height = width = `image_size`
    /// - output: `[batch, 1 + (image_size / patch)^2, hidden]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, _, height, width] = pixels.dims();
        let p = self.patch_size;
        let patch_embeds = self.patch_embedding.forward(patches(pixels, p));
        let hidden = patch_embeds.dims()[1];
        let patch_embeds = patch_embeds.reshape([batch, (height / p) * (width / p), hidden]);
        let class = self.class_embedding.val().reshape([1, 1, hidden]).expand([batch, 1, hidden]);
        let embeddings = Tensor::cat(vec![class, patch_embeds], 1);
        embeddings + self.position_embedding.val().unsqueeze::<3>()
    }
}

/// `vision_model`.
#[derive(Module, Debug)]
pub struct ClipVisionTransformer<B: Backend> {
    pub embeddings: ClipVisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: ClipEncoder<B>,
    pub post_layernorm: LayerNorm<B>,
    pub image_size: usize,
}

impl<B: Backend> ClipVisionTransformer<B> {
    pub fn load(vb: &VarBuilder<B>, c: &ClipVisionConfig) -> Result<Self> {
        let dims = c.encoder_dims();
        Ok(ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings::load(&vb.pp("embeddings"), c)?,
            pre_layrnorm: layer_norm(&vb.pp("pre_layrnorm"), c.hidden_size, c.layer_norm_eps)?,
            encoder: ClipEncoder::load(&vb.pp("encoder"), &dims)?,
            post_layernorm: layer_norm(&vb.pp("post_layernorm"), c.hidden_size, c.layer_norm_eps)?,
            image_size: c.image_size,
        })
    }

    /// # Shapes
    /// - pixels: `[batch, channels, image_size, image_size]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> BaseModelOutputWithPooling<B> {
        let last_hidden_state = self.encoder.forward(self.embed(pixels), None);
        let [batch, _, hidden] = last_hidden_state.dims();
        let class = last_hidden_state.clone().slice([0..batch, 0..1]).reshape([batch, hidden]);
        BaseModelOutputWithPooling { pooler_output: self.post_layernorm.forward(class), last_hidden_state }
    }

    /// Every hidden state of the tower, as `CLIPVisionModel(pixel_values, output_hidden_states=True)
    /// .hidden_states` gives them: `hidden_states[0]` is the embeddings after `pre_layrnorm` (the
    /// encoder's input), `hidden_states[i]` the output of encoder layer `i`, and the last one equals
    /// [`forward`](Self::forward)'s `last_hidden_state`. None has `post_layernorm` applied (it only
    /// normalises the pooled class token). LLaVA reads `hidden_states[-2]`, or several layers when
    /// `vision_feature_layer` is a list. Keeps every state; [`forward`](Self::forward) keeps none.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image_size, image_size]`
    /// - output: `num_hidden_layers + 1` tensors of `[batch, 1 + (image_size / patch_size)^2, hidden]`
    pub fn hidden_states(&self, pixels: Tensor<B, 4>) -> Vec<Tensor<B, 3>> {
        self.encoder.forward_hidden_states(self.embed(pixels), None)
    }

    /// The encoder's input: the embeddings after `pre_layrnorm`.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, image_size, image_size]` → `[batch, 1 + num_patches, hidden]`
    fn embed(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        self.pre_layrnorm.forward(self.embeddings.forward(pixels))
    }
}
