//! The browser benchmark: CLIP ViT-B/32 (int8 artifact and fp32 checkpoint, random weights) and local
//! index search, timed with `performance.now()` in a dedicated worker of headless Chromium (the app
//! computes in a worker too). Prints tables; nothing here asserts a speed.
//!
//! `web/bench/run.sh` runs it (`--smoke`: the tiny fixture CLIP, one iteration, 1k vectors).
#![cfg(target_arch = "wasm32")]

use burn::backend::NdArray;
use lens_bench_browser::clip::{self, Inputs, Iters};
use lens_bench_browser::report::{Row, table};
use lens_bench_browser::{SMOKE, checkpoint, clock, log, search};
use lens_models::clip::{ClipConfig, ClipFiles, ClipPipeline};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

type B = NdArray<f32>;

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $path)).as_slice()
    };
}

/// Real photos: the first is the batch-1 image, all four make the small batch.
const PHOTOS: [(&str, &[u8]); 4] = [
    ("rocket.jpg", fixture!("images/rocket.jpg")),
    ("coffee.jpg", fixture!("images/coffee.jpg")),
    ("astronaut.png", fixture!("images/astronaut.png")),
    ("chelsea_rgba.png", fixture!("images/chelsea_rgba.png")),
];
const QUERY: &str = "a dog playing in the snow";
/// Seed of the random weights.
const SEED: u64 = 0xC11B;

const INT8_ITERS: Iters = if SMOKE {
    Iters { warmup: 0, image: 1, batch: 1, text: 1 }
} else {
    Iters { warmup: 1, image: 10, batch: 3, text: 20 }
};
const FP32_ITERS: Iters = if SMOKE {
    Iters { warmup: 0, image: 1, batch: 1, text: 1 }
} else {
    Iters { warmup: 1, image: 3, batch: 1, text: 5 }
};
/// `(vectors, queries, target ms)`.
const SEARCH: &[(usize, usize, Option<f64>)] =
    if SMOKE { &[(1_000, 1, None)] } else { &[(10_000, 100, None), (100_000, 30, Some(20.0))] };

/// The checkpoint's files: the tiny fixture CLIP's in smoke runs, else ViT-B/32's config with the real
/// CLIP tokenizer and image processor. Weights are random either way (built here, from `SEED`).
fn files() -> ClipFiles {
    let (config, preprocessor_config) = if SMOKE {
        (fixture!("clip-tiny-gelu/config.json").to_vec(), fixture!("clip-tiny-gelu/preprocessor_config.json"))
    } else {
        (checkpoint::config_json(&ClipConfig::vit_base_patch32()), fixture!("preprocess/preprocessor_config.json"))
    };
    let parsed = ClipConfig::from_json(&config).expect("the benchmark's config parses");
    ClipFiles {
        weights: vec![("model.safetensors".into(), checkpoint::random_safetensors(&parsed, SEED))],
        config,
        tokenizer: fixture!("clip-tiny-gelu/tokenizer.json").to_vec(),
        tokenizer_config: Some(fixture!("clip-tiny-gelu/tokenizer_config.json").to_vec()),
        preprocessor_config: preprocessor_config.to_vec(),
    }
}

fn model_name() -> &'static str {
    if SMOKE { "tiny fixture CLIP (smoke)" } else { "CLIP ViT-B/32" }
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

#[wasm_bindgen_test]
async fn clip_embedding() {
    let inputs = Inputs { photos: &PHOTOS, query: QUERY };
    let device = Default::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let (files, built) = clock::once(files);
    let config = ClipConfig::from_json(&files.config).expect("config parses");
    let fp32_bytes = files.weights[0].1.len();
    notes.push(format!(
        "random checkpoint: {:.1} M parameters, fp32 safetensors {:.1} MB, built in {:.0} ms",
        checkpoint::parameter_count(&config) as f64 / 1e6,
        mb(fp32_bytes),
        built.median()
    ));

    let (fp32, load) = clock::once(|| ClipPipeline::<B>::load(files, &device).expect("the random checkpoint loads"));
    rows.push(Row::new("model load: safetensors bytes → model", "fp32", load));
    rows.push(clip::preprocess_row(&fp32, &inputs, FP32_ITERS));
    let (fp32_rows, fp32_out) = clip::embedding_rows(&fp32, "fp32", &inputs, FP32_ITERS);
    drop(fp32);
    rows.extend(fp32_rows);
    let padding = lens_core::vector::cosine(&fp32_out.text, &fp32_out.text_unpadded);
    assert!(padding > 0.9999, "the query's embedding without padding differs: cosine {padding}");

    log(&format!("\n{} in a dedicated worker (wasm32, simd128, one thread)\n", model_name()));
    log(&table(&rows));
    for note in notes {
        log(&note);
    }
}

#[wasm_bindgen_test]
fn local_search() {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &(n, queries, target) in SEARCH {
        let r = search::bench(n, queries, target);
        notes.push(format!("{n} vectors: int8 top-{} overlap with exact {:.2} / {}", search::K, r.overlap, search::K));
        rows.push(r.exact);
        rows.push(r.int8);
    }
    log(&format!("\nlocal search, {} random unit vectors, one query at a time\n", search::DIM));
    log(&table(&rows));
    for note in notes {
        log(&note);
    }
}
