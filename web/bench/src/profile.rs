//! Where an encoder layer's time goes: each op of layer 0 of a tower timed alone on a random input of
//! the tower's shape (vision: 50 tokens × 768; text: the query's real tokens × 512, for ViT-B/32),
//! beside the whole layer and the whole tower. It names the hot spots behind a missed target.

use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use lens_models::clip::ClipPipeline;
use lens_models::clip::encoder::ClipEncoderLayer;
use lens_models::nn::Activation;
use lens_models::tokenizer::TextTokenizer;

use crate::clock;
use crate::report::Samples;

/// One op's median ms per layer and how many times a layer runs it.
pub struct Op {
    pub name: String,
    pub ms: f64,
    pub per_layer: usize,
}

/// Median ms of `f` over `iters` runs after one warm-up; `f` must read its result back (`into_data`)
/// so that lazy backends finish the work inside the timing.
fn median<T>(iters: usize, f: impl FnMut() -> T) -> f64 {
    clock::time(1, iters, f).median()
}

/// Time the ops of `layer` on a random `[1, seq, hidden]` input. The attention core (scores, softmax,
/// context) is timed without a mask; the text tower's causal mask adds one `mask_fill`.
pub fn encoder_layer<B: Backend>(layer: &ClipEncoderLayer<B>, seq: usize, iters: usize, device: &B::Device) -> Vec<Op> {
    let hidden = layer.layer_norm1.gamma.val().dims()[0];
    let heads = layer.self_attn.num_heads;
    let head_dim = hidden / heads;
    let x = Tensor::<B, 3>::random([1, seq, hidden], Distribution::Normal(0.0, 1.0), device);
    let inner = layer.mlp.fc1.forward(x.clone());
    let op = |name: &str, ms: f64, per_layer: usize| Op { name: name.into(), ms, per_layer };
    let split = |t: Tensor<B, 3>| t.reshape([1, seq, heads, head_dim]).swap_dims(1, 2);
    let (q, k, v) = (split(x.clone()), split(x.clone()), split(x.clone()));
    let intermediate = inner.dims()[2];
    vec![
        op("layer norm", median(iters, || layer.layer_norm1.forward(x.clone()).into_data()), 2),
        op(
            &format!("q/k/v/out projection {hidden}→{hidden}"),
            median(iters, || layer.self_attn.q_proj.forward(x.clone()).into_data()),
            4,
        ),
        op(
            &format!("attention core ({heads} heads: q·kᵀ, softmax, ·v)"),
            median(iters, || {
                let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
                softmax(scores, 3).matmul(v.clone()).swap_dims(1, 2).reshape([1, seq, hidden]).into_data()
            }),
            1,
        ),
        op(
            &format!("MLP fc1 {hidden}→{intermediate}"),
            median(iters, || layer.mlp.fc1.forward(x.clone()).into_data()),
            1,
        ),
        op(
            &format!("activation on {intermediate}"),
            median(iters, || layer.mlp.act.forward(inner.clone()).into_data()),
            1,
        ),
        op(
            &format!("  (aside, not in the layer: the same {:?} as one pass over the values)", layer.mlp.act),
            one_pass_activation(layer.mlp.act, &inner, iters),
            0,
        ),
        op(
            &format!("MLP fc2 {intermediate}→{hidden}"),
            median(iters, || layer.mlp.fc2.forward(inner.clone()).into_data()),
            1,
        ),
    ]
}

/// Median ms of `act` on `x` as a fused kernel would run it: the values read out, mapped in one loop,
/// a tensor built again. Only `quick_gelu` (ViT-B/32's) is written out; others give NaN.
fn one_pass_activation<B: Backend>(act: Activation, x: &Tensor<B, 3>, iters: usize) -> f64 {
    if act != Activation::QuickGelu {
        return f64::NAN;
    }
    let (dims, device) = (x.dims(), x.device());
    median(iters, || {
        let mut values = x.clone().into_data().convert::<f32>().into_vec::<f32>().expect("f32 values");
        values.iter_mut().for_each(|v| *v /= 1.0 + (-1.702 * *v).exp());
        Tensor::<B, 3>::from_data(TensorData::new(values, dims), &device)
    })
}

/// Median ms of one whole layer on the same input shape.
pub fn whole_layer<B: Backend>(layer: &ClipEncoderLayer<B>, seq: usize, iters: usize, device: &B::Device) -> Samples {
    let hidden = layer.layer_norm1.gamma.val().dims()[0];
    let x = Tensor::<B, 3>::random([1, seq, hidden], Distribution::Normal(0.0, 1.0), device);
    clock::time(1, iters, || layer.forward(x.clone(), None).into_data())
}

/// Both towers of `pipeline` profiled: per-op tables of layer 0 with the whole layer and the whole
/// tower (vision on one random image, text on `query` padded as the pipeline pads it).
pub fn report<B: Backend>(
    pipeline: &ClipPipeline<B>,
    engine: &str,
    query: &str,
    iters: usize,
    device: &B::Device,
) -> String {
    let model = &pipeline.model;
    let c = &pipeline.config;
    let mut out = String::new();

    let (size, seq) = (c.vision_config.image_size, c.vision_config.num_positions());
    let pixels = Tensor::<B, 4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), device);
    let tower = median(iters, || model.vision_model.forward(pixels.clone()).pooler_output.into_data());
    let layer = &model.vision_model.encoder.layers[0];
    out += &table(
        &format!("{engine} vision tower, {seq} tokens × {}", c.vision_config.hidden_size),
        &encoder_layer(layer, seq, iters, device),
        whole_layer(layer, seq, iters, device).median(),
        model.vision_model.encoder.layers.len(),
        tower,
    );

    // The real tokens only, as the pipeline runs a query (it stops at the end-of-text token).
    let encoded = pipeline.tokenizer.encode(query).expect("tokenizing a query");
    let real = encoded.attention_mask.iter().filter(|&&m| m == 1).count();
    let ids = vec![encoded.ids[..real].to_vec()];
    let seq = ids[0].len();
    let tower =
        median(iters, || model.text.text_model.forward(&ids, None).expect("a token row").pooler_output.into_data());
    let layer = &model.text.text_model.encoder.layers[0];
    out += &table(
        &format!("{engine} text tower, {seq} tokens × {}", c.text_config.hidden_size),
        &encoder_layer(layer, seq, iters, device),
        whole_layer(layer, seq, iters, device).median(),
        model.text.text_model.encoder.layers.len(),
        tower,
    );
    out
}

/// The ops as a markdown table: ms per op, per layer (op × count) and share of the summed layer.
pub fn table(tower: &str, ops: &[Op], layer_ms: f64, layers: usize, tower_ms: f64) -> String {
    let sum: f64 = ops.iter().map(|o| o.ms * o.per_layer as f64).sum();
    let mut out = format!(
        "\n{tower}: one layer {layer_ms:.1} ms measured ({sum:.1} ms summed over its ops), × {layers} layers = \
         {:.0} ms; the whole tower {tower_ms:.0} ms\n\n| op | ms each | × per layer | ms per layer | share |\n|---|---|---|---|---|\n",
        layer_ms * layers as f64
    );
    for o in ops {
        if o.per_layer == 0 {
            if o.ms.is_finite() {
                out += &format!("| {} | {:.2} | – | – | – |\n", o.name, o.ms);
            }
            continue;
        }
        let per_layer = o.ms * o.per_layer as f64;
        out += &format!(
            "| {} | {:.2} | {} | {:.2} | {:.0}% |\n",
            o.name,
            o.ms,
            o.per_layer,
            per_layer,
            100.0 * per_layer / sum
        );
    }
    out
}
