//! CLIP throughput: full-size ViT-B/32 (default `CLIPConfig`, random weights) on every backend this
//! binary was built with. Prints a table; with `--reference FILE` (the JSON printed by
//! `models/bench_reference.py`, PyTorch on the same machine) it adds our speed ÷ PyTorch's.
//!
//! cargo bench -p lens --bench clip [--features wgpu] -- [--smoke] [--iters N] [--reference FILE]
//!
//! `--smoke` runs a tiny config once, so CI proves the bench works without spending minutes on it.
//!
//! `ndarray int8` rows run the same weights quantized as `lens models quantize` does (int8 per output
//! channel, W8A8 kernel on the CPU). `text query` is one short text (8 tokens: the pipeline runs the
//! text tower only up to the end-of-text token) — a search box's case.

mod common;

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_models::artifact::{ArtifactSource, ArtifactWriter, Engine};
use lens_models::clip::{ClipConfig, ClipModel};
use lens_models::weights::VarBuilder;

fn config(smoke: bool) -> ClipConfig {
    if !smoke {
        return ClipConfig::vit_base_patch32();
    }
    let mut c = ClipConfig::vit_base_patch32();
    c.vision_config.hidden_size = 64;
    c.vision_config.intermediate_size = 128;
    c.vision_config.num_hidden_layers = 2;
    c.vision_config.num_attention_heads = 4;
    c.text_config.hidden_size = 64;
    c.text_config.intermediate_size = 128;
    c.text_config.num_hidden_layers = 2;
    c.text_config.num_attention_heads = 4;
    c.projection_dim = 32;
    c
}

struct Row {
    backend: &'static str,
    what: &'static str,
    batch: usize,
    per_s: f64,
    reference_key: &'static str,
}

fn run<Bk: Backend>(name: &'static str, device: Bk::Device, o: &common::Options, rows: &mut Vec<Row>) {
    let model: ClipModel<Bk> = config(o.smoke).init(&device);
    run_model(name, &model, device, o, rows);
}

/// `ClipConfig::init`'s random weights, quantized; returns the model and the artifact's size in bytes.
fn int8_model(o: &common::Options) -> (ClipModel<burn::backend::NdArray<f32>>, usize) {
    let writer = RefCell::new(ArtifactWriter::new(Engine::BurnInt8, "clip", ArtifactSource::default()));
    let vb = VarBuilder::random_quantizing(0x11E5, 0.02, &writer, &Default::default());
    let model = ClipModel::load(&vb, &config(o.smoke)).expect("random weights have the configured shapes");
    let bytes = writer.into_inner().finish().expect("artifact").len();
    (model, bytes)
}

fn run_model<Bk: Backend>(
    name: &'static str,
    model: &ClipModel<Bk>,
    device: Bk::Device,
    o: &common::Options,
    rows: &mut Vec<Row>,
) {
    let config = config(o.smoke);
    let size = config.vision_config.image_size;
    let context = config.text_config.max_position_embeddings;
    for batch in [1, 16] {
        let pixels: Vec<f32> = (0..batch * 3 * size * size).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
        let secs = common::time(o.iters, || {
            let x = Tensor::<Bk, 4>::from_data(TensorData::new(pixels.clone(), [batch, 3, size, size]), &device);
            let _ = model.get_image_features(x).into_data(); // into_data waits for the device
        });
        let key = if batch == 1 { "image_b1_per_s" } else { "image_b16_per_s" };
        rows.push(Row { backend: name, what: "image encoder", batch, per_s: batch as f64 / secs, reference_key: key });
    }
    let batch = 16;
    // A full 77-token context, as the processor pads every text to.
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            let mut row: Vec<u32> = (0..context as u32).map(|i| 320 + (i * 7 + b as u32) % 40000).collect();
            row[0] = 49406;
            row[context - 1] = 49407;
            row
        })
        .collect();
    let secs = common::time(o.iters, || {
        let _ = model.get_text_features(&ids, None).unwrap().into_data();
    });
    rows.push(Row {
        backend: name,
        what: "text encoder",
        batch,
        per_s: batch as f64 / secs,
        reference_key: "text_b16_per_s",
    });
    let query = vec![vec![49406, 320, 1125, 539, 320, 2368, 5954, 49407]];
    let secs = common::time(o.iters, || {
        let _ = model.get_text_features(&query, None).unwrap().into_data();
    });
    rows.push(Row {
        backend: name,
        what: "text query (8 tokens)",
        batch: 1,
        per_s: 1.0 / secs,
        reference_key: "text_query_per_s",
    });
}

/// The checkpoint's parameter count (burn's `num_params` misses the host linear layers' weights, which are not
/// burn parameters).
fn parameters(c: &ClipConfig) -> usize {
    let layer = |h: usize, i: usize| 4 * (h * h + h) + 2 * h * i + i + h + 4 * h;
    let (t, v) = (&c.text_config, &c.vision_config);
    let text = (t.vocab_size + t.max_position_embeddings) * t.hidden_size
        + t.num_hidden_layers * layer(t.hidden_size, t.intermediate_size)
        + 2 * t.hidden_size;
    let patches = (v.image_size / v.patch_size).pow(2);
    let vision = v.hidden_size * (3 * v.patch_size * v.patch_size + 1 + patches + 1)
        + v.num_hidden_layers * layer(v.hidden_size, v.intermediate_size)
        + 4 * v.hidden_size;
    text + vision + (t.hidden_size + v.hidden_size) * c.projection_dim + 1
}

fn main() {
    let o = common::options(3);
    let mut rows = Vec::new();
    run::<burn::backend::NdArray<f32>>("ndarray", Default::default(), &o, &mut rows);
    let (int8, int8_bytes) = int8_model(&o);
    run_model("ndarray int8", &int8, Default::default(), &o, &mut rows);
    #[cfg(feature = "wgpu")]
    run::<burn::backend::Wgpu<f32, i32>>("wgpu", Default::default(), &o, &mut rows);
    #[cfg(feature = "cuda")]
    if common::cuda_driver_present() {
        run::<burn::backend::Cuda<f32, i32>>("cuda", Default::default(), &o, &mut rows);
    } else {
        eprintln!("cuda: built in, but no CUDA driver library here: its rows are left out");
    }

    let model = if o.smoke { "tiny (smoke)" } else { "ViT-B/32" };
    println!("\nCLIP {model}, best of {} after warm-up, {} threads available", o.iters, common::threads());
    println!("| backend | encoder | batch | items/s | ms/item | PyTorch items/s | ours ÷ PyTorch |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let (ref_col, ratio) = match o.reference(r.reference_key) {
            Some(p) => (format!("{p:.2}"), format!("{:.2}", r.per_s / p)),
            _ => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.1} | {} | {} |",
            r.backend,
            r.what,
            r.batch,
            r.per_s,
            1000.0 / r.per_s,
            ref_col,
            ratio
        );
    }
    let params = parameters(&config(o.smoke));
    println!(
        "\nmodel bytes: fp32 {} ({params} parameters), int8 artifact {int8_bytes} (tokenizer not included)",
        4 * params
    );
}
