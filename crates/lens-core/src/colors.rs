//! Dominant colours: k-means in CIE L*a*b* over a fixed grid of samples, the same on every target.
//!
//! 1. Sampling: at most [`MAX_SAMPLES`] pixels on a regular grid. An image of up to that many pixels is
//!    read whole; a larger one gets `gx` columns and `gy` rows of samples, `gx ≈ sqrt(MAX_SAMPLES * w / h)`
//!    (at least 1, at most `w`) and `gy = min(h, MAX_SAMPLES / gx)`, sample `i` of an axis of length `n`
//!    sitting at `floor((2i + 1) * n / (2 * count))` (cell centres). A 50 MP photo costs what a thumbnail
//!    does.
//! 2. Colour space: 8-bit sRGB, gamma-decoded with the exact sRGB curve (IEC 61966-2-1), to CIE XYZ (D65)
//!    to CIE L*a*b*, where Euclidean distance is CIE76 ΔE.
//! 3. Clustering: the samples are counted per distinct colour, then weighted k-means with k-means++
//!    initialisation drawn from a fixed-seed SplitMix64; at most [`MAX_ITERATIONS`] Lloyd iterations, or
//!    until no assignment changes. Empty clusters are dropped; so are clusters beyond the number of distinct
//!    colours, and two centres that come out as the same 8-bit colour are merged.
//!
//! Determinism: the powers and roots of the colour conversions are computed here with Newton's method
//! and `sqrt` (IEEE-exact operations only) rather than libm's `powf` / `cbrt`, whose last bits differ
//! between targets, so wasm32 and native give bit-identical results.

use serde::{Deserialize, Serialize};

use crate::image::RgbImage;
use crate::rng::SplitMix64;

/// The most pixels sampled from one image.
pub const MAX_SAMPLES: usize = 4096;
/// The most Lloyd iterations.
pub const MAX_ITERATIONS: usize = 25;
/// The largest number of colours returned (`k` is clamped to `1..=MAX_COLORS`).
pub const MAX_COLORS: usize = 16;
/// The k-means++ seed.
const SEED: u64 = 0x4C45_4E53_C010_0125;

/// One dominant colour of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DominantColor {
    /// The cluster centre in 8-bit sRGB (rounded, clamped to the gamut).
    pub rgb: [u8; 3],
    /// `rgb` as `"#rrggbb"`.
    pub hex: String,
    /// The cluster centre in CIE L*a*b* (D65).
    pub lab: [f32; 3],
    /// The fraction of the sampled pixels in this cluster; the shares of the returned colours sum to 1.
    pub share: f32,
}

/// The `k` (clamped to `1..=16`; 5 is the service's default) dominant colours of an image, largest share
/// first; fewer when the samples hold fewer distinct colours, none for an empty image.
pub fn dominant_colors(img: &RgbImage, k: usize) -> Vec<DominantColor> {
    let k = k.clamp(1, MAX_COLORS);
    let (colors, weights) = distinct_samples(img);
    if colors.is_empty() {
        return Vec::new();
    }
    let points: Vec<[f64; 3]> = colors.iter().map(|&rgb| lab_f64(rgb)).collect();
    let mut centres = kmeans_plus_plus(&points, &weights, k.min(points.len()), &mut SplitMix64::new(SEED));

    // Lloyd: assign each point to its nearest centre (ties to the lower index), move each centre to the
    // weighted mean of its points; an empty cluster keeps its centre for now.
    let mut assignment = vec![usize::MAX; points.len()];
    let mut counts = vec![0_u64; centres.len()];
    for _ in 0..MAX_ITERATIONS {
        let mut changed = false;
        for (a, p) in assignment.iter_mut().zip(&points) {
            let nearest = nearest(&centres, p);
            changed |= *a != nearest;
            *a = nearest;
        }
        let mut sums = vec![[0.0_f64; 3]; centres.len()];
        counts.fill(0);
        for ((&a, p), &w) in assignment.iter().zip(&points).zip(&weights) {
            counts[a] += u64::from(w);
            for c in 0..3 {
                sums[a][c] += p[c] * f64::from(w);
            }
        }
        for ((centre, sum), &count) in centres.iter_mut().zip(&sums).zip(&counts) {
            if count > 0 {
                *centre = sum.map(|s| s / count as f64);
            }
        }
        if !changed {
            break;
        }
    }

    // Non-empty clusters as (8-bit colour, count, weighted Lab sum); centres rounding alike are merged.
    let mut clusters: Vec<([u8; 3], u64, [f64; 3])> = Vec::new();
    for (centre, &count) in centres.iter().zip(&counts).filter(|(_, count)| **count > 0) {
        let rgb = lab_to_srgb_f64(*centre);
        let weighted = centre.map(|v| v * count as f64);
        match clusters.iter_mut().find(|c| c.0 == rgb) {
            Some(c) => {
                c.1 += count;
                (0..3).for_each(|i| c.2[i] += weighted[i]);
            }
            None => clusters.push((rgb, count, weighted)),
        }
    }
    clusters.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = clusters.iter().map(|c| c.1).sum();
    clusters
        .into_iter()
        .map(|(rgb, count, sum)| DominantColor {
            rgb,
            hex: format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]),
            lab: sum.map(|v| (v / count as f64) as f32),
            share: (count as f64 / total as f64) as f32,
        })
        .collect()
}

/// 8-bit sRGB to CIE L*a*b* (D65 white, 2° observer).
pub fn srgb_to_lab(rgb: [u8; 3]) -> [f32; 3] {
    lab_f64(rgb).map(|v| v as f32)
}

/// CIE L*a*b* (D65) to 8-bit sRGB, rounded, out-of-gamut channels clamped.
pub fn lab_to_srgb(lab: [f32; 3]) -> [u8; 3] {
    lab_to_srgb_f64(lab.map(f64::from))
}

/// The grid samples (module docs), as distinct colours (ascending) and how many samples have each.
fn distinct_samples(img: &RgbImage) -> (Vec<[u8; 3]>, Vec<u32>) {
    let (w, h) = (u64::from(img.width), u64::from(img.height));
    let max = MAX_SAMPLES as u64;
    let (gx, gy) = if w * h <= max {
        (w, h)
    } else {
        let gx = ((max as f64 * w as f64 / h as f64).sqrt().round() as u64).clamp(1, w.min(max));
        (gx, (max / gx).min(h))
    };
    let at = |i: u64, n: u64, count: u64| (2 * i + 1) * n / (2 * count);
    let mut packed: Vec<u32> = Vec::with_capacity((gx * gy) as usize);
    for j in 0..gy {
        let y = at(j, h, gy);
        for i in 0..gx {
            let x = at(i, w, gx);
            // A buffer shorter than its declared size (the fields are public) loses those samples.
            let Ok(start) = usize::try_from((y * w + x) * 3) else { continue };
            if let Some(&[r, g, b]) = img.data.get(start..start.saturating_add(3)) {
                packed.push(u32::from_be_bytes([0, r, g, b]));
            }
        }
    }
    packed.sort_unstable();
    let (mut colors, mut weights) = (Vec::new(), Vec::<u32>::new());
    for p in packed {
        let [_, r, g, b] = p.to_be_bytes();
        if colors.last() == Some(&[r, g, b]) {
            *weights.last_mut().expect("a weight per colour") += 1;
        } else {
            colors.push([r, g, b]);
            weights.push(1);
        }
    }
    (colors, weights)
}

/// k-means++: the first centre drawn with probability proportional to weight, each next one proportional to
/// weight times squared distance to the nearest centre so far. Stops early if every point is a centre.
fn kmeans_plus_plus(points: &[[f64; 3]], weights: &[u32], k: usize, rng: &mut SplitMix64) -> Vec<[f64; 3]> {
    let first = weighted_pick(weights.iter().map(|&w| f64::from(w)), rng.next_f64());
    let mut centres = vec![points[first]];
    let mut d2: Vec<f64> = points.iter().map(|p| dist2(p, &points[first])).collect();
    while centres.len() < k {
        let scores = d2.iter().zip(weights).map(|(&d, &w)| d * f64::from(w));
        if d2.iter().all(|&d| d <= 0.0) {
            break;
        }
        let next = points[weighted_pick(scores, rng.next_f64())];
        for (d, p) in d2.iter_mut().zip(points) {
            *d = d.min(dist2(p, &next));
        }
        centres.push(next);
    }
    centres
}

/// The index drawn by `u` in `[0, 1)` from non-negative scores (not all zero): the first whose running
/// sum passes `u * total`, or the last positive one when rounding leaves none.
fn weighted_pick(scores: impl Iterator<Item = f64> + Clone, u: f64) -> usize {
    let target = u * scores.clone().sum::<f64>();
    let (mut acc, mut last) = (0.0, 0);
    for (i, s) in scores.enumerate() {
        if s > 0.0 {
            acc += s;
            last = i;
            if acc > target {
                return i;
            }
        }
    }
    last
}

fn nearest(centres: &[[f64; 3]], p: &[f64; 3]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centres.iter().enumerate() {
        let d = dist2(c, p);
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

fn dist2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

// --- sRGB <-> XYZ (D65) <-> L*a*b* ---------------------------------------------------------------

/// sRGB primaries to XYZ, D65 (IEC 61966-2-1, as tabulated by Lindbloom), and its inverse.
const RGB_TO_XYZ: [[f64; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175_0],
    [0.019_333_9, 0.119_192_0, 0.950_304_1],
];
const XYZ_TO_RGB: [[f64; 3]; 3] = [
    [3.240_454_2, -1.537_138_5, -0.498_531_4],
    [-0.969_266_0, 1.876_010_8, 0.041_556_0],
    [0.055_643_4, -0.204_025_9, 1.057_225_2],
];
/// The D65 reference white (the rows of `RGB_TO_XYZ` summed, so sRGB white is exactly L* 100).
const WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];
/// CIE's δ = 6/29: the L*a*b* function is linear below δ³.
const DELTA: f64 = 6.0 / 29.0;

fn mul(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    m.map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2])
}

fn lab_f64(rgb: [u8; 3]) -> [f64; 3] {
    let xyz = mul(&RGB_TO_XYZ, rgb.map(srgb_decode));
    let f = |t: f64| if t > DELTA * DELTA * DELTA { root(t, 3) } else { t / (3.0 * DELTA * DELTA) + 4.0 / 29.0 };
    let [fx, fy, fz] = [f(xyz[0] / WHITE[0]), f(xyz[1] / WHITE[1]), f(xyz[2] / WHITE[2])];
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn lab_to_srgb_f64([l, a, b]: [f64; 3]) -> [u8; 3] {
    let fy = (l + 16.0) / 116.0;
    let finv = |t: f64| if t > DELTA { t * t * t } else { 3.0 * DELTA * DELTA * (t - 4.0 / 29.0) };
    let xyz = [finv(fy + a / 500.0) * WHITE[0], finv(fy) * WHITE[1], finv(fy - b / 200.0) * WHITE[2]];
    mul(&XYZ_TO_RGB, xyz).map(|c| (srgb_encode(c.clamp(0.0, 1.0)) * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// The sRGB decoding curve: `v / 12.92` up to 0.04045, else `((v + 0.055) / 1.055)^2.4`.
fn srgb_decode(c: u8) -> f64 {
    let v = f64::from(c) / 255.0;
    if v <= 0.040_45 {
        v / 12.92
    } else {
        let t = (v + 0.055) / 1.055;
        t * t * root(t * t, 5) // t^2.4 = t^2 · (t^2)^(1/5)
    }
}

/// The sRGB encoding curve, for linear values in `[0, 1]`: `12.92 v` up to 0.0031308, else
/// `1.055 v^(1/2.4) - 0.055`.
fn srgb_encode(v: f64) -> f64 {
    if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * root(v * v.sqrt().sqrt(), 3) - 0.055 // v^(5/12) = (v^(5/4))^(1/3)
    }
}

/// `x^(1/n)` for `x` in `[0, ~2]`: Newton's method from above (`max(x, 1)`), which decreases to the root,
/// stopped when it no longer decreases. Only `+ - * /`, so the result is the same on every target.
fn root(x: f64, n: u32) -> f64 {
    if x <= 0.0 || x.is_nan() {
        return 0.0;
    }
    let nf = f64::from(n);
    let mut y = x.max(1.0);
    for _ in 0..200 {
        let mut p = 1.0; // y^(n-1)
        for _ in 1..n {
            p *= y;
        }
        let next = ((nf - 1.0) * y + x / p) / nf;
        if next >= y {
            break;
        }
        y = next;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn roots_and_curves_match_libm() {
        for &x in &[1e-6, 0.008_856, 0.1, 0.5, 0.9, 1.0, 1.088_83, 2.0] {
            assert!((root(x, 3) - f64::cbrt(x)).abs() <= 1e-15, "cbrt {x}");
            assert!((root(x, 5) - x.powf(0.2)).abs() <= 1e-15, "fifth root {x}");
        }
        for c in 0..=255_u8 {
            let v = f64::from(c) / 255.0;
            let exact = if v <= 0.040_45 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) };
            assert!((srgb_decode(c) - exact).abs() <= 1e-14, "decode {c}");
            let round_trip = (srgb_encode(srgb_decode(c)) * 255.0).round();
            assert_eq!(round_trip, f64::from(c), "encode {c}");
        }
    }

    #[test]
    fn grid_sampling_is_bounded_and_covers_the_image() {
        let (colors, weights) = distinct_samples(&RgbImage::filled(5000, 3000, [1, 2, 3]));
        assert_eq!(colors, vec![[1, 2, 3]]);
        assert!(weights[0] as usize <= MAX_SAMPLES && weights[0] > 4000, "{weights:?}");
        // One pixel wide: every sample on the one column.
        let (_, weights) = distinct_samples(&RgbImage::filled(1, 100_000, [0; 3]));
        assert_eq!(weights, vec![MAX_SAMPLES as u32]);
        // Small images are read whole.
        let (_, weights) = distinct_samples(&RgbImage::filled(7, 9, [0; 3]));
        assert_eq!(weights, vec![63]);
        assert_eq!(distinct_samples(&RgbImage::filled(0, 9, [0; 3])).0, Vec::<[u8; 3]>::new());
    }
}
