//! A CLIP checkpoint with deterministic random weights, built in memory as the fp32 safetensors file
//! openai/clip-vit-base-patch32 publishes (same tensor names and `[out, in]` layouts), so the benchmark
//! loads, quantizes and runs a full-size model without downloading one.
//!
//! The safetensors bytes are written straight into one buffer (header, then each tensor's values):
//! a ViT-B/32 is 605 MB of f32, and serialising from per-tensor buffers would hold it twice.

use lens_core::rng::SplitMix64;
use lens_models::clip::{ClipConfig, ClipTextConfig, ClipVisionConfig};

/// How one tensor is filled.
#[derive(Clone, Copy)]
enum Init {
    /// Uniform with this standard deviation (weights, biases, embeddings).
    Uniform(f32),
    /// Every value equal (layer-norm gains 1 and offsets 0, `logit_scale`).
    Constant(f32),
}

type Tensors = Vec<(String, Vec<usize>, Init)>;

const WEIGHT: Init = Init::Uniform(0.02);

/// A layer norm at identity: gain 1, offset 0.
fn layer_norm(out: &mut Tensors, prefix: &str, d: usize) {
    out.push((format!("{prefix}.weight"), vec![d], Init::Constant(1.0)));
    out.push((format!("{prefix}.bias"), vec![d], Init::Constant(0.0)));
}

/// `{prefix}.encoder.layers.{l}.*` of a CLIP encoder of `n` layers, width `d`, MLP width `i`.
fn encoder(out: &mut Tensors, prefix: &str, d: usize, i: usize, n: usize) {
    for l in 0..n {
        let p = format!("{prefix}.encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((format!("{p}.self_attn.{proj}.weight"), vec![d, d], WEIGHT));
            out.push((format!("{p}.self_attn.{proj}.bias"), vec![d], WEIGHT));
        }
        layer_norm(out, &format!("{p}.layer_norm1"), d);
        out.push((format!("{p}.mlp.fc1.weight"), vec![i, d], WEIGHT));
        out.push((format!("{p}.mlp.fc1.bias"), vec![i], WEIGHT));
        out.push((format!("{p}.mlp.fc2.weight"), vec![d, i], WEIGHT));
        out.push((format!("{p}.mlp.fc2.bias"), vec![d], WEIGHT));
        layer_norm(out, &format!("{p}.layer_norm2"), d);
    }
}

/// `(published name, shape, init)` of every tensor `CLIPModel` has.
fn tensors(config: &ClipConfig) -> Tensors {
    let t: &ClipTextConfig = &config.text_config;
    let v: &ClipVisionConfig = &config.vision_config;
    let mut out: Tensors = vec![("logit_scale".into(), vec![], Init::Constant(config.logit_scale_init_value as f32))];
    let (d, p) = (t.hidden_size, "text_model.embeddings");
    out.push((format!("{p}.token_embedding.weight"), vec![t.vocab_size, d], WEIGHT));
    out.push((format!("{p}.position_embedding.weight"), vec![t.max_position_embeddings, d], WEIGHT));
    encoder(&mut out, "text_model", d, t.intermediate_size, t.num_hidden_layers);
    layer_norm(&mut out, "text_model.final_layer_norm", d);
    let (h, p) = (v.hidden_size, "vision_model.embeddings");
    out.push((format!("{p}.class_embedding"), vec![h], WEIGHT));
    out.push((format!("{p}.patch_embedding.weight"), vec![h, v.num_channels, v.patch_size, v.patch_size], WEIGHT));
    out.push((format!("{p}.position_embedding.weight"), vec![v.num_positions(), h], WEIGHT));
    layer_norm(&mut out, "vision_model.pre_layrnorm", h);
    encoder(&mut out, "vision_model", h, v.intermediate_size, v.num_hidden_layers);
    layer_norm(&mut out, "vision_model.post_layernorm", h);
    out.push(("visual_projection.weight".into(), vec![config.projection_dim, h], WEIGHT));
    out.push(("text_projection.weight".into(), vec![config.projection_dim, d], WEIGHT));
    out
}

/// Number of f32 parameters in the checkpoint [`random_safetensors`] writes for `config`.
pub fn parameter_count(config: &ClipConfig) -> usize {
    tensors(config).iter().map(|(_, shape, _)| shape.iter().product::<usize>()).sum()
}

/// `model.safetensors` bytes (fp32) for `config`, weights uniform with std 0.02 drawn from SplitMix64
/// seeded by `seed`, layer norms at identity, `logit_scale` at its initial value.
pub fn random_safetensors(config: &ClipConfig, seed: u64) -> Vec<u8> {
    let tensors = tensors(config);
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, _) in &tensors {
        let len = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len] }),
        );
        offset += len;
    }
    let mut header = serde_json::to_vec(&header).expect("a JSON map serialises");
    // The data starts 8-byte aligned, as the format recommends; padding is spaces.
    header.resize((8 + header.len()).next_multiple_of(8) - 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    let mut rng = SplitMix64::new(seed);
    for (_, shape, init) in &tensors {
        let n: usize = shape.iter().product();
        match *init {
            Init::Constant(c) => (0..n).for_each(|_| out.extend_from_slice(&c.to_le_bytes())),
            Init::Uniform(std) => {
                let half_width = std * 3f32.sqrt();
                for _ in 0..n {
                    let unit = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                    out.extend_from_slice(&((unit * 2.0 - 1.0) * half_width).to_le_bytes());
                }
            }
        }
    }
    out
}

/// `config.json` for `config`, with the keys `transformers` writes (only those Lens reads).
pub fn config_json(config: &ClipConfig) -> Vec<u8> {
    let t = &config.text_config;
    let v = &config.vision_config;
    let act = |a: lens_models::nn::Activation| match a {
        lens_models::nn::Activation::QuickGelu => "quick_gelu",
        lens_models::nn::Activation::Gelu => "gelu",
        other => panic!("the benchmark writes only CLIP's activations, not {other:?}"),
    };
    let json = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.projection_dim,
        "logit_scale_init_value": config.logit_scale_init_value,
        "text_config": {
            "vocab_size": t.vocab_size, "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
            "projection_dim": t.projection_dim, "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads, "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": act(t.hidden_act), "layer_norm_eps": t.layer_norm_eps, "pad_token_id": t.pad_token_id,
            "bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id,
        },
        "vision_config": {
            "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "projection_dim": v.projection_dim, "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads, "num_channels": v.num_channels,
            "image_size": v.image_size, "patch_size": v.patch_size, "hidden_act": act(v.hidden_act),
            "layer_norm_eps": v.layer_norm_eps,
        },
    });
    serde_json::to_vec_pretty(&json).expect("JSON serialises")
}
