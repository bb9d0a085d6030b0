//! The int8 CLIP against fp32 at full size: ViT-B/32 with deterministic random weights, quantized by
//! `quantize_clip` (what `lens models quantize` runs), on 1,008 images (the 12 real photos of
//! `models/fixtures/images/` × 84 deterministic augmentations) and 60 texts.
//!
//! Bars: cosine(int8, fp32) ≥ 0.99 for every image and text embedding; top-10 overlap between the fp32
//! index and the int8 index (lens-index `ExactIndex`) ≥ 9/10 on average over 120 queries (60 text, 60
//! image; an image query leaves itself out). The figures are printed; README quotes them.
//!
//! Random weights can make a model whose outputs barely depend on the input, and then neighbour lists
//! mean nothing: the weights here follow CLIP's initialisation scale (LayerNorm gains 1, matrices with
//! std 1/sqrt(fan-in)), and the test prints how spread out the fp32 embeddings are (mean pairwise
//! cosine, and the score gap between the 10th and 11th neighbours) and requires real spread.
//!
//! Embedding 1,008 images twice with a full-size ViT-B/32 took 52 minutes on this 2-core machine (with
//! CI running beside it), more than the CI budget allows, so the test is ignored by default and run by
//! hand:
//!
//! cargo test --release -p lens --test integration quant_accuracy:: -- --ignored --nocapture
//!
//! Last run (2026-11-24): image cosine min 0.99970 (mean 0.99981, n = 1008); text cosine min 0.99964
//! (mean 0.99973, n = 60); top-10 overlap mean 9.43 (min 8, n = 120); fp32 mean pairwise cosine of
//! unrelated images 0.51.

use burn::backend::NdArray;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_core::rng::SplitMix64;
use lens_index::{ExactIndex, VectorIndex};
use lens_models::artifact::{Artifact, ArtifactSource};
use lens_models::clip::{ClipConfig, ClipFiles, ClipPipeline};
use lens_models::clip::{clip_tensor_shapes, quantize_clip};

type B = NdArray<f32>;

const MIN_COSINE: f64 = 0.99;
const MIN_MEAN_OVERLAP: f64 = 9.0;
const AUGMENTATIONS: usize = 84;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn uniform(rng: &mut SplitMix64) -> f32 {
    ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// ViT-B/32's tensors with CLIP-like initial scales, as safetensors bytes under the published names.
fn random_checkpoint(config: &ClipConfig) -> Vec<u8> {
    let shapes = clip_tensor_shapes(config).unwrap();
    let mut rng = SplitMix64::new(0x5EED);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let is_norm = name.contains("norm") || name.contains("layrnorm");
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let u = uniform(&mut rng) * 3f32.sqrt(); // unit variance
                    if name == "logit_scale" {
                        2.6592
                    } else if is_norm && name.ends_with(".weight") {
                        1.0 + 0.1 * u
                    } else if name.ends_with(".bias") || is_norm {
                        0.02 * u
                    } else if name.contains("position_embedding") || name.contains("token_embedding") {
                        0.02 * u
                    } else if name.ends_with("class_embedding") {
                        0.5 * u
                    } else {
                        u / (fan_in as f32).sqrt()
                    }
                })
                .collect();
            (name, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .collect();
    safetensors_f32(&data)
}

/// The safetensors format by hand (u64 header length, JSON header, data): f32 tensors only.
fn safetensors_f32(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()] }),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    for (_, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

fn files(config: &ClipConfig) -> ClipFiles {
    let fixtures = root().join("models/fixtures");
    ClipFiles {
        config: b"{}".to_vec(), // every default: openai/clip-vit-base-patch32
        weights: vec![("model.safetensors".into(), random_checkpoint(config))],
        tokenizer: std::fs::read(fixtures.join("clip-tiny-quickgelu/tokenizer.json")).unwrap(),
        tokenizer_config: Some(std::fs::read(fixtures.join("clip-tiny-quickgelu/tokenizer_config.json")).unwrap()),
        preprocessor_config: std::fs::read(fixtures.join("preprocess/preprocessor_config.json")).unwrap(),
    }
}

/// One deterministic variant of `img`: crop, flip, quarter turns, brightness, contrast, colour cast.
fn augment(img: &RgbImage, rng: &mut SplitMix64) -> RgbImage {
    let mut r = |lo: f32, hi: f32| lo + (uniform(rng) * 0.5 + 0.5) * (hi - lo);
    let (w, h) = (img.width as usize, img.height as usize);
    let scale = r(0.5, 1.0);
    let (cw, ch) = (((w as f32 * scale) as usize).max(8), ((h as f32 * scale) as usize).max(8));
    let (x0, y0) = ((r(0.0, 1.0) * (w - cw) as f32) as usize, (r(0.0, 1.0) * (h - ch) as f32) as usize);
    let flip = r(0.0, 1.0) < 0.5;
    let turns = (r(0.0, 4.0) as usize).min(3);
    let brightness = r(-40.0, 40.0);
    let contrast = r(0.7, 1.3);
    let cast = [r(0.85, 1.15), r(0.85, 1.15), r(0.85, 1.15)];
    let (ow, oh) = if turns % 2 == 1 { (ch, cw) } else { (cw, ch) };
    let mut data = vec![0u8; ow * oh * 3];
    for oy in 0..oh {
        for ox in 0..ow {
            // Output pixel → crop pixel (undo the turns, then the flip).
            let (mut x, y) = match turns {
                0 => (ox, oy),
                1 => (oy, ch - 1 - ox),
                2 => (cw - 1 - ox, ch - 1 - oy),
                _ => (cw - 1 - oy, ox),
            };
            if flip {
                x = cw - 1 - x;
            }
            let p = img.pixel((x0 + x) as u32, (y0 + y) as u32);
            for c in 0..3 {
                let v = ((p[c] as f32 - 128.0) * contrast + 128.0 + brightness) * cast[c];
                data[(oy * ow + ox) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::new(ow as u32, oh as u32, data).unwrap()
}

fn photos() -> Vec<RgbImage> {
    let mut names: Vec<_> =
        std::fs::read_dir(root().join("models/fixtures/images")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let photos: Vec<RgbImage> =
        names.iter().filter_map(|p| decode_image(&std::fs::read(p).unwrap(), &DecodeLimits::default()).ok()).collect();
    assert_eq!(photos.len(), 12, "the 12 decodable photos of models/fixtures/images");
    photos
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn index(rows: &[Vec<f32>]) -> ExactIndex {
    let mut index = ExactIndex::new(rows[0].len());
    for (i, r) in rows.iter().enumerate() {
        index.insert(i as u64, r).unwrap();
    }
    index
}

/// Ids of the `k` nearest, leaving out `skip`.
fn top(index: &ExactIndex, q: &[f32], k: usize, skip: Option<u64>) -> Vec<(u64, f32)> {
    let hits = index.search(q, k + 1, None).unwrap();
    hits.into_iter().filter(|h| Some(h.id) != skip).take(k).map(|h| (h.id, h.score)).collect()
}

fn summary(name: &str, v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!("{name}: n = {}, min {min:.5}, mean {mean:.5}", v.len());
    (min, mean)
}

#[test]
#[ignore = "full-size ViT-B/32 on 1,008 images, fp32 and int8: most of an hour on 2 cores; run with --ignored"]
fn int8_vit_b32_matches_fp32_on_a_thousand_images() {
    let started = std::time::Instant::now();
    let config = ClipConfig::vit_base_patch32();
    let files = files(&config);
    let source = ArtifactSource { id: "random-vit-b32@test".into(), name: "random-vit-b32".into() };
    let artifact = quantize_clip(files.clone(), source).unwrap();
    println!("artifact {} bytes, fp32 checkpoint {} bytes", artifact.len(), files.weights[0].1.len());
    let device = Default::default();
    let int8 = ClipPipeline::<B>::from_artifact(Artifact::parse(artifact).unwrap(), &device).unwrap();
    let fp32 = ClipPipeline::<B>::load(files, &device).unwrap();

    let mut rng = SplitMix64::new(42);
    let images: Vec<RgbImage> =
        photos().iter().flat_map(|p| (0..AUGMENTATIONS).map(|_| augment(p, &mut rng)).collect::<Vec<_>>()).collect();
    assert!(images.len() >= 1000);
    let subjects = ["cat", "dog", "rocket", "astronaut", "cup of coffee", "coins", "camera", "city", "beach", "forest"];
    let templates = [
        "a photo of a {}",
        "a blurry picture of the {}",
        "{} on a table",
        "a close-up of a {}",
        "a drawing of a {}",
        "the {} at night",
    ];
    let texts: Vec<String> = subjects.iter().flat_map(|s| templates.iter().map(move |t| t.replace("{}", s))).collect();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let t = std::time::Instant::now();
    let img32 = fp32.embed_images(&images).unwrap();
    let fp32_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let img8 = int8.embed_images(&images).unwrap();
    let int8_secs = t.elapsed().as_secs_f64();
    println!(
        "{} images: fp32 {:.1} ms/image, int8 {:.1} ms/image (batch 16, this machine)",
        images.len(),
        1e3 * fp32_secs / images.len() as f64,
        1e3 * int8_secs / images.len() as f64
    );
    let txt32 = fp32.embed_texts(&text_refs).unwrap();
    let txt8 = int8.embed_texts(&text_refs).unwrap();

    let image_cos: Vec<f64> = img32.iter().zip(&img8).map(|(a, b)| cosine(a, b)).collect();
    let text_cos: Vec<f64> = txt32.iter().zip(&txt8).map(|(a, b)| cosine(a, b)).collect();
    let (img_min, _) = summary("image cosine int8 vs fp32", &image_cos);
    let (txt_min, _) = summary("text cosine int8 vs fp32", &text_cos);

    // Spread of the fp32 embeddings: neighbours only mean something if images differ.
    let pairs: Vec<f64> =
        (0..200).map(|i| cosine(&img32[(i * 37) % img32.len()], &img32[(i * 53 + 7) % img32.len()])).collect();
    let (_, mean_pair) = summary("fp32 cosine between unrelated images", &pairs);

    let (index32, index8) = (index(&img32), index(&img8));
    let mut overlaps = Vec::new();
    let mut gaps = Vec::new();
    let queries: Vec<(Vec<f32>, Vec<f32>, Option<u64>)> = txt32
        .iter()
        .zip(&txt8)
        .map(|(a, b)| (a.clone(), b.clone(), None))
        .chain((0..60).map(|i| {
            let id = (i * 17) % img32.len();
            (img32[id].clone(), img8[id].clone(), Some(id as u64))
        }))
        .collect();
    for (q32, q8, skip) in &queries {
        let a = top(&index32, q32, 11, *skip);
        let b = top(&index8, q8, 10, *skip);
        gaps.push((a[9].1 - a[10].1) as f64);
        let overlap = a[..10].iter().filter(|(id, _)| b.iter().any(|(j, _)| j == id)).count();
        overlaps.push(overlap as f64);
    }
    let (min_overlap, mean_overlap) = summary("top-10 overlap fp32 vs int8 index (of 10)", &overlaps);
    summary("fp32 score gap between 10th and 11th neighbour", &gaps);
    println!("min overlap {min_overlap}, total {:.0} s", started.elapsed().as_secs_f64());

    assert!(img_min >= MIN_COSINE, "an image embedding has cosine {img_min:.5} < {MIN_COSINE}");
    assert!(txt_min >= MIN_COSINE, "a text embedding has cosine {txt_min:.5} < {MIN_COSINE}");
    assert!(mean_overlap >= MIN_MEAN_OVERLAP, "mean top-10 overlap {mean_overlap:.2} < {MIN_MEAN_OVERLAP}");
    assert!(mean_pair < 0.95, "the random model is degenerate: unrelated images have cosine {mean_pair:.4}");
}
