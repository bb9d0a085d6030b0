//! Decoder and pre-processor corners, against Pillow 13.0.0 / transformers 5.23.0 outputs made by
//! `tests/data/generate_edge_cases.py`: every PNG colour type and bit depth, tRNS, short palettes,
//! interlacing, GIF transparency / offsets / local palettes / animation, WebP with alpha, EXIF and XMP
//! orientations in PNG / WebP / JPEG, JPEG subsampling, progressive and CMYK, resize corners
//! (upscaling, zero padding, one-pass resizes, every Pillow filter, every `size` form), and graded
//! transparency in every form Pillow reads (`alpha_*`: RGBA / LA at 8 and 16 bits, palette tRNS alpha,
//! grey and RGB colour keys at every bit depth, GIF transparent indices, WebP alpha; one file with every
//! (level, alpha) pair), composited onto white as the processors' `convert_to_rgb` does.
//!
//! Tolerance: 0 — every file decodes to exactly `convert_to_rgb(exif_transpose(Image.open(path)))`'s
//! pixels (for opaque files, `load_image`'s) and every case pre-processes to exactly
//! `CLIPImageProcessor`'s / `BlipImageProcessor`'s values. Inputs are embedded in `expected.safetensors`
//! (`<stem>.file`), so this runs on wasm32 too.

use crate::common::{Diff, edge_meta, edge_tensors};
use lens_core::image::{DecodeLimits, decode_image, probe_image};
use lens_core::preprocess::{ClipImageProcessor, ClipImageProcessorConfig};
use lens_core::resample;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn decodes_like_the_image_processors() {
    let meta = edge_meta();
    let expected = edge_tensors();
    let mut table = String::from("\nedge-case decodes vs convert_to_rgb(exif_transpose(open)) (tolerance 0):\n");
    let mut failures = Vec::new();
    for (stem, info) in meta["images"].as_object().unwrap() {
        let file = info["file"].as_str().unwrap();
        let bytes = expected.get(&format!("{stem}.file")).data;
        let reference = expected.get(&format!("{stem}.rgb_u8"));
        let ours = match decode_image(&bytes, &DecodeLimits::default()) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        if (ours.height as usize, ours.width as usize) != (reference.shape[0], reference.shape[1]) {
            failures.push(format!("{file}: {}x{}, expected {:?}", ours.width, ours.height, reference.shape));
            continue;
        }
        let diff = Diff::of(&ours.data, &reference.data);
        table += &format!("  {file:<32} {:<5} {diff}\n", info["pil_mode"].as_str().unwrap());
        if diff.count > 0 {
            failures.push(format!("{file}: {diff}"));
        }
        let probed = probe_image(&bytes, &DecodeLimits::default()).unwrap();
        let (w, h) = probed.oriented_dimensions();
        if !file.starts_with("gif_frame_beyond") && (w, h) != (ours.width, ours.height) {
            failures.push(format!("{file}: probe says {w}x{h} (orientation {})", probed.orientation));
        }
    }
    eprint!("{table}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn preprocesses_like_clip_image_processor() {
    let meta = edge_meta();
    let expected = edge_tensors();
    let mut table = String::from("\nresize cases vs CLIPImageProcessor (tolerance 0):\n");
    let mut failures = Vec::new();
    for (case, info) in meta["resize_cases"].as_object().unwrap() {
        let config: ClipImageProcessorConfig = serde_json::from_value(info["config"].clone()).unwrap();
        let input = expected.get(&format!("{}.file", info["image"].as_str().unwrap())).data;
        let img = decode_image(&input, &DecodeLimits::default()).unwrap();
        let reference = expected.get(&format!("{case}.u8"));
        let ours = match config.fixed_output_size() {
            Some(_) => ClipImageProcessor::new(config.clone()).resize_and_crop(&img),
            None => {
                // No fixed output size (no crop): not a batching processor; check the resize directly.
                assert!(!config.do_center_crop);
                let (h, w) = config.resize_output_size(img.width, img.height);
                resample::resize(&img, w, h, config.resample.0)
            }
        };
        assert_eq!(reference.shape, vec![3, ours.height as usize, ours.width as usize], "{case}");
        let diff = Diff::of(&ours.data, &reference.chw_to_hwc());
        table += &format!("  {case:<24} {}x{:<4} {diff}\n", ours.width, ours.height);
        if diff.count > 0 {
            failures.push(format!("{case}: {diff}"));
        }
        let name = format!("{case}.pixel_values");
        if expected.has(&name) {
            let values = ClipImageProcessor::new(config).preprocess(&img);
            let max = values.iter().zip(expected.get(&name).f32()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            table += &format!("  {case:<24} pixel_values max |diff| {max:e}\n");
            if max > 0.0 {
                failures.push(format!("{case} pixel_values: {max}"));
            }
        }
    }
    eprint!("{table}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn preprocesses_like_blip_image_processor() {
    let meta = edge_meta();
    let expected = edge_tensors();
    let mut table = String::from("\nBLIP cases vs BlipImageProcessor (tolerance 0):\n");
    let mut failures = Vec::new();
    let cases = meta["blip_cases"].as_object().unwrap();
    assert!(!cases.is_empty());
    for (case, info) in cases {
        let config = serde_json::to_vec(&info["config"]).unwrap();
        let processor = ClipImageProcessor::from_json_blip(&config).unwrap();
        assert!(!processor.config().do_center_crop, "{case}");
        let input = expected.get(&format!("{}.file", info["image"].as_str().unwrap())).data;
        let img = decode_image(&input, &DecodeLimits::default()).unwrap();
        let reference = expected.get(&format!("{case}.u8"));
        let ours = processor.resize_and_crop(&img);
        assert_eq!(reference.shape, vec![3, ours.height as usize, ours.width as usize], "{case}");
        let diff = Diff::of(&ours.data, &reference.chw_to_hwc());
        let values = processor.preprocess(&img);
        let max = values
            .iter()
            .zip(expected.get(&format!("{case}.pixel_values")).f32())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        table += &format!("  {case:<26} {}x{:<4} {diff}, pixel_values max |diff| {max:e}\n", ours.width, ours.height);
        if diff.count > 0 || max > 0.0 {
            failures.push(format!("{case}: {diff}, pixel_values {max}"));
        }
    }
    eprint!("{table}");
    assert!(failures.is_empty(), "{failures:#?}");
}
