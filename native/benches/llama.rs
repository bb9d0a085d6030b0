//! LLaMA and LLaVA generation speed and load memory, beside transformers on the same checkpoint: a LLaVA with
//! LLaVA-1.5's vision side (CLIP ViT-L/14-336, 576 image tokens) and a TinyLlama-1.1B-shaped decoder, random
//! weights, float32, written by `models/bench_llama_reference.py` (see its docstring for why this shape). The
//! LLaMA rows run that checkpoint's decoder on text alone.
//!
//! HF_HUB_OFFLINE=1 .venv-ref/bin/python models/bench_llama_reference.py --checkpoint DIR > llama-ref.json
//! cargo bench -p lens --bench llama -- --checkpoint DIR [--reference llama-ref.json] [--iters N]
//! cargo bench -p lens --bench llama -- --smoke        # the tiny LLaVA fixture, once
//!
//! Rows on burn-ndarray (the CPU): load (seconds, and how far peak RSS grew over the RSS before it, beside the
//! weights' f32 size: reading the safetensors tensor by tensor keeps the checkpoint from being held twice);
//! prefill (a 128-id prompt, or one image and 24 ids: `generate(max_new_tokens=1)`), decode (32 steps: a
//! 33-token generation minus the prefill), the image features alone. Every generation is greedy with
//! `min_new_tokens = max_new_tokens`, so both sides do the same steps. Same ids and pixels as the reference.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use lens_models::generation::GenerationConfig;
use lens_models::llama::LlamaSpecialTokens;
use lens_models::llava::{LlavaConfig, LlavaForConditionalGeneration};

type B = NdArray<f32>;

const PROMPT: usize = 128;
const IMAGE_PROMPT_TEXT: usize = 24;
const NEW: usize = 32;

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 1 (BOS), then `100 + (i * 7919) % 31000`: the reference's ids.
fn text_ids(n: usize, vocab: usize) -> Vec<u32> {
    let ids = (0..n - 1).map(|i| (100 + (i * 7919) % 31000) % vocab);
    std::iter::once(1).chain(ids.map(|i| i as u32)).collect()
}

/// The text ids with `images` image tokens after the fourth.
fn image_prompt(config: &LlavaConfig, tokens: usize) -> Vec<u32> {
    let text = text_ids(IMAGE_PROMPT_TEXT, config.text_config.vocab_size);
    let image = std::iter::repeat_n(config.image_token_id, tokens);
    text[..4].iter().copied().chain(image).chain(text[4..].iter().copied()).collect()
}

fn pixels(config: &LlavaConfig) -> Tensor<B, 4> {
    let size = config.vision_config.image_size;
    let values: Vec<f32> = (0..3 * size * size).map(|i| ((i % 255) as f32 / 127.5) - 1.0).collect();
    Tensor::from_data(TensorData::new(values, [1, 3, size, size]), &Default::default())
}

fn exactly(new: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens: new, min_new_tokens: new, ..Default::default() }
}

struct Row {
    what: String,
    positions: usize,
    seconds: f64,
    /// Tokens per second, where the row is about tokens.
    tokens: Option<usize>,
    reference_key: &'static str,
}

fn main() {
    let o = common::options(2);
    let dir = match (&o.checkpoint, o.smoke) {
        (Some(dir), _) => dir.clone(),
        (None, true) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/llava-tiny/default-old"),
        (None, false) => panic!("--checkpoint DIR (written by models/bench_llama_reference.py), or --smoke"),
    };
    let config_json = std::fs::read(dir.join("config.json")).expect("config.json");
    let config = LlavaConfig::from_json(&config_json).expect("a LLaVA config.json");
    let device = Default::default();

    let rss_before = status_bytes("VmRSS");
    let start = Instant::now();
    let weights = lens_models::files::open_safetensors(&dir).expect("safetensors");
    let model = LlavaForConditionalGeneration::<B>::load(&weights.builder(&device), &config).expect("load");
    let load_s = start.elapsed().as_secs_f64();
    let load_peak = status_bytes("VmHWM").saturating_sub(rss_before) as f64 / 1e9;
    drop(weights);
    let files = lens_models::files::safetensors_files(&dir).expect("safetensors files");
    let checkpoint_gb =
        files.iter().map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len())).sum::<u64>() as f64 / 1e9;

    let text = &config.text_config;
    let special = LlamaSpecialTokens { bos: text.bos_token_id, eos: text.eos_token_id.clone(), pad: text.pad_token_id };
    let lm = &model.language_model;
    let prompt = text_ids(PROMPT, text.vocab_size);
    let generate = |new: usize| {
        let out = lm.generate(&[prompt.clone()], &special, &exactly(new)).expect("generate");
        assert_eq!(out[0].len(), PROMPT + new);
    };
    let mut rows = Vec::new();
    let llama_prefill = common::time(o.iters, || generate(1));
    let llama_generate = common::time(o.iters, || generate(NEW + 1));
    rows.push(Row {
        what: "LLaMA prefill".into(),
        positions: PROMPT,
        seconds: llama_prefill,
        tokens: Some(PROMPT),
        reference_key: "llama_prefill128_s",
    });
    rows.push(Row {
        what: "LLaMA decode".into(),
        positions: NEW,
        seconds: llama_generate - llama_prefill,
        tokens: Some(NEW),
        reference_key: "llama_decode32_s",
    });

    let pv = pixels(&config);
    let image_s = common::time(o.iters, || {
        let _ = model.image_features(pv.clone()).expect("image features").into_data();
    });
    let tokens_per_image = model.image_features(pv.clone()).expect("image features").dims()[1];
    let image_prompt = image_prompt(&config, tokens_per_image);
    let generate = |new: usize| {
        let out = model.generate(&[image_prompt.clone()], Some(pv.clone()), &special, &exactly(new)).expect("generate");
        assert_eq!(out[0].len(), image_prompt.len() + new);
    };
    let llava_prefill = common::time(o.iters, || generate(1));
    let llava_generate = common::time(o.iters, || generate(NEW + 1));
    rows.push(Row {
        what: "LLaVA image features".into(),
        positions: tokens_per_image,
        seconds: image_s,
        tokens: None,
        reference_key: "llava_image_s",
    });
    rows.push(Row {
        what: "LLaVA prefill (image + text)".into(),
        positions: image_prompt.len(),
        seconds: llava_prefill,
        tokens: Some(image_prompt.len()),
        reference_key: "llava_prefill_s",
    });
    rows.push(Row {
        what: "LLaVA decode".into(),
        positions: NEW,
        seconds: llava_generate - llava_prefill,
        tokens: Some(NEW),
        reference_key: "llava_decode32_s",
    });

    let shape = if o.smoke { "the tiny LLaVA fixture (smoke)" } else { "LLaVA ViT-L/14-336 + TinyLlama-1.1B shape" };
    println!(
        "\n{shape}, random weights, float32, burn-ndarray, best of {} after warm-up, {} threads available",
        o.iters,
        common::threads()
    );
    let reference_load = match (o.reference("load_s"), o.reference("load_peak_rss_gb")) {
        (Some(s), Some(gb)) => format!("; transformers {s:.1} s, peak RSS +{gb:.2} GB"),
        _ => String::new(),
    };
    println!("load: {load_s:.1} s, peak RSS +{load_peak:.2} GB for a {checkpoint_gb:.2} GB checkpoint{reference_load}");
    println!("| work | positions | seconds | tokens/s | transformers s | tokens/s | ours ÷ transformers (speed) |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let per_s = |s: f64| r.tokens.map_or("–".into(), |t| format!("{:.2}", t as f64 / s));
        let (ref_s, ref_per_s, ratio) = match o.reference(r.reference_key) {
            Some(p) => (format!("{p:.3}"), per_s(p), format!("{:.2}", p / r.seconds)),
            None => ("–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {:.3} | {} | {ref_s} | {ref_per_s} | {ratio} |",
            r.what,
            r.positions,
            r.seconds,
            per_s(r.seconds)
        );
    }
}
