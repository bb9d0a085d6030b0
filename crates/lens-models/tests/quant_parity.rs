//! The int8 CLIP (`burn-int8` artifacts) against the fp32 reference embeddings of the tiny fixtures,
//! the artifact's refusals, and the int8 kernel.
//!
//! Bar: cosine similarity ≥ 0.99 between each int8 embedding and `transformers`' fp32 embedding of
//! the same input (images and texts). Seen on the tiny fixtures (hidden 32, 2 layers, random weights):
//! printed by the test; the worst is ≥ 0.995.
//!
//! Runs natively and in wasm32 (Node, built with `simd128`; headless Chromium, built with the
//! `relaxed-simd` feature too: 7-bit activations, same bar), where the SIMD kernel must also give
//! exactly the portable kernel's numbers.

use burn::backend::NdArray;
use lens_models::artifact::{Artifact, ArtifactSource, ArtifactWriter, Engine};
use lens_models::clip::{ClipPipeline, ClipTextPipeline, TEXT_FAMILY, quantize_clip, quantize_clip_text};
use lens_models::int8::{ACTIVATIONS, QuantizedMatrix, quantize_activations, summarize};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

type B = NdArray<f32>;

/// Lowest cosine accepted between an int8 embedding and the fp32 reference.
const MIN_COSINE: f64 = 0.99;

use crate::clip_fixtures::{Fixture, fixtures};

fn source(name: &str) -> ArtifactSource {
    ArtifactSource { id: format!("{name}@test"), name: name.into() }
}

impl Fixture {
    fn artifact_bytes(&self) -> Vec<u8> {
        quantize_clip(self.files.clone(), source(self.name)).unwrap()
    }

    fn int8(&self) -> ClipPipeline<B> {
        ClipPipeline::from_artifact(Artifact::parse(self.artifact_bytes()).unwrap(), &Default::default()).unwrap()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Checks every row of `ours` against `reference` (`[n, d]` each); returns the lowest cosine.
fn assert_rows_close(what: &str, ours: &[f32], reference: &[f32], d: usize) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let min = ours.chunks_exact(d).zip(reference.chunks_exact(d)).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
    eprintln!("{what}: lowest cosine to fp32 reference {min:.5}");
    assert!(min >= MIN_COSINE, "{what}: cosine {min:.5} < {MIN_COSINE}");
    min
}

fn values(t: burn::tensor::Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[test]
fn int8_image_and_text_embeddings_match_fp32_reference() {
    for f in fixtures() {
        let pipeline = f.int8();
        assert_eq!(pipeline.artifact_source(), Some(&source(f.name)));
        assert!(
            pipeline.model.text.text_projection.is_int8()
                && pipeline.model.vision_model.embeddings.patch_embedding.is_int8()
        );
        let (pixels, shape) = f.tensor("pixel_values");
        let (reference, rshape) = f.tensor("image_embeds");
        let ours = values(pipeline.image_features(pixels, shape[0]).unwrap());
        assert_rows_close(&format!("{} int8 image_embeds", f.name), &ours, &reference, rshape[1]);

        let texts: Vec<String> =
            f.meta["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (reference, rshape) = f.tensor("text_embeds");
        let ours = values(pipeline.text_features(&refs).unwrap());
        assert_rows_close(&format!("{} int8 text_embeds", f.name), &ours, &reference, rshape[1]);
        // One text at a time runs a shorter prefix than the batch: the same embedding.
        let alone = values(pipeline.text_features(&refs[..1]).unwrap());
        let d = rshape[1];
        assert!(cosine(&alone, &ours[..d]) > 0.99999, "batch and single text differ");
    }
}

#[test]
fn the_text_only_artifact_gives_the_full_artifacts_text_embeddings_bit_for_bit() {
    for f in fixtures() {
        let full = f.int8();
        let bytes = quantize_clip_text(f.files.clone(), source(f.name)).unwrap();
        let text = Artifact::parse(bytes).unwrap();
        assert_eq!(text.header().family, TEXT_FAMILY);
        assert_eq!(text.header().source, source(f.name), "the same model id as the full artifact");
        assert!(text.section("preprocessor_config.json").is_none());
        assert!(
            text.header()
                .sections
                .iter()
                .all(|s| !s.name.starts_with("vision_model.") && !s.name.starts_with("visual_projection"))
        );
        assert!(text.len() < f.artifact_bytes().len());
        // A text-only artifact is not a CLIP the image side can load: refused by name, not by a missing tensor.
        let refusal = ClipPipeline::<B>::from_artifact(text.clone(), &Default::default()).unwrap_err().to_string();
        assert!(refusal.contains(TEXT_FAMILY), "{refusal}");

        let texts = ["a photo of a cat", "two dogs playing in the snow", ""];
        let alone = ClipTextPipeline::<B>::from_artifact(text, &Default::default()).unwrap();
        assert_eq!(alone.dim(), full.dim());
        assert_eq!(alone.embed_texts(&texts).unwrap(), full.embed_texts(&texts).unwrap(), "{}", f.name);
        // The text half of a full artifact loads too (the same numbers again).
        let half =
            ClipTextPipeline::<B>::from_artifact(Artifact::parse(f.artifact_bytes()).unwrap(), &Default::default())
                .unwrap();
        assert_eq!(half.embed_texts(&texts).unwrap(), full.embed_texts(&texts).unwrap());
    }
}

#[test]
fn quantizing_is_deterministic_and_shrinks_the_model() {
    let f = &fixtures()[0];
    let a = f.artifact_bytes();
    assert_eq!(a, f.artifact_bytes());
    let artifact = Artifact::parse(a).unwrap();
    let s = summarize(&artifact);
    // Per tower: 2 layers × 6 matrices; plus the two projections, the patch and token embeddings.
    assert_eq!(s.int8_tensors, 2 * 2 * 6 + 4);
    let fp32 = f.files.weights[0].1.len() as u64;
    assert!(s.fp32_bytes <= fp32 && s.fp32_bytes > fp32 * 9 / 10, "fp32 size {} vs file {fp32}", s.fp32_bytes);
    assert_eq!(artifact.header().meta["weights"], lens_models::int8::SCHEME_WEIGHTS);
}

#[test]
fn the_committed_artifact_is_what_quantizing_the_fixture_gives() {
    // `lens models quantize --model models/fixtures/clip-tiny-quickgelu` wrote it; its source id is the
    // one `lens serve` reports for that directory (no manifest: name and hash of the weights).
    let committed =
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/clip-tiny-quickgelu.int8.lens"));
    let artifact = Artifact::parse(committed.to_vec()).unwrap();
    let f = &fixtures()[0];
    let again = quantize_clip(f.files.clone(), artifact.header().source.clone()).unwrap();
    assert!(again == committed.as_slice(), "regenerating the committed artifact gave other bytes");
    assert!(artifact.header().source.id.starts_with("clip-tiny-quickgelu@sha256:"));
}

/// Re-assemble an artifact with `edit` applied to its header and sections.
fn rewrite(bytes: Vec<u8>, engine: Engine, family: &str, drop: &str) -> Vec<u8> {
    let a = Artifact::parse(bytes).unwrap();
    let mut w = ArtifactWriter::new(engine, family, a.header().source.clone());
    w.set_meta(a.header().meta.clone());
    for s in &a.header().sections {
        if s.name == drop {
            continue;
        }
        let data = a.bytes(&s.name).unwrap();
        match s.dtype {
            lens_models::artifact::SectionDtype::Bytes => w.add_bytes(&s.name, data).unwrap(),
            lens_models::artifact::SectionDtype::I8 => {
                let codes: Vec<i8> = data.iter().map(|&b| b as i8).collect();
                w.add_i8(&s.name, &s.shape, &codes).unwrap()
            }
            lens_models::artifact::SectionDtype::F32 => {
                let v: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                w.add_f32(&s.name, &s.shape, &v).unwrap()
            }
        }
    }
    w.finish().unwrap()
}

#[test]
fn bad_artifacts_are_refused_with_reasons() {
    let f = &fixtures()[0];
    let good = f.artifact_bytes();
    let load = |bytes: Vec<u8>| match Artifact::parse(bytes) {
        Ok(a) => ClipPipeline::<B>::from_artifact(a, &Default::default()).map(|_| ()).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(rewrite(good.clone(), Engine::BurnInt8, "clip", "").len() == good.len());
    let err = load(rewrite(good.clone(), Engine::Onnx, "clip", ""));
    assert!(err.contains("onnx"), "{err}");
    let err = load(rewrite(good.clone(), Engine::BurnInt8, "blip", ""));
    assert!(err.contains("blip"), "{err}");
    let victim = "text_model.encoder.layers.1.mlp.fc1.weight";
    let err = load(rewrite(good.clone(), Engine::BurnInt8, "clip", victim));
    assert!(err.contains(victim), "{err}");
    let err = load(rewrite(good.clone(), Engine::BurnInt8, "clip", &format!("{victim}.scale")));
    assert!(err.contains("scale"), "{err}");
    let err = load(rewrite(good.clone(), Engine::BurnInt8, "clip", "tokenizer.json"));
    assert!(err.contains("tokenizer.json"), "{err}");
    let mut corrupted = good.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 1;
    let err = load(corrupted);
    assert!(err.contains("checksum"), "{err}");
    // A checkpoint that is not CLIP (BLIP's config) is refused by the quantizer.
    let mut files = f.files.clone();
    files.config = br#"{"model_type": "blip", "text_config": {"hidden_size": 33, "num_attention_heads": 4}}"#.to_vec();
    assert!(quantize_clip(files, source("x")).is_err());
    let mut files = f.files.clone();
    files.weights[0].1.truncate(1000);
    assert!(quantize_clip(files, source("x")).is_err());
}

#[test]
fn simd_and_portable_kernels_agree_and_match_f64() {
    // On wasm32 + simd128 `matmul` runs the SIMD kernel (relaxed SIMD with the `relaxed-simd` feature);
    // elsewhere both names run the portable one.
    let mut rng = lens_core::rng::SplitMix64::new(7);
    let mut next = move || ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
    for &(m, k, n) in &[(1, 7, 3), (5, 768, 9), (17, 100, 64)] {
        let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
        let bias: Vec<f32> = (0..n).map(|_| next()).collect();
        let q = QuantizedMatrix::quantize(&w, n, k);
        let fast = q.matmul(&x, m, Some(&bias));
        assert_eq!(fast, q.matmul_portable(&x, m, Some(&bias)), "[{m},{k},{n}]: kernels differ");
        // The activation codes this build's kernel takes (7-bit with a zero point under relaxed SIMD).
        let (qx, tx, zx) = quantize_activations(&x, m, k, ACTIVATIONS);
        for r in 0..m {
            for o in 0..n {
                let dot: i64 =
                    (0..k).map(|i| (qx[r * k + i] as i64 - zx[r] as i64) * q.codes()[o * k + i] as i64).sum();
                let exact = dot as f64 * tx[r] as f64 * q.scales()[o] as f64 + bias[o] as f64;
                // Integer sums are exact; the f32 scaling and bias add round: 1e-5 relative.
                assert!((fast[r * n + o] as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
            }
        }
    }
}
