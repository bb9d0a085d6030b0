//! BLIP's image encoder: a ViT with a biased patch convolution, a fused `qkv` projection, no pre-norm,
//! and a final `post_layernorm` over every patch state (the decoder cross-attends to all of them).
//!
//! Reference: `BlipVisionEmbeddings`, `BlipAttention`, `BlipEncoderLayer`, `BlipVisionModel` in
//! `transformers/models/blip/modeling_blip.py` (transformers v5.23.0).

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, activation::softmax, backend::Backend};

use super::config::BlipVisionConfig;
use crate::cpu::{self, Heads};
use crate::gemm::View;
use crate::nn::{Dense, Mlp, dense, from_host, layer_norm, patches, pre_norm_residual_host, to_host};
use crate::{Result, weights::VarBuilder};

/// `vision_model.embeddings`.
#[derive(Module, Debug)]
pub struct BlipVisionEmbeddings<B: Backend> {
    /// `class_embedding`: published `[1, 1, hidden]`, kept `[hidden]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `patch_embedding.weight` (a `Conv2d` with stride = kernel) flattened to `[channels * patch * patch, hidden]`.
    pub patch_weight: Param<Tensor<B, 2>>,
    /// `patch_embedding.bias`: `[hidden]`.
    pub patch_bias: Param<Tensor<B, 1>>,
    /// `position_embedding`: published `[1, num_patches + 1, hidden]`, kept `[num_patches + 1, hidden]`.
    pub position_embedding: Param<Tensor<B, 2>>,
    pub patch_size: usize,
}

impl<B: Backend> BlipVisionEmbeddings<B> {
    pub fn load(vb: &VarBuilder<B>, c: &BlipVisionConfig) -> Result<Self> {
        let (h, p) = (c.hidden_size, c.patch_size);
        let conv = vb.pp("patch_embedding");
        let weight = conv.tensor("weight", [h, 3, p, p])?;
        Ok(BlipVisionEmbeddings {
            class_embedding: Param::from_tensor(vb.tensor("class_embedding", [1, 1, h])?.reshape([h])),
            patch_weight: Param::from_tensor(weight.reshape([h, 3 * p * p]).transpose()),
            patch_bias: Param::from_tensor(conv.tensor("bias", [h])?),
            position_embedding: Param::from_tensor(
                vb.tensor("position_embedding", [1, c.num_positions(), h])?.reshape([c.num_positions(), h]),
            ),
            patch_size: p,
        })
    }

    /// # Shapes
    /// - pixels: `[batch, 3, image_size, image_size]` → `[batch, 1 + (image_size / patch)^2, hidden]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, _, height, width] = pixels.dims();
        let p = self.patch_size;
        let weight = self.patch_weight.val();
        let hidden = weight.dims()[1];
        let patch_embeds = (patches(pixels, p).matmul(weight) + self.patch_bias.val().unsqueeze::<2>()).reshape([
            batch,
            (height / p) * (width / p),
            hidden,
        ]);
        let class = self.class_embedding.val().reshape([1, 1, hidden]).expand([batch, 1, hidden]);
        Tensor::cat(vec![class, patch_embeds], 1) + self.position_embedding.val().unsqueeze::<3>()
    }
}

/// Self-attention with one fused `qkv` projection (`[3 * hidden, hidden]`, q then k then v) and `projection`.
#[derive(Module, Debug)]
pub struct BlipAttention<B: Backend> {
    pub qkv: Dense<B>,
    pub projection: Dense<B>,
    pub num_heads: usize,
}

impl<B: Backend> BlipAttention<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, num_heads: usize) -> Result<Self> {
        Ok(BlipAttention {
            qkv: dense(&vb.pp("qkv"), hidden, 3 * hidden, true)?,
            projection: dense(&vb.pp("projection"), hidden, hidden, true)?,
            num_heads,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let qkv = self.qkv.forward(x);
        let heads = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..seq, i * hidden..(i + 1) * hidden])
                .reshape([batch, seq, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (heads(0), heads(1), heads(2));
        let scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
        let context = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden]);
        self.projection.forward(context)
    }

    /// [`Self::forward`] on host rows (`x` is `[batch * seq, hidden]`): q, k and v are read in place from the
    /// fused projection's output.
    fn forward_host(&self, x: &[f32], batch: usize, seq: usize) -> Vec<f32> {
        let rows = batch * seq;
        let hidden = x.len() / rows;
        let qkv = self.qkv.forward_host(x, rows);
        let part = |i: usize| View::rows(&qkv[i * hidden..], 3 * hidden);
        let shape = Heads { batch, seq, keys: seq, heads: self.num_heads, head_dim: hidden / self.num_heads };
        self.projection.forward_host(&cpu::attention(part(0), part(1), part(2), shape, None), rows)
    }
}

/// `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct BlipEncoderLayer<B: Backend> {
    pub self_attn: BlipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: Mlp<B>,
    pub layer_norm2: LayerNorm<B>,
    /// Both norms' epsilon (burn keeps a `LayerNorm`'s own private).
    #[module(skip)]
    pub layer_norm_eps: f64,
}

impl<B: Backend> BlipEncoderLayer<B> {
    pub fn load(vb: &VarBuilder<B>, c: &BlipVisionConfig) -> Result<Self> {
        Ok(BlipEncoderLayer {
            self_attn: BlipAttention::load(&vb.pp("self_attn"), c.hidden_size, c.num_attention_heads)?,
            layer_norm1: layer_norm(&vb.pp("layer_norm1"), c.hidden_size, c.layer_norm_eps)?,
            mlp: Mlp::load(&vb.pp("mlp"), c.hidden_size, c.intermediate_size, c.hidden_act)?,
            layer_norm2: layer_norm(&vb.pp("layer_norm2"), c.hidden_size, c.layer_norm_eps)?,
            layer_norm_eps: c.layer_norm_eps,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }

    /// Whether the layer's weights are in host memory: then [`BlipVisionModel`] runs it on host rows.
    fn is_host(&self) -> bool {
        self.self_attn.qkv.is_host() && self.self_attn.projection.is_host() && self.mlp.is_host()
    }

    /// [`Self::forward`] on host rows, in place: `x` is `[batch * seq, hidden]`.
    fn forward_host(&self, x: &mut [f32], batch: usize, seq: usize) {
        let eps = self.layer_norm_eps;
        pre_norm_residual_host(x, &self.layer_norm1, eps, |h| self.self_attn.forward_host(h, batch, seq));
        pre_norm_residual_host(x, &self.layer_norm2, eps, |h| self.mlp.forward_host(h, batch * seq));
    }
}

/// `vision_model`.
#[derive(Module, Debug)]
pub struct BlipVisionModel<B: Backend> {
    pub embeddings: BlipVisionEmbeddings<B>,
    pub layers: Vec<BlipEncoderLayer<B>>,
    pub post_layernorm: LayerNorm<B>,
    pub image_size: usize,
}

impl<B: Backend> BlipVisionModel<B> {
    pub fn load(vb: &VarBuilder<B>, c: &BlipVisionConfig) -> Result<Self> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| BlipEncoderLayer::load(&vb.pp("encoder").pp("layers").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(BlipVisionModel {
            embeddings: BlipVisionEmbeddings::load(&vb.pp("embeddings"), c)?,
            layers,
            post_layernorm: layer_norm(&vb.pp("post_layernorm"), c.hidden_size, c.layer_norm_eps)?,
            image_size: c.image_size,
        })
    }

    /// `last_hidden_state`: the post-normed state of every position, class token first.
    ///
    /// # Shapes
    /// - pixels: `[batch, 3, image_size, image_size]` → `[batch, 1 + patches, hidden]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 3> {
        let mut x = self.embeddings.forward(pixels);
        if !self.layers.is_empty() && self.layers.iter().all(BlipEncoderLayer::is_host) {
            // Host weights: the layers run on host rows ([`crate::cpu`]), read out and put back once.
            let (dims @ [batch, seq, _], device) = (x.dims(), x.device());
            let mut rows = to_host(x);
            for layer in &self.layers {
                layer.forward_host(&mut rows, batch, seq);
            }
            x = from_host(rows, dims, &device);
        } else {
            for layer in &self.layers {
                x = layer.forward(x);
            }
        }
        self.post_layernorm.forward(x)
    }
}
