//! BLIP captioning speed: full-size BLIP-base (default `BlipConfig`, random weights) on every backend
//! this binary was built with. Prints a table; with `--reference FILE` (the JSON printed by
//! `models/bench_blip_reference.py`, PyTorch on the same machine) it adds PyTorch's time and the ratio.
//!
//! cargo bench -p lens --bench blip [--features wgpu] -- [--smoke] [--iters N] [--reference FILE]
//!
//! Every caption is exactly 20 new tokens (`min_new_tokens = max_new_tokens = 20`), unconditional, so
//! both sides do the same work whatever the random weights prefer. `--smoke` runs a tiny config once.

mod common;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use lens_models::blip::{BlipConfig, BlipForConditionalGeneration};
use lens_models::generation::GenerationConfig;

fn config(smoke: bool) -> BlipConfig {
    let mut c = BlipConfig::base();
    if smoke {
        let v = &mut c.vision_config;
        (v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads) = (64, 128, 2, 4);
        (v.image_size, v.patch_size) = (64, 16);
        let t = &mut c.text_config;
        (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads) = (64, 128, 2, 4);
        t.encoder_hidden_size = 64;
    }
    c
}

struct Row {
    backend: &'static str,
    what: &'static str,
    batch: usize,
    seconds: f64,
    reference_key: &'static str,
}

fn run<Bk: Backend>(name: &'static str, device: Bk::Device, o: &common::Options, rows: &mut Vec<Row>) {
    let config = config(o.smoke);
    let model: BlipForConditionalGeneration<Bk> = config.init(&device);
    let size = config.vision_config.image_size;
    let pixels = |batch: usize| {
        let values: Vec<f32> = (0..batch * 3 * size * size).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
        Tensor::<Bk, 4>::from_data(TensorData::new(values, [batch, 3, size, size]), &device)
    };
    let secs = common::time(o.iters, || {
        let _ = model.vision_model.forward(pixels(1)).into_data(); // into_data waits for the device
    });
    rows.push(Row { backend: name, what: "vision encoder", batch: 1, seconds: secs, reference_key: "vision_b1_s" });

    let twenty =
        |num_beams| GenerationConfig { max_new_tokens: 20, min_new_tokens: 20, num_beams, ..Default::default() };
    for (what, batch, beams, key) in [
        ("caption, 20 tokens, greedy", 1, 1, "greedy20_b1_s"),
        ("caption, 20 tokens, beam 3", 1, 3, "beam3_20_b1_s"),
        ("caption, 20 tokens, greedy", 8, 1, "greedy20_b8_s"),
    ] {
        let secs = common::time(o.iters, || {
            let ids = model.generate(pixels(batch), None, &twenty(beams)).expect("generate");
            assert!(ids.iter().all(|row| row.len() == 21), "20 new tokens after [DEC]");
        });
        rows.push(Row { backend: name, what, batch, seconds: secs, reference_key: key });
    }
}

fn main() {
    let o = common::options(2);
    let mut rows = Vec::new();
    run::<burn::backend::NdArray<f32>>("ndarray", Default::default(), &o, &mut rows);
    #[cfg(feature = "wgpu")]
    run::<burn::backend::Wgpu<f32, i32>>("wgpu", Default::default(), &o, &mut rows);
    #[cfg(feature = "cuda")]
    if common::cuda_driver_present() {
        run::<burn::backend::Cuda<f32, i32>>("cuda", Default::default(), &o, &mut rows);
    } else {
        eprintln!("cuda: built in, but no CUDA driver library here: its rows are left out");
    }

    let model = if o.smoke { "tiny (smoke)" } else { "BLIP-base (ViT-B/16 384, BERT-base decoder)" };
    println!(
        "\nBLIP {model}, random weights, best of {} after warm-up, {} threads available",
        o.iters,
        common::threads()
    );
    println!("| backend | work | batch | seconds | captions/s | PyTorch seconds | PyTorch ÷ ours (speed-up) |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let (ref_col, ratio) = match o.reference(r.reference_key) {
            Some(p) => (format!("{p:.2}"), format!("{:.2}", p / r.seconds)),
            _ => ("–".into(), "–".into()),
        };
        let per_s =
            if r.what.starts_with("caption") { format!("{:.2}", r.batch as f64 / r.seconds) } else { "–".into() };
        println!(
            "| {} | {} | {} | {:.3} | {} | {} | {} |",
            r.backend, r.what, r.batch, r.seconds, per_s, ref_col, ratio
        );
    }
}
