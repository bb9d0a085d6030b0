//! Bad input: limits checked from headers before any pixel buffer exists, typed errors for truncated,
//! corrupt and unknown data, and no panics on mutated files.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common::{edge_meta, edge_tensors, fixture, fixture_image};
use lens_core::Error;
use lens_core::image::{DecodeLimits, ImageFormat, decode_image, probe_image};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// An input of the edge-case set (`tests/data/edge/`).
fn edge_file(stem: &str) -> Vec<u8> {
    edge_tensors().get(&format!("{stem}.file")).data
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

/// A PNG with only a signature and an IHDR claiming `width` x `height` (no pixel data at all).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    v.extend(width.to_be_bytes());
    v.extend(height.to_be_bytes());
    v.extend([8, 2, 0, 0, 0]);
    v.extend([0; 4]); // CRC, never checked: the guard runs first
    v
}

#[test]
fn huge_png_header_is_rejected_before_decoding() {
    // 10^10 pixels would take 30 GB; the header alone is enough to refuse (the file has no pixel data,
    // not even a valid CRC, so anything past the header check would fail differently).
    let err = decode_image(&png_claiming(100_000, 100_000), &limits()).unwrap_err();
    assert!(
        matches!(err, Error::TooManyPixels { width: 100_000, height: 100_000, limit } if limit == 64 << 20),
        "{err}"
    );
    assert_eq!(err.to_string(), "image is 100000x100000 (10000000000 pixels), over the limit of 67108864 pixels");
}

#[test]
fn huge_headers_in_every_format() {
    // JPEG: SOI, SOF0 8-bit 65535x65535, 1 component.
    let jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x11, 0x00];
    // GIF: logical screen 65535x65535.
    let gif = b"GIF89a\xFF\xFF\xFF\xFF\x00\x00\x00;";
    // WebP extended: canvas 16384x16384 (stored minus one, 24-bit little endian).
    let mut webp = b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00".to_vec();
    webp.extend([0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00]);
    for (name, bytes) in [("jpeg", &jpeg[..]), ("gif", &gif[..]), ("webp", &webp[..])] {
        let err = decode_image(bytes, &limits()).unwrap_err();
        assert!(matches!(err, Error::TooManyPixels { .. }), "{name}: {err}");
    }
    // A GIF whose first frame sits far outside a small screen: PIL grows the canvas, so do we, within limits.
    let mut far = b"GIF89a\x0a\x00\x0a\x00\x80\x00\x00".to_vec();
    far.extend([0; 6]); // 2-entry global palette
    far.extend(b"\x2c\x60\xea\x60\xea\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;"); // 1x1 frame at (60000, 60000)
    assert!(matches!(decode_image(&far, &limits()), Err(Error::TooManyPixels { width: 60001, height: 60001, .. })));
}

/// GIFs have a lower pixel limit than the other formats: a 6000² screen (36 megapixels) in about 40 bytes
/// is refused from its header, and the same canvas reached by a frame placed past a small screen is
/// refused before decoding it; a PNG of that size passes.
#[test]
fn gif_canvases_have_their_own_lower_limit() {
    let limits = limits();
    assert!(limits.max_gif_pixels < 36_000_000 && limits.max_pixels > 36_000_000);
    let screen = b"GIF89a\x70\x17\x70\x17\x00\x00\x00;"; // 6000x6000
    let err = probe_image(screen, &limits).unwrap_err();
    assert!(matches!(err, Error::TooManyPixels { width: 6000, height: 6000, limit } if limit == limits.max_gif_pixels));
    let mut far = b"GIF89a\x0a\x00\x0a\x00\x80\x00\x00".to_vec();
    far.extend([0; 6]);
    far.extend(b"\x2c\x6f\x17\x6f\x17\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;"); // 1x1 frame at (5999, 5999)
    assert!(probe_image(&far, &limits).is_ok(), "the screen alone is small");
    let err = decode_image(&far, &limits).unwrap_err();
    assert!(matches!(err, Error::TooManyPixels { width: 6000, height: 6000, .. }), "{err}");
    assert!(probe_image(&png_claiming(6000, 6000), &limits).is_ok());
    let raised = DecodeLimits { max_gif_pixels: 40_000_000, ..limits };
    assert!(probe_image(screen, &raised).is_ok());
}

#[test]
fn a_long_side_is_rejected() {
    let err = probe_image(&png_claiming(20_000, 2), &limits()).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { width: 20_000, height: 2, limit: 16384 }), "{err}");
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let small = DecodeLimits { max_bytes: 1000, ..limits() };
    let err = decode_image(fixture!("images/coffee.jpg"), &small).unwrap_err();
    assert!(matches!(err, Error::TooLarge { bytes: 72326, limit: 1000 }), "{err}");
}

#[test]
fn truncated_and_unknown_data() {
    let truncated = fixture!("images/corrupt_truncated.jpg");
    assert!(matches!(decode_image(truncated, &limits()), Err(Error::Corrupt { format: ImageFormat::Jpeg, .. })));
    let text = fixture!("images/not_an_image.jpg");
    assert!(matches!(decode_image(text, &limits()), Err(Error::UnsupportedFormat { format: None, .. })));
    assert!(matches!(decode_image(b"", &limits()), Err(Error::UnsupportedFormat { .. })));

    // Every fixture cut short at a few points is an error, never a panic, never a silent success.
    for file in ["coffee.jpg", "astronaut.png", "coffee_palette.gif", "coffee_lossy.webp", "astronaut_lossless.webp"] {
        let bytes = fixture_image(file);
        for fraction in [0.05, 0.3, 0.6, 0.9] {
            let cut = &bytes[..(bytes.len() as f64 * fraction) as usize];
            let result = decode_image(cut, &limits());
            assert!(
                matches!(result, Err(Error::Corrupt { .. } | Error::UnsupportedFormat { .. })),
                "{file} cut at {fraction}: {result:?}"
            );
        }
    }
}

#[test]
fn progressive_jpeg_without_end_marker_is_truncated() {
    // libjpeg must see EOI before producing a multi-scan image; Pillow reports it as truncated.
    let bytes = edge_file("jpeg_progressive");
    assert_eq!(&bytes[bytes.len() - 2..], [0xFF, 0xD9]);
    assert!(decode_image(&bytes, &limits()).is_ok());
    let err = decode_image(&bytes[..bytes.len() - 2], &limits()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { format: ImageFormat::Jpeg, .. }), "{err}");
    // A single-scan baseline file missing only its EOI still has every row: Pillow accepts it.
    let baseline = edge_file("jpeg_444");
    let full = decode_image(&baseline, &limits()).unwrap();
    assert_eq!(decode_image(&baseline[..baseline.len() - 2], &limits()).unwrap(), full);
}

#[test]
fn a_jpeg_whose_data_stops_at_a_marker_is_refused_unless_allowed() {
    // The scan cut halfway and the end-of-image marker put right after: libjpeg blanks the missing rows
    // and Pillow accepts the grey result; refused here by default (a few bytes must not become a large
    // grey image), decoded as libjpeg does with `allow_incomplete`.
    let whole = edge_file("jpeg_444");
    let sos = whole.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
    let mut cut = whole[..sos + (whole.len() - sos) / 2].to_vec();
    cut.extend([0xFF, 0xD9]);
    let err = decode_image(&cut, &limits()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { format: ImageFormat::Jpeg, detail } if detail.contains("before the image is complete")),
        "{err}"
    );
    let allowed = DecodeLimits { allow_incomplete: true, ..limits() };
    let (full, grey) = (decode_image(&whole, &limits()).unwrap(), decode_image(&cut, &allowed).unwrap());
    assert_eq!((grey.width, grey.height), (full.width, full.height));
    assert_ne!(grey, full, "the missing part is blank");
}

/// xorshift64*, so the mutations are the same on every run without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_files_never_panic() {
    // Every photo of models/fixtures/images and every edge-case input.
    let mut files: Vec<(String, Vec<u8>)> = [
        "astronaut.png",
        "astronaut_lossless.webp",
        "camera_grey.png",
        "chelsea_palette.png",
        "chelsea_rgba.png",
        "coffee.jpg",
        "coffee_exif3.jpg",
        "coffee_lossy.webp",
        "coffee_palette.gif",
        "coins_grey.jpg",
        "rocket.jpg",
        "rocket_exif6.jpg",
    ]
    .iter()
    .map(|f| (f.to_string(), fixture_image(f).to_vec()))
    .collect();
    for stem in edge_meta()["images"].as_object().unwrap().keys() {
        files.push((stem.clone(), edge_file(stem)));
    }
    let mut rng = Rng(0x5EED_1E45);
    let mut panics = Vec::new();
    let mut outcomes = [0_usize; 2];
    for (name, original) in &files {
        for round in 0..40 {
            let mut bytes = original.clone();
            // A few random byte changes, biased toward the headers where parsers branch the most.
            for _ in 0..1 + rng.below(4) {
                let span = if rng.below(2) == 0 { bytes.len().min(512) } else { bytes.len() };
                let at = rng.below(span);
                bytes[at] = rng.next() as u8;
            }
            if round % 5 == 0 {
                bytes.truncate(rng.below(bytes.len()) + 1);
            }
            match catch_unwind(AssertUnwindSafe(|| decode_image(&bytes, &limits()))) {
                Ok(result) => outcomes[usize::from(result.is_ok())] += 1,
                Err(_) => panics.push(format!("{name} round {round}")),
            }
        }
    }
    eprintln!("mutated files: {} decoded, {} rejected with an error", outcomes[1], outcomes[0]);
    assert!(panics.is_empty(), "panicked on: {panics:#?}");
}
