//! The browser benchmark: CLIP ViT-B/32 (int8 artifact and fp32 checkpoint, random weights) and local
//! index search, timed with `performance.now()` in a dedicated worker of headless Chromium (the app
//! computes in a worker too). Prints tables; nothing here asserts a speed.
//!
//! `web/bench/run.sh` runs it (`--smoke`: the tiny fixture CLIP, one iteration, 1k vectors).
#![cfg(target_arch = "wasm32")]

use burn::backend::NdArray;
use lens_bench_browser::clip::{self, Inputs, Iters};
use lens_bench_browser::report::{Row, Samples, pair_up, table};
use lens_bench_browser::{SMOKE, cache, checkpoint, clock, log, profile, search};
use lens_models::artifact::{Artifact, ArtifactSource};
use lens_models::clip::quantize_clip;
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
    Iters { warmup: 1, image: 5, batch: 2, text: 10 }
};
/// Loads of the int8 artifact and Cache Storage round trips (the fp32 checkpoint loads once).
const LOAD_ITERS: usize = if SMOKE { 1 } else { 3 };
/// Repetitions of each op in the per-layer profile.
const PROFILE_ITERS: usize = if SMOKE { 1 } else { 5 };
const LOAD: &str = "model load: bytes in memory → ready model";
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

    // int8 first: quantize the random checkpoint, then drop it, so the fp32 model is never in memory
    // at the same time as the checkpoint's second copy.
    let (files_fp32, built) = clock::once(files);
    let config = ClipConfig::from_json(&files_fp32.config).expect("config parses");
    let fp32_bytes = files_fp32.weights[0].1.len();
    notes.push(format!(
        "random checkpoint: {:.1} M parameters, fp32 safetensors {:.1} MB, built in {:.0} ms",
        checkpoint::parameter_count(&config) as f64 / 1e6,
        mb(fp32_bytes),
        built.median()
    ));
    let source = ArtifactSource { id: format!("random-{SEED:x}"), name: model_name().into() };
    let (artifact, quantized) = clock::once(|| quantize_clip(files_fp32, source).expect("the checkpoint quantizes"));
    notes.push(format!(
        "int8 artifact: {:.1} MB ({:.2} × the fp32 safetensors), quantized in the browser in {:.0} ms",
        mb(artifact.len()),
        artifact.len() as f64 / fp32_bytes as f64,
        quantized.median()
    ));

    let (mut put, mut get) = (Samples::default(), Samples::default());
    for _ in 0..LOAD_ITERS {
        match cache::round_trip("lens-bench", &artifact).await {
            Ok(trip) => {
                put.push(trip.put_ms);
                get.push(trip.get_ms);
            }
            Err(why) => {
                notes.push(format!("Cache Storage not measured: {why}"));
                break;
            }
        }
    }
    if !put.is_empty() {
        rows.push(Row::new("Cache Storage put (artifact)", "browser", put));
        rows.push(Row::new("Cache Storage get (artifact → wasm bytes)", "browser", get));
    }

    let (mut parse, mut build) = (Samples::default(), Samples::default());
    let mut int8 = None;
    for _ in 0..LOAD_ITERS {
        let bytes = artifact.clone();
        let start = clock::now_ms();
        let parsed = Artifact::parse(bytes).expect("the artifact parses and its checksum holds");
        let parsed_at = clock::now_ms();
        let pipeline = ClipPipeline::<B>::from_artifact(parsed, &device).expect("the artifact builds a pipeline");
        let end = clock::now_ms();
        parse.push(parsed_at - start);
        build.push(end - parsed_at);
        int8 = Some(pipeline);
    }
    let int8 = int8.expect("LOAD_ITERS > 0");
    drop(artifact);
    let total = parse.plus(&build);
    rows.push(Row::new(LOAD, "int8", total));
    notes.push(format!(
        "int8 load split: parse + SHA-256 {:.0} ms, build from the sections {:.0} ms (medians)",
        parse.median(),
        build.median()
    ));
    rows.push(clip::preprocess_row(&int8, &inputs, INT8_ITERS));
    let (int8_rows, int8_out) = clip::embedding_rows(&int8, "int8", &inputs, INT8_ITERS);
    rows.extend(int8_rows);
    let mut profiles = profile::report(&int8, "int8", QUERY, PROFILE_ITERS, &device);
    drop(int8);

    let files = files();
    let (fp32, load) = clock::once(|| ClipPipeline::<B>::load(files, &device).expect("the random checkpoint loads"));
    rows.push(Row::new(LOAD, "fp32", load));
    let (fp32_rows, fp32_out) = clip::embedding_rows(&fp32, "fp32", &inputs, FP32_ITERS);
    profiles += &profile::report(&fp32, "fp32", QUERY, PROFILE_ITERS, &device);
    drop(fp32);
    rows.extend(fp32_rows);

    for (engine, out) in [("int8", &int8_out), ("fp32", &fp32_out)] {
        let padding = lens_core::vector::cosine(&out.text, &out.text_padded);
        assert!(padding > 0.9999, "{engine}: the query's embedding over the padded context differs: cosine {padding}");
    }
    notes.push(format!(
        "int8 vs fp32 on the same inputs (random weights): cosine {:.4} (image), {:.4} (text)",
        lens_core::vector::cosine(&int8_out.image, &fp32_out.image),
        lens_core::vector::cosine(&int8_out.text, &fp32_out.text)
    ));

    // The int8 kernel this build runs (`--relaxed-simd` on run.sh builds the other one).
    let kernel = match lens_models::int8::ACTIVATIONS {
        lens_models::int8::Activations::Unsigned7 => "simd128 + relaxed SIMD int8 products, 7-bit activations",
        lens_models::int8::Activations::Signed8 => "simd128, 8-bit activations",
    };
    log(&format!("\n{} in a dedicated worker (wasm32, {kernel}, one thread)\n", model_name()));
    log(&table(&pair_up(rows, "int8", "fp32")));
    for note in notes {
        log(&note);
    }
    log(&format!("\nwhere the time goes: layer 0 of each tower, op by op (median of {PROFILE_ITERS})"));
    log(&profiles);
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

/// The int8 products alone, at the shapes of the towers' layers: this build's kernel against the
/// portable loop (LLVM's own vectorisation of the same sums, 8-bit activations), with the rate in
/// multiply-adds per second: the ceiling the towers' time is measured against.
#[wasm_bindgen_test]
fn int8_products() {
    use lens_models::int8::{Activations, QuantizedMatrix};
    // (rows, in, out): ViT-B/32's 50 tokens through attention and the MLP, then the text query's 8.
    let shapes: &[(usize, usize, usize)] = if SMOKE {
        &[(8, 64, 32)]
    } else {
        &[(50, 768, 768), (50, 768, 3072), (50, 3072, 768), (8, 512, 512), (8, 512, 2048), (8, 2048, 512)]
    };
    let iters = if SMOKE { 1 } else { 20 };
    let mut rng = lens_core::rng::SplitMix64::new(SEED);
    let mut next = move || ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &(m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
        let q = QuantizedMatrix::quantize(&w, n, k);
        let what = format!("int8 product [{m}, {k}] · [{k}, {n}]");
        let ours = clock::time(1, iters, || q.matmul(&x, m, None));
        let portable = clock::time(1, iters, || q.matmul_portable_with(&x, m, None, Activations::Signed8));
        let gmacs = |s: &Samples| (m * k * n) as f64 / (s.median() * 1e6);
        notes.push(format!("{what}: {:.1} G multiply-adds/s (portable {:.1})", gmacs(&ours), gmacs(&portable)));
        rows.push(Row::new(what.clone(), "kernel", ours));
        rows.push(Row::new(what, "portable", portable));
    }
    log(&format!(
        "\nint8 products alone ({:?} activations in this build's kernel, one thread)\n",
        lens_models::int8::ACTIVATIONS
    ));
    log(&table(&pair_up(rows, "kernel", "portable")));
    for note in notes {
        log(&note);
    }
}
