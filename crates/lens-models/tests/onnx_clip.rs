//! The ONNX engine on the tiny CLIP exported by `models/generate_onnx_fixtures.py` (torch.onnx fp32
//! graphs, onnxruntime `quantize_dynamic` int8 graphs, reference outputs from PyTorch and onnxruntime).
//!
//! Run with `cargo test --release -p lens-models --features onnx --test integration onnx_clip::`. Tolerances:
//! - fp32 graphs vs PyTorch's `get_*_features`: relative L2 ≤ 1e-5 (same float ops in another order);
//! - fp32 graphs vs the burn [`ClipPipeline`] on the same decoded photos and texts: relative L2 ≤ 1e-4
//!   (DESIGN.md's bar for the burn port; both pre-process and tokenize the same way);
//! - int8 graphs vs onnxruntime running them: relative L2 ≤ 1e-5 (the same int8 arithmetic, measured
//!   8e-8; a rounding flip in the dynamic activation quantization would show far above it);
//! - int8 vs fp32 (issue 5's accuracy bar, adapted to 12 photos and 8 texts): cosine ≥ 0.99 per
//!   embedding; top-10 overlap ≥ 9/10 when texts search the photos; the same top-1 text for every photo;
//!   and in all three searches (text → photo, photo → text, photo → photo) every two candidates whose
//!   fp32 scores differ by more than 0.02 keep their order. A same top-1 photo per text is not asked: the
//!   photos include the same picture in several formats, whose fp32 scores differ by < 0.003 at 32x32
//!   (measured int8 score errors reach 0.027; pairs 0.01 apart do swap).

#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::artifact::{Artifact, ArtifactSource, ArtifactWriter, Engine};
use lens_models::clip::onnx::{OnnxClip, OnnxClipFiles, OnnxPrecision, TEXTUAL, VISUAL};
use lens_models::clip::{ClipFiles, ClipPipeline};
use lens_models::weights::Weights;

const FP32_VS_TORCH: f64 = 1e-5;
const FP32_VS_BURN: f64 = 1e-4;
const INT8_VS_ORT: f64 = 1e-5;
const INT8_MIN_COSINE: f64 = 0.99;
const INT8_MIN_TOP10_OVERLAP: usize = 9;
const INT8_ORDER_KEPT_ABOVE: f64 = 0.02;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures")
}

fn export(precision: &str) -> OnnxClipFiles {
    OnnxClipFiles::read_dir(&fixtures().join("clip-tiny-onnx").join(precision)).unwrap()
}

struct Reference {
    tensors: Weights,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let dir = fixtures().join("clip-tiny-onnx");
        let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
        Reference {
            tensors: Weights::from_buffers(vec![("reference.safetensors".into(), bytes)]).unwrap(),
            meta: serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap(),
        }
    }

    fn f32(&self, name: &str) -> Vec<f32> {
        let shape = self.tensors.shape(name).unwrap_or_else(|| panic!("no `{name}`")).to_vec();
        self.tensors.f32_values(name, &shape).unwrap()
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.meta[key].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    }

    fn texts(&self) -> Vec<String> {
        self.strings("texts")
    }

    /// The photos, decoded by lens-core as `lens embed` decodes them.
    fn images(&self) -> Vec<RgbImage> {
        self.strings("images")
            .iter()
            .map(|f| decode_image(&std::fs::read(fixtures().join("images").join(f)).unwrap(), &DecodeLimits::default()))
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn rel_l2(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let diff: f64 = ours.iter().zip(reference).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let norm: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn assert_within(what: &str, ours: &[f32], reference: &[f32], tolerance: f64) {
    let err = rel_l2(ours, reference);
    eprintln!("{what}: relative L2 error {err:.2e}");
    assert!(err <= tolerance, "{what}: relative L2 error {err:.3e} > {tolerance:e}");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn rows(values: &[f32], dim: usize) -> Vec<&[f32]> {
    values.chunks_exact(dim).collect()
}

/// Indices of `candidates` by decreasing cosine with `query`.
fn ranking(query: &[f32], candidates: &[&[f32]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| cosine(query, candidates[b]).total_cmp(&cosine(query, candidates[a])));
    order
}

#[test]
fn fp32_graphs_match_pytorch() {
    let r = Reference::load();
    let clip = OnnxClip::load(&export("fp32")).unwrap();
    assert_eq!(clip.precision(), OnnxPrecision::Fp32);
    assert_eq!(clip.dim(), 24);
    let pixels = r.f32("pixel_values");
    let images = r.strings("images").len();
    assert_within(
        "fp32 image_embeds",
        &clip.image_features(pixels, images).unwrap(),
        &r.f32("fp32.image_embeds"),
        FP32_VS_TORCH,
    );
    let texts = r.texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_within("fp32 text_embeds", &clip.text_features(&texts).unwrap(), &r.f32("fp32.text_embeds"), FP32_VS_TORCH);

    // The ids the graph was fed are the reference's.
    let (ids, shape) = r.tensors.i64_values("input_ids").unwrap();
    for (i, text) in texts.iter().enumerate() {
        let ours = lens_models::tokenizer::TextTokenizer::encode(&clip.tokenizer, text).unwrap();
        let row: Vec<u32> = ids[i * shape[1]..(i + 1) * shape[1]].iter().map(|&x| x as u32).collect();
        assert_eq!(ours.ids, row, "ids of {text:?}");
    }
}

#[test]
fn fp32_graphs_match_the_burn_pipeline_on_decoded_photos() {
    let r = Reference::load();
    let clip = OnnxClip::load(&export("fp32")).unwrap();
    let burn: ClipPipeline<NdArray<f32>> =
        ClipPipeline::load(ClipFiles::read_dir(&fixtures().join("clip-tiny-quickgelu")).unwrap(), &Default::default())
            .unwrap();
    // 12 photos twice: more than one MAX_BATCH chunk.
    let mut images = r.images();
    images.extend(images.clone());
    let ours = clip.embed_images(&images).unwrap();
    assert_eq!(ours.len(), 24);
    assert_eq!(ours[..12], ours[12..], "chunking changed the embeddings");
    assert_within("images vs burn", &ours.concat(), &burn.embed_images(&images).unwrap().concat(), FP32_VS_BURN);
    let texts = r.texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = clip.embed_texts(&texts).unwrap();
    assert_within("texts vs burn", &ours.concat(), &burn.embed_texts(&texts).unwrap().concat(), FP32_VS_BURN);
    for e in &ours {
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn int8_graphs_match_onnxruntime_and_keep_fp32_accuracy() {
    let r = Reference::load();
    let clip = OnnxClip::load(&export("int8")).unwrap();
    assert_eq!(clip.precision(), OnnxPrecision::Int8);
    let n_images = r.strings("images").len();
    let texts = r.texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let images = clip.image_features(r.f32("pixel_values"), n_images).unwrap();
    let text = clip.text_features(&texts).unwrap();
    assert_within("int8 image_embeds vs onnxruntime", &images, &r.f32("int8.image_embeds"), INT8_VS_ORT);
    assert_within("int8 text_embeds vs onnxruntime", &text, &r.f32("int8.text_embeds"), INT8_VS_ORT);

    let (fp32_images, fp32_text) = (r.f32("fp32.image_embeds"), r.f32("fp32.text_embeds"));
    let d = clip.dim();
    let (images, text, fp32_images, fp32_text) =
        (rows(&images, d), rows(&text, d), rows(&fp32_images, d), rows(&fp32_text, d));
    let worst = images
        .iter()
        .zip(&fp32_images)
        .chain(text.iter().zip(&fp32_text))
        .map(|(a, b)| cosine(a, b))
        .fold(1.0, f64::min);
    eprintln!("int8 vs fp32: lowest cosine {worst:.5}");
    assert!(worst >= INT8_MIN_COSINE, "int8 vs fp32 cosine {worst} < {INT8_MIN_COSINE}");
    // Text → photo search.
    for (t, (q, q32)) in text.iter().zip(&fp32_text).enumerate() {
        let (ours, theirs) = (ranking(q, &images), ranking(q32, &fp32_images));
        let overlap = ours[..10].iter().filter(|i| theirs[..10].contains(i)).count();
        assert!(overlap >= INT8_MIN_TOP10_OVERLAP, "text {t}: top-10 overlap {overlap}/10: {ours:?} vs {theirs:?}");
        assert_order_kept(&format!("text {t} → photos"), q, &images, q32, &fp32_images);
    }
    // Photo → text and photo → photo (the query itself left out).
    for (i, (q, q32)) in images.iter().zip(&fp32_images).enumerate() {
        let (ours, theirs) = (ranking(q, &text), ranking(q32, &fp32_text));
        assert_eq!(ours[0], theirs[0], "top text of photo {i}: int8 {ours:?}, fp32 {theirs:?}");
        assert_order_kept(&format!("photo {i} → texts"), q, &text, q32, &fp32_text);
        let (others, others32) = (without(&images, i), without(&fp32_images, i));
        assert_order_kept(&format!("photo {i} → photos"), q, &others, q32, &others32);
    }
}

fn without<'a>(all: &[&'a [f32]], i: usize) -> Vec<&'a [f32]> {
    all.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, v)| *v).collect()
}

/// Every two candidates whose fp32 scores differ by more than [`INT8_ORDER_KEPT_ABOVE`] keep their order.
fn assert_order_kept(what: &str, q: &[f32], candidates: &[&[f32]], q32: &[f32], fp32: &[&[f32]]) {
    let ours: Vec<f64> = candidates.iter().map(|c| cosine(q, c)).collect();
    let theirs: Vec<f64> = fp32.iter().map(|c| cosine(q32, c)).collect();
    for a in 0..ours.len() {
        for b in 0..ours.len() {
            if theirs[a] - theirs[b] > INT8_ORDER_KEPT_ABOVE {
                assert!(
                    ours[a] > ours[b],
                    "{what}: fp32 puts {a} above {b} ({:.4} > {:.4}), int8 does not ({:.4} <= {:.4})",
                    theirs[a],
                    theirs[b],
                    ours[a],
                    ours[b]
                );
            }
        }
    }
}

#[test]
fn artifact_round_trip_embeds_as_the_files_do() {
    let r = Reference::load();
    let texts = r.texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let images = r.images();
    for (precision, expected) in [("fp32", OnnxPrecision::Fp32), ("int8", OnnxPrecision::Int8)] {
        let files = export(precision);
        let source =
            ArtifactSource { id: format!("clip-tiny-onnx@{}", files.graphs_sha256()), name: "clip-tiny-onnx".into() };
        let artifact = Artifact::parse(files.to_artifact(source).unwrap()).unwrap();
        assert_eq!(artifact.engine(), Engine::Onnx);
        assert_eq!(artifact.header().meta["precision"], expected.as_str());
        let packed = OnnxClip::from_artifact(&artifact).unwrap();
        let direct = OnnxClip::from_files(files.visual.clone(), files.textual.clone(), files).unwrap();
        assert_eq!(packed.precision(), expected);
        assert_eq!(packed.embed_texts(&texts).unwrap(), direct.embed_texts(&texts).unwrap(), "{precision} texts");
        assert_eq!(packed.embed_images(&images).unwrap(), direct.embed_images(&images).unwrap(), "{precision} images");
    }
}

fn err_of(files: &OnnxClipFiles) -> String {
    OnnxClip::load(files).unwrap_err().to_string()
}

#[test]
fn bad_graphs_and_artifacts_are_refused_with_reasons() {
    let good = export("fp32");

    // Graphs swapped: the visual graph's input is named for what it is not.
    let swapped = OnnxClipFiles { visual: good.textual.clone(), textual: good.visual.clone(), ..good.clone() };
    let err = err_of(&swapped);
    assert!(err.contains(VISUAL) && err.contains("input_ids") && err.contains("pixel_values"), "{err}");

    // A graph that is not ONNX at all.
    let junk = OnnxClipFiles { textual: b"not a protobuf at all".to_vec(), ..good.clone() };
    let err = err_of(&junk);
    assert!(err.contains(TEXTUAL), "{err}");

    // A config whose projection size is not the graphs' output size.
    let mut config: serde_json::Value = serde_json::from_slice(&good.config).unwrap();
    config["projection_dim"] = 32.into();
    let wrong_dim = OnnxClipFiles { config: serde_json::to_vec(&config).unwrap(), ..good.clone() };
    let err = err_of(&wrong_dim);
    assert!(err.contains("projection_dim") && err.contains("32"), "{err}");

    // Inputs the graphs cannot take.
    let clip = OnnxClip::load(&good).unwrap();
    assert!(clip.image_features(vec![0.0; 10], 1).is_err());
    assert!(clip.image_features(Vec::new(), 0).is_err());
    assert!(clip.text_features(&[]).is_err());

    // An artifact for another engine, and one without its textual graph.
    let source = ArtifactSource { id: "x@1".into(), name: "x".into() };
    let mut w = ArtifactWriter::new(Engine::BurnInt8, "clip", source.clone());
    w.add_bytes(VISUAL, &good.visual).unwrap();
    let err = OnnxClip::from_artifact(&Artifact::parse(w.finish().unwrap()).unwrap()).unwrap_err().to_string();
    assert!(err.contains("burn-int8"), "{err}");
    let mut w = ArtifactWriter::new(Engine::Onnx, "clip", source);
    for (name, bytes) in [(VISUAL, &good.visual), ("config.json", &good.config), ("tokenizer.json", &good.tokenizer)] {
        w.add_bytes(name, bytes).unwrap();
    }
    w.add_bytes("preprocessor_config.json", &good.preprocessor_config).unwrap();
    let err = OnnxClip::from_artifact(&Artifact::parse(w.finish().unwrap()).unwrap()).unwrap_err().to_string();
    assert!(err.contains(TEXTUAL), "{err}");
}
