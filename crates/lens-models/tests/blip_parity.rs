//! BLIP numerical parity with HuggingFace `transformers`, on a tiny random checkpoint generated offline
//! by `models/generate_blip_fixtures.py` (fixed seed, committed with its reference outputs).
//!
//! Tolerances: relative L2 error ≤ 1e-4 (‖ours − reference‖ / ‖reference‖) for the vision states and the
//! teacher-forced logits; generated token ids and decoded captions must be identical for greedy and beam
//! search (the fixture asserts decision margins ≥ 1e-3 greedy / 1e-4 beam, far above f32 rounding).
//!
//! The same file runs natively (`cargo test`) and in wasm32 under Node and headless Chromium: fixtures
//! are compiled in, nothing touches a filesystem.

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use lens_models::blip::{BlipFiles, BlipPipeline, CaptionOptions};
use lens_models::generation::{GenerationConfig, Sampling};
use lens_models::tokenizer::TextTokenizer;
use lens_models::weights::Weights;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::{assert_close, rel_l2};

type B = NdArray<f32>;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/blip-tiny/", $file)).as_slice()
    };
}

macro_rules! image {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/images/", $file)).as_slice()
    };
}

fn files() -> BlipFiles {
    BlipFiles {
        config: fixture!("config.json").to_vec(),
        weights: vec![("model.safetensors".into(), fixture!("model.safetensors").to_vec())],
        tokenizer: fixture!("tokenizer.json").to_vec(),
        tokenizer_config: Some(fixture!("tokenizer_config.json").to_vec()),
        preprocessor_config: fixture!("preprocessor_config.json").to_vec(),
    }
}

fn pipeline() -> BlipPipeline<B> {
    BlipPipeline::load(files(), &Default::default()).unwrap()
}

fn reference() -> (Weights, Value) {
    let weights =
        Weights::from_buffers(vec![("reference.safetensors".into(), fixture!("reference.safetensors").to_vec())])
            .unwrap();
    (weights, serde_json::from_slice(fixture!("reference.json")).unwrap())
}

fn tensor(weights: &Weights, name: &str) -> (Vec<f32>, Vec<usize>) {
    let shape = weights.shape(name).unwrap().to_vec();
    (weights.f32_values(name, &shape).unwrap(), shape)
}

fn pixels(weights: &Weights) -> Tensor<B, 4> {
    let (values, shape) = tensor(weights, "pixel_values");
    Tensor::from_data(TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]), &Default::default())
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// The `generate()` kwargs of a reference case as our config.
fn generation_config(resolved: &Value) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: resolved["max_new_tokens"].as_u64().unwrap() as usize,
        min_new_tokens: resolved["min_new_tokens"].as_u64().unwrap() as usize,
        num_beams: resolved["num_beams"].as_u64().unwrap() as usize,
        length_penalty: resolved["length_penalty"].as_f64().unwrap() as f32,
        early_stopping: resolved["early_stopping"].as_bool().unwrap(),
        repetition_penalty: resolved["repetition_penalty"].as_f64().unwrap() as f32,
        sampling: None,
    }
}

#[test]
fn vision_states_match_reference() {
    let (reference, _) = reference();
    let ours = values(pipeline().model.vision_model.forward(pixels(&reference)));
    let (expected, _) = tensor(&reference, "vision_last_hidden_state");
    assert_close("vision last_hidden_state", &ours, &expected);
}

#[test]
fn teacher_forced_logits_match_reference_with_padding() {
    let (reference, meta) = reference();
    let tf = &meta["teacher_forced"];
    let (input_ids, mask) = (ids(&tf["input_ids"]), ids(&tf["attention_mask"]));
    let ours = values(pipeline().model.forward(pixels(&reference), &input_ids, Some(&mask)).unwrap());
    let (expected, _) = tensor(&reference, "logits");
    assert_close("teacher-forced logits", &ours, &expected);
}

#[test]
fn prompts_tokenize_as_the_processor_does() {
    let (_, meta) = reference();
    let pipeline = pipeline();
    let tf = &meta["teacher_forced"];
    for (prompt, expected) in tf["prompts"].as_array().unwrap().iter().zip(ids(&tf["processor_input_ids"])) {
        let ours = pipeline.tokenizer.encode(prompt.as_str().unwrap()).unwrap().ids;
        let unpadded: Vec<u32> = expected.into_iter().take(ours.len()).collect();
        assert_eq!(ours, unpadded, "{prompt}");
    }
}

#[test]
fn generated_ids_and_captions_match_reference_generate() {
    let (reference, meta) = reference();
    let pipeline = pipeline();
    for (name, case) in meta["generation"]["cases"].as_object().unwrap() {
        let config = generation_config(&case["resolved"]);
        let prompt = case["prompt"].as_str().map(|p| pipeline.tokenizer.encode(p).unwrap().ids);
        let ours = pipeline.model.generate(pixels(&reference), prompt.as_deref(), &config).unwrap();
        assert_eq!(ours, ids(&case["output_ids"]), "case {name}: token ids");
        let decoded: Vec<String> = ours.iter().map(|row| pipeline.tokenizer.decode(row, true).unwrap()).collect();
        let expected: Vec<String> = serde_json::from_value(case["decoded"].clone()).unwrap();
        assert_eq!(decoded, expected, "case {name}: decoded captions");
        eprintln!("{name}: {} rows identical", ours.len());
    }
}

#[test]
fn captions_from_image_bytes_match_reference() {
    // The whole path: PNG bytes → lens-core decode and BLIP pre-processing → generation → text. PNG
    // decodes losslessly and the pre-processing is exact, so the reference's captions come out.
    let (reference, meta) = reference();
    let pipeline = pipeline();
    let images: Vec<_> = [image!("astronaut.png"), image!("chelsea_rgba.png")]
        .into_iter()
        .map(|bytes| lens_core::image::decode_image(bytes, &Default::default()).unwrap())
        .collect();
    let (expected_pixels, _) = tensor(&reference, "pixel_values");
    let per_image = expected_pixels.len() / 3;
    let ours = pipeline.processor.preprocess_batch(&images);
    assert_eq!(&ours[..per_image], &expected_pixels[..per_image], "astronaut pixel values");
    assert_eq!(&ours[per_image..], &expected_pixels[2 * per_image..], "chelsea pixel values");

    let case = &meta["generation"]["cases"]["beam3_prompt_early_lp06"];
    let options = CaptionOptions {
        prompt: case["prompt"].as_str().map(str::to_string),
        generation: generation_config(&case["resolved"]),
    };
    let captions = pipeline.caption(&images, &options).unwrap();
    let decoded: Vec<String> = serde_json::from_value(case["decoded"].clone()).unwrap();
    assert_eq!(captions, vec![decoded[0].clone(), decoded[2].clone()]);
}

#[test]
fn cached_decoding_equals_a_full_forward() {
    // Feeding tokens one at a time through the key/value cache must give the logits of one pass over
    // the whole sequence.
    let (reference, meta) = reference();
    let model = pipeline().model;
    let row = ids(&meta["teacher_forced"]["input_ids"])[1].clone(); // the unpadded prompt
    let image = pixels(&reference).narrow(0, 1, 1);
    let full = values(model.forward(image.clone(), std::slice::from_ref(&row), None).unwrap());
    let vocab = model.text_decoder.vocab_size;
    let mut cache = model.text_decoder.start(model.vision_model.forward(image));
    let split = 3; // a prompt of 3, then single tokens
    let first = model.text_decoder.forward_hidden(&[row[..split].to_vec()], None, &mut cache).unwrap();
    let mut stepped = values(model.text_decoder.logits(first));
    for &token in &row[split..] {
        let hidden = model.text_decoder.forward_hidden(&[vec![token]], None, &mut cache).unwrap();
        stepped.extend(values(model.text_decoder.logits(hidden)));
    }
    assert_eq!(cache.len(), row.len());
    assert_eq!(stepped.len(), row.len() * vocab);
    let err = rel_l2(&stepped, &full);
    assert!(err < 1e-5, "cached vs full forward: {err:.2e}");
}

#[test]
fn sampling_is_seeded_and_independent_of_the_batch() {
    let (reference, _) = reference();
    let model = pipeline().model;
    let config = |seed| GenerationConfig {
        max_new_tokens: 12,
        sampling: Some(Sampling { temperature: 1.0, top_k: 20, top_p: 0.9, seed }),
        ..Default::default()
    };
    let batch = model.generate(pixels(&reference), None, &config(7)).unwrap();
    let again = model.generate(pixels(&reference), None, &config(7)).unwrap();
    assert_eq!(batch, again, "same seed, same tokens");
    let alone = model.generate(pixels(&reference).narrow(0, 2, 1), None, &config(7)).unwrap();
    let unpadded: Vec<u32> = batch[2].iter().copied().take(alone[0].len()).collect();
    assert_eq!(alone[0], unpadded, "a row's sample does not depend on its batch");
    let other = model.generate(pixels(&reference), None, &config(8)).unwrap();
    assert_ne!(batch, other, "another seed draws other tokens");
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let pipeline = pipeline();
    let image = lens_core::image::RgbImage::filled(40, 30, [200, 10, 10]);
    let refuse = |options: CaptionOptions, needle: &str| {
        let err = pipeline.caption(std::slice::from_ref(&image), &options).unwrap_err().to_string();
        assert!(err.contains(needle), "{err} (wanted {needle})");
    };
    let generation = |g: GenerationConfig| CaptionOptions { prompt: None, generation: g };
    refuse(generation(GenerationConfig { max_new_tokens: 0, ..Default::default() }), "max_new_tokens");
    refuse(generation(GenerationConfig { max_new_tokens: 10_000, ..Default::default() }), "max_new_tokens");
    refuse(generation(GenerationConfig { num_beams: 0, ..Default::default() }), "num_beams");
    refuse(generation(GenerationConfig { num_beams: 99, ..Default::default() }), "num_beams");
    refuse(generation(GenerationConfig { min_new_tokens: 30, ..Default::default() }), "min_new_tokens");
    refuse(generation(GenerationConfig { repetition_penalty: 0.0, ..Default::default() }), "repetition_penalty");
    refuse(
        generation(GenerationConfig { num_beams: 2, sampling: Some(Sampling::default()), ..Default::default() }),
        "sampling",
    );
    // The tiny decoder has 64 positions: 1 + 100 does not fit.
    refuse(generation(GenerationConfig { max_new_tokens: 100, ..Default::default() }), "positions");
    refuse(CaptionOptions { prompt: Some("word ".repeat(200)), ..Default::default() }, "prompt");
    assert!(pipeline.caption(&[], &CaptionOptions::default()).is_err());
    // Unknown option names are refused when options come as JSON.
    assert!(serde_json::from_str::<CaptionOptions>(r#"{"beams": 3}"#).is_err());
    let parsed: CaptionOptions = serde_json::from_str(r#"{"prompt": "a picture of", "num_beams": 3}"#).unwrap();
    assert_eq!(parsed.generation.num_beams, 3);
}

#[test]
fn missing_tensor_is_named() {
    let mut files = files();
    let weights = Weights::from_buffers(files.weights.clone()).unwrap();
    let victim = "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight";
    assert!(weights.contains(victim));
    let mut tensors = Vec::new();
    for name in weights.names().into_iter().filter(|n| *n != victim) {
        let shape = weights.shape(name).unwrap().to_vec();
        let bytes: Vec<u8> = weights.f32_values(name, &shape).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name.to_string(), shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    files.weights = vec![("model.safetensors".into(), safetensors::serialize(views, None).unwrap())];
    let err = BlipPipeline::<B>::load(files, &Default::default()).unwrap_err().to_string();
    assert!(err.contains(victim), "{err}");
}
