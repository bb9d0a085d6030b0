//! Dominant colours: exact answers on synthetic images, the L*a*b* conversion against published values,
//! determinism, and the structure of the answer for a real photo.

use crate::common::fixture_image;
use lens_core::colors::{DominantColor, dominant_colors, lab_to_srgb, srgb_to_lab};
use lens_core::image::{DecodeLimits, RgbImage, decode_image};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const GREEN: [u8; 3] = [0, 255, 0];

/// Vertical stripes: 60% red, 30% blue, 10% green.
fn stripes(width: u32, height: u32) -> RgbImage {
    let data = (0..height)
        .flat_map(|_| {
            (0..width).map(move |x| {
                if x * 10 < width * 6 {
                    RED
                } else if x * 10 < width * 9 {
                    BLUE
                } else {
                    GREEN
                }
            })
        })
        .flatten()
        .collect();
    RgbImage::new(width, height, data).unwrap()
}

/// Checks what holds for every answer: order, share sum, hex and Lab consistent with `rgb`, distinct colours.
fn check_structure(colors: &[DominantColor]) {
    let sum: f32 = colors.iter().map(|c| c.share).sum();
    assert!((sum - 1.0).abs() <= 1e-6, "shares sum to {sum}");
    for (i, c) in colors.iter().enumerate() {
        assert!(c.share > 0.0);
        assert!(i == 0 || colors[i - 1].share >= c.share, "not sorted by share: {colors:?}");
        assert_eq!(c.hex, format!("#{:02x}{:02x}{:02x}", c.rgb[0], c.rgb[1], c.rgb[2]));
        assert_eq!(lab_to_srgb(c.lab), c.rgb);
        assert!(colors[..i].iter().all(|o| o.rgb != c.rgb), "duplicate colour: {colors:?}");
    }
}

#[test]
fn three_blocks_give_exactly_three_colours() {
    // 20x10 is read whole (exact shares); 300x200 is sampled on the 4096-point grid.
    for (w, h) in [(20, 10), (300, 200), (1000, 30)] {
        let colors = dominant_colors(&stripes(w, h), 5);
        check_structure(&colors);
        let got: Vec<([u8; 3], f32)> = colors.iter().map(|c| (c.rgb, c.share)).collect();
        assert_eq!(got.len(), 3, "{w}x{h}: {got:?}");
        for ((rgb, share), (want_rgb, want_share)) in got.iter().zip([(RED, 0.6), (BLUE, 0.3), (GREEN, 0.1)]) {
            assert_eq!(*rgb, want_rgb, "{w}x{h}: {got:?}");
            assert!((share - want_share).abs() <= 0.02, "{w}x{h}: {got:?}");
        }
        assert_eq!(colors[0].hex, "#ff0000");
    }
}

#[test]
fn one_colour_image() {
    let colors = dominant_colors(&RgbImage::filled(640, 480, [12, 200, 99]), 5);
    assert_eq!(colors.len(), 1);
    assert_eq!((colors[0].rgb, colors[0].share, colors[0].hex.as_str()), ([12, 200, 99], 1.0, "#0cc863"));
}

#[test]
fn empty_image_and_k_clamping() {
    assert!(dominant_colors(&RgbImage::filled(0, 0, [0; 3]), 5).is_empty());
    assert!(dominant_colors(&RgbImage::filled(0, 7, [0; 3]), 5).is_empty());
    // A buffer shorter than its declared size (the fields are public): the missing samples are skipped.
    let short = RgbImage { width: 100, height: 100, data: vec![7; 300] };
    assert_eq!(dominant_colors(&short, 5)[0].rgb, [7, 7, 7]);
    let img = stripes(40, 10);
    assert_eq!(dominant_colors(&img, 0).len(), 1); // k clamped up to 1
    let noise =
        RgbImage::new(64, 64, (0..64 * 64 * 3).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect())
            .unwrap();
    let many = dominant_colors(&noise, 1000);
    assert_eq!(many.len(), 16); // k clamped down to 16
    check_structure(&many);
    let one = dominant_colors(&noise, 1);
    assert_eq!((one.len(), one[0].share), (1, 1.0));
}

#[test]
fn lab_of_known_colours() {
    let close = |got: [f32; 3], want: [f32; 3], tol: f32| got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tol);
    let white = srgb_to_lab([255, 255, 255]);
    assert!(close(white, [100.0, 0.0, 0.0], 0.01), "{white:?}");
    let black = srgb_to_lab([0, 0, 0]);
    assert!(close(black, [0.0, 0.0, 0.0], 1e-6), "{black:?}");
    // Lindbloom's calculator: (255, 0, 0) -> 53.2408, 80.0925, 67.2032; (0, 0, 255) -> 32.2970, 79.1875,
    // -107.8602; mid grey 128 -> 53.5850, 0, 0.
    let red = srgb_to_lab(RED);
    assert!(close(red, [53.24, 80.09, 67.20], 0.05), "{red:?}");
    let blue = srgb_to_lab(BLUE);
    assert!(close(blue, [32.297, 79.1875, -107.8602], 0.05), "{blue:?}");
    let grey = srgb_to_lab([128, 128, 128]);
    assert!(close(grey, [53.585, 0.0, 0.0], 0.01), "{grey:?}");
    // Round trips, and out-of-gamut L*a*b* clamped.
    for rgb in [[0, 0, 0], [255, 255, 255], RED, GREEN, BLUE, [1, 2, 3], [250, 128, 7], [17, 99, 201]] {
        assert_eq!(lab_to_srgb(srgb_to_lab(rgb)), rgb);
    }
    assert_eq!(lab_to_srgb([50.0, 200.0, 0.0]).len(), 3);
    assert_eq!(lab_to_srgb([150.0, 0.0, 0.0]), [255, 255, 255]);
}

/// A smooth two-dimensional gradient, big enough to be sampled.
fn gradient() -> RgbImage {
    let (w, h) = (257_u32, 131_u32);
    let data = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [(x % 256) as u8, (y * 255 / (h - 1)) as u8, ((x + y) / 2 % 256) as u8]))
        .collect();
    RgbImage::new(w, h, data).unwrap()
}

#[test]
fn deterministic() {
    let img = gradient();
    let first = dominant_colors(&img, 5);
    assert_eq!(first, dominant_colors(&img, 5));
    check_structure(&first);
    assert_eq!(first.len(), 5);
    // Pinned, so a run on another target (wasm32) proves it gives the same answer bit for bit.
    let pinned: Vec<(&str, u32)> = first.iter().map(|c| (c.hex.as_str(), c.share.to_bits())).collect();
    let expected: Vec<(&str, u32)> = vec![
        ("#c64572", 1048236313),
        ("#59d35d", 1047275248),
        ("#c5b790", 1044541183),
        ("#533536", 1043099585),
        ("#43773d", 1042950454),
    ];
    assert_eq!(pinned, expected);
}

#[test]
fn photo_gives_five_plausible_colours() {
    let img = decode_image(fixture_image("coffee.jpg"), &DecodeLimits::default()).unwrap();
    let colors = dominant_colors(&img, 5);
    assert_eq!(colors.len(), 5, "{colors:?}");
    check_structure(&colors);
    // The largest cluster holds at least its fair fifth, and the palette is not one flat colour.
    assert!(colors[0].share >= 0.2, "{colors:?}");
    // A coffee cup on a wooden table: the largest cluster is a warm colour (a* > 0, b* > 0).
    assert!(colors[0].lab[1] > 0.0 && colors[0].lab[2] > 0.0, "{colors:?}");
    assert!(colors.iter().all(|c| (0.0..=100.0).contains(&c.lab[0])));
    let spread = colors.iter().map(|c| c.lab[0]).fold(f32::NEG_INFINITY, f32::max)
        - colors.iter().map(|c| c.lab[0]).fold(f32::INFINITY, f32::min);
    assert!(spread > 20.0, "{colors:?}");
    assert_eq!(colors, dominant_colors(&img, 5));
}
