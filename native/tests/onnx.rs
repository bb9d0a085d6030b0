//! `lens models pack` and `lens embed` on ONNX CLIP exports (the tiny CLIP exported by
//! `models/generate_onnx_fixtures.py`).
//!
//! Tolerances: texts through the packed fp32 graphs vs PyTorch's normalised `get_text_features`:
//! relative L2 ≤ 1e-5 per embedding; a photo through the fp32 graphs vs the burn engine on the checkpoint
//! the graphs were exported from: ≤ 1e-4 (DESIGN.md's fp32 bar; the same decode and pre-processing);
//! int8 vs fp32: cosine ≥ 0.99 per embedding. An export directory and its packed artifact must give
//! identical embeddings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FP32_VS_TORCH: f64 = 1e-5;
const FP32_VS_BURN: f64 = 1e-4;
const INT8_MIN_COSINE: f64 = 0.99;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures")
}

fn export(precision: &str) -> String {
    fixtures().join("clip-tiny-onnx").join(precision).display().to_string()
}

fn image(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

fn lens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lens")).args(args).output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "lens failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn embeddings(o: &Output) -> Vec<Vec<f32>> {
    lines(o)
        .iter()
        .map(|l| l["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// `lens models pack` into `dir`; returns the artifact's path and the printed report.
fn pack(precision: &str, dir: &Path) -> (String, serde_json::Value) {
    let out = dir.join(format!("clip-tiny-{precision}.lens")).display().to_string();
    let report = lines(&lens(&["models", "pack", "--model", &export(precision), "--out", &out])).remove(0);
    (out, report)
}

#[test]
fn packed_exports_embed_like_pytorch_and_like_their_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = std::fs::read(fixtures().join("clip-tiny-onnx/reference.safetensors")).unwrap();
    let reference = lens_models::weights::Weights::from_buffers(vec![("reference".into(), reference)]).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("clip-tiny-onnx/reference.json")).unwrap()).unwrap();
    let texts: Vec<String> = meta["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().into()).collect();
    let shape = reference.shape("fp32.text_embeds").unwrap().to_vec();
    let torch: Vec<Vec<f32>> = reference
        .f32_values("fp32.text_embeds", &shape)
        .unwrap()
        .chunks(shape[1])
        .map(|r| lens_core::vector::normalized(r.to_vec()))
        .collect();

    let (fp32, report) = pack("fp32", tmp.path());
    assert_eq!(report["precision"], "fp32");
    assert_eq!(report["dim"], 24);
    let (int8, report) = pack("int8", tmp.path());
    assert_eq!(report["precision"], "int8");

    let mut args = vec!["embed", "--model", &fp32, "--text"];
    args.extend(texts.iter().map(String::as_str));
    let ours = embeddings(&lens(&args));
    assert_eq!(ours.len(), texts.len());
    for (i, (a, b)) in ours.iter().zip(&torch).enumerate() {
        let err = rel_l2(a, b);
        assert!(err <= FP32_VS_TORCH, "text {i}: relative L2 {err:.2e} vs PyTorch");
    }

    let photos = [image("astronaut.png"), image("coffee.jpg")];
    let embed_photos = |model: &str| embeddings(&lens(&["embed", "--model", model, "--image", &photos[0], &photos[1]]));
    let burn = embed_photos(&fixtures().join("clip-tiny-quickgelu").display().to_string());
    let onnx = embed_photos(&fp32);
    for (a, b) in onnx.iter().zip(&burn) {
        let err = rel_l2(a, b);
        assert!(err <= FP32_VS_BURN, "photo: relative L2 {err:.2e} vs the burn engine");
    }
    // The directory and the artifact are the same model.
    assert_eq!(embed_photos(&export("fp32")), onnx);
    let int8_photos = embed_photos(&int8);
    assert_eq!(embed_photos(&export("int8")), int8_photos);
    for (a, b) in int8_photos.iter().zip(&onnx) {
        let c = cosine(a, b);
        assert!(c >= INT8_MIN_COSINE, "int8 vs fp32 cosine {c}");
    }
}

#[test]
fn pack_refuses_what_is_not_an_onnx_export() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.lens").display().to_string();

    // A burn checkpoint directory has no graphs.
    let o = lens(&[
        "models",
        "pack",
        "--model",
        &fixtures().join("clip-tiny-quickgelu").display().to_string(),
        "--out",
        &out,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("visual.onnx"), "{err}");

    // Graphs swapped: the visual graph takes token ids.
    let dir = tmp.path().join("swapped");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(export("fp32")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let target = match name.as_str() {
            "visual.onnx" => "textual.onnx".to_string(),
            "textual.onnx" => "visual.onnx".to_string(),
            _ => name,
        };
        std::fs::copy(&path, dir.join(target)).unwrap();
    }
    let o = lens(&["models", "pack", "--model", &dir.display().to_string(), "--out", &out]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pixel_values") && err.contains("input_ids"), "{err}");
    assert!(!Path::new(&out).exists(), "a refused pack left a file behind");

    // Classification needs the logit scale, which ONNX exports do not carry: a clear error.
    let (fp32, _) = pack("fp32", tmp.path());
    let o = lens(&["classify", "--model", &fp32, "--image", &image("astronaut.png"), "--labels", "a,b"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("logit"), "{err}");
}
