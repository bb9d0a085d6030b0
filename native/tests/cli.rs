//! The `lens` binary as other tools call it: embed, classify, caption, and one-line errors.
//!
//! End-to-end numbers are checked against the reference: `lens embed` on a PNG (lossless decode, and
//! pre-processing exact to 8 bits) must give the reference's normalised image embedding within 1e-4
//! relative L2, and text embeddings likewise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REL_L2_TOLERANCE: f64 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model(name: &str) -> String {
    root().join("models/fixtures").join(name).display().to_string()
}

fn image(name: &str) -> String {
    root().join("models/fixtures/images").join(name).display().to_string()
}

fn lens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lens")).args(args).output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "lens failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// A `[rows, cols]` tensor from a fixture model's `reference.safetensors`, as rows.
fn reference(model_name: &str, tensor: &str) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(root().join("models/fixtures").join(model_name).join("reference.safetensors")).unwrap();
    let weights = lens_models::weights::Weights::from_buffers(vec![("reference".into(), bytes)]).unwrap();
    let shape = weights.shape(tensor).unwrap().to_vec();
    weights.f32_values(tensor, &shape).unwrap().chunks(shape[1]).map(<[f32]>::to_vec).collect()
}

/// The same, rows L2-normalised.
fn reference_rows(model_name: &str, tensor: &str) -> Vec<Vec<f32>> {
    reference(model_name, tensor).into_iter().map(lens_core::vector::normalized).collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn embed_images_matches_reference_end_to_end() {
    for name in ["clip-tiny-quickgelu", "clip-tiny-gelu"] {
        let out =
            lines(&lens(&["embed", "--model", &model(name), "--image", &image("astronaut.png"), &image("rocket.jpg")]));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["input"], image("astronaut.png"));
        let ours = floats(&out[0]["embedding"]);
        let norm: f32 = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        // astronaut.png is the first reference image: PNG decoding and resizing are exact.
        let reference = reference_rows(name, "image_embeds");
        let err = rel_l2(&ours, &reference[0]);
        assert!(err <= REL_L2_TOLERANCE, "{name}: astronaut.png embedding off by {err:.3e}");
        // rocket.jpg goes through a JPEG decoder other than libjpeg-turbo: close, not identical.
        let err = rel_l2(&floats(&out[1]["embedding"]), &reference[1]);
        assert!(err <= 2e-2, "{name}: rocket.jpg embedding off by {err:.3e}");
    }
}

#[test]
fn embed_texts_matches_reference() {
    let name = "clip-tiny-gelu";
    let out = lines(&lens(&["embed", "--model", &model(name), "--text", "a photo of a cat", "a photo of a dog"]));
    let reference = reference_rows(name, "text_embeds");
    for (i, line) in out.iter().enumerate() {
        let err = rel_l2(&floats(&line["embedding"]), &reference[i]);
        assert!(err <= REL_L2_TOLERANCE, "text {i}: {err:.3e}");
    }
    assert_eq!(out[1]["input"], "a photo of a dog");
}

#[test]
fn classify_prints_softmax_over_labels() {
    let out = lines(&lens(&[
        "classify",
        "--model",
        &model("clip-tiny-gelu"),
        "--image",
        &image("astronaut.png"),
        "--labels",
        "a photo of a cat, a photo of a dog,an astronaut in a white space suit",
    ]));
    let labels: Vec<&str> = out[0]["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(labels, ["a photo of a cat", "a photo of a dog", "an astronaut in a white space suit"]);
    let probs = floats(&out[0]["probs"]);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    // Same numbers as softmax(logits_per_image[0][..3]) from the reference.
    let logits = &reference("clip-tiny-gelu", "logits_per_image")[0];
    let expected = lens_core::vector::softmax(&logits[..3]);
    for (p, e) in probs.iter().zip(&expected) {
        assert!((p - e).abs() < 1e-4, "{probs:?} vs {expected:?}");
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let out = lens(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "error must be one line: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout after an error");
}

#[test]
fn errors_are_one_clear_line() {
    let m = model("clip-tiny-gelu");
    fails_with(&["embed", "--model", &m, "--image", "/nonexistent.png"], "/nonexistent.png");
    fails_with(&["embed", "--model", &m, "--image", &image("not_an_image.jpg")], "not_an_image.jpg");
    fails_with(&["embed", "--model", &m, "--image", &image("corrupt_truncated.jpg")], "corrupt_truncated.jpg");
    fails_with(&["embed", "--model", "/nonexistent-model", "--text", "x"], "/nonexistent-model");
    // A directory that is not a CLIP checkpoint.
    fails_with(
        &["embed", "--model", &root().join("models/fixtures/images").display().to_string(), "--text", "x"],
        "model",
    );
    fails_with(&["classify", "--model", &m, "--image", &image("astronaut.png"), "--labels", " , "], "label");
    #[cfg(not(feature = "wgpu"))]
    fails_with(&["embed", "--model", &m, "--device", "wgpu", "--text", "x"], "not compiled");
}

/// The same model on burn-wgpu (Vulkan; Mesa's lavapipe on machines without a GPU) gives the
/// reference's numbers within the same 1e-4 relative L2.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_device_matches_reference() {
    for name in ["clip-tiny-quickgelu", "clip-tiny-gelu"] {
        let out =
            lines(&lens(&["embed", "--device", "wgpu", "--model", &model(name), "--image", &image("astronaut.png")]));
        let err = rel_l2(&floats(&out[0]["embedding"]), &reference_rows(name, "image_embeds")[0]);
        eprintln!("{name} on wgpu: image embedding relative L2 error {err:.2e}");
        assert!(err <= REL_L2_TOLERANCE, "{name} on wgpu: {err:.3e}");
        let out = lines(&lens(&["embed", "--device", "wgpu", "--model", &model(name), "--text", "a photo of a cat"]));
        let err = rel_l2(&floats(&out[0]["embedding"]), &reference_rows(name, "text_embeds")[0]);
        eprintln!("{name} on wgpu: text embedding relative L2 error {err:.2e}");
        assert!(err <= REL_L2_TOLERANCE, "{name} on wgpu: {err:.3e}");
    }
}

/// `generate()`'s captions for a case of the BLIP fixture, one per reference image
/// (astronaut.png, coffee.jpg, chelsea_rgba.png).
fn reference_captions(case: &str) -> Vec<String> {
    let json = std::fs::read(root().join("models/fixtures/blip-tiny/reference.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&json).unwrap();
    serde_json::from_value(meta["generation"]["cases"][case]["decoded"].clone()).unwrap()
}

/// `lens caption` on PNG files (lossless decode, exact BLIP pre-processing) on `device`: the reference's
/// captions, greedy with a prompt and unconditional beam search, and a bad file reported on its own line.
fn caption_cli_matches_reference(device: &str) {
    let m = model("blip-tiny");
    let (astronaut, chelsea) = (image("astronaut.png"), image("chelsea_rgba.png"));
    let greedy = lines(&lens(&[
        "caption",
        "--device",
        device,
        "--model",
        &m,
        "--prompt",
        "a picture of",
        "--beams",
        "1",
        "--max-new-tokens",
        "20",
        &astronaut,
        &chelsea,
    ]));
    let expected = reference_captions("greedy_prompt");
    assert_eq!(greedy.len(), 2);
    assert_eq!(greedy[0]["input"], astronaut);
    assert_eq!(greedy[0]["caption"], expected[0]);
    assert_eq!(greedy[1]["caption"], expected[2]);

    let beam = lines(&lens(&[
        "caption",
        "--device",
        device,
        "--model",
        &m,
        "--beams",
        "3",
        "--max-new-tokens",
        "20",
        &astronaut,
        &chelsea,
    ]));
    let expected = reference_captions("beam3");
    assert_eq!(
        (beam[0]["caption"].as_str().unwrap(), beam[1]["caption"].as_str().unwrap()),
        (&*expected[0], &*expected[2])
    );

    // A bad file among good ones: its own error line, the others captioned, a failing exit.
    let out = lens(&["caption", "--device", device, "--model", &m, &astronaut, &image("not_an_image.jpg")]);
    assert!(!out.status.success());
    let printed: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(printed[0]["caption"].is_string(), "{printed:?}");
    assert!(printed[1]["error"].as_str().unwrap().contains("not_an_image.jpg"), "{printed:?}");
}

#[test]
fn caption_matches_reference_on_cpu() {
    caption_cli_matches_reference("cpu");
    fails_with(&["caption", "--model", &model("blip-tiny"), "--beams", "0", &image("astronaut.png")], "num_beams");
    fails_with(&["caption", "--model", "/nonexistent-model", &image("astronaut.png")], "/nonexistent-model");
}

/// The same captions from burn-wgpu (Mesa's lavapipe without a GPU).
#[cfg(feature = "wgpu")]
#[test]
fn caption_matches_reference_on_wgpu() {
    caption_cli_matches_reference("wgpu");
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// `lens models quantize` then `lens embed --model FILE`: within the int8 bar (cosine ≥ 0.99 to the
/// fp32 embedding of the same input) for images and texts, and `lens classify` takes the file too.
#[test]
fn quantized_artifact_embeds_like_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.lens");
    let out_s = out.display().to_string();
    let report = lines(&lens(&["models", "quantize", "--model", &model("clip-tiny-gelu"), "--out", &out_s]));
    let report = &report[0];
    assert_eq!(report["bytes"].as_u64().unwrap(), std::fs::metadata(&out).unwrap().len());
    // clip-tiny-gelu: 5 encoder layers (both towers) × 6 matrices, 2 projections, patch and token embeddings.
    assert_eq!(report["int8_tensors"], 34);
    assert!(report["source_id"].as_str().unwrap().starts_with("clip-tiny-gelu@sha256:"));
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    for args in [
        vec!["--image", &image("astronaut.png"), &image("rocket.jpg")],
        vec!["--text", "a photo of a cat", "a dog on the beach at night"],
    ] {
        let fp32 = lines(&lens(&[&["embed", "--model", &model("clip-tiny-gelu")][..], &args[..]].concat()));
        let int8 = lines(&lens(&[&["embed", "--model", &out_s][..], &args[..]].concat()));
        assert_eq!(fp32.len(), int8.len());
        for (a, b) in fp32.iter().zip(&int8) {
            assert_eq!(a["input"], b["input"]);
            let c = cosine(&floats(&a["embedding"]), &floats(&b["embedding"]));
            assert!(c >= 0.99, "{}: cosine {c:.5}", a["input"]);
        }
    }
    let probs = lines(&lens(&["classify", "--model", &out_s, "--image", &image("astronaut.png"), "--labels", "a,b"]));
    assert_eq!(probs[0]["probs"].as_array().unwrap().len(), 2);
}

#[test]
fn quantize_refuses_bad_input_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.lens");
    let out_s = out.display().to_string();
    let missing = dir.path().join("missing").display().to_string();
    fails_with(&["models", "quantize", "--model", &missing, "--out", &out_s], "no such directory");
    fails_with(&["models", "quantize", "--model", &model("blip-tiny"), "--out", &out_s], "expected `clip`");
    let unwritable = dir.path().join("no/such/dir/x.lens").display().to_string();
    fails_with(&["models", "quantize", "--model", &model("clip-tiny-gelu"), "--out", &unwritable], "cannot write");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a file was left behind");
    // A corrupted artifact is refused by `lens embed`, with the reason.
    let mut bytes = std::fs::read(root().join("models/fixtures/clip-tiny-quickgelu.int8.lens")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&out, bytes).unwrap();
    fails_with(&["embed", "--model", &out_s, "--text", "hi"], "checksum");
}
