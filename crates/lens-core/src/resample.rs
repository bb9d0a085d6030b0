//! Pillow's `Image.resize`, ported exactly for 8-bit images.
//!
//! Reference: Pillow 13.0.0, `src/libImaging/Resample.c`
//! (<https://github.com/python-pillow/Pillow/blob/13.0.0/src/libImaging/Resample.c>): `precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc` and
//! `ImagingResampleInner`; and for [`Filter::Nearest`], `ImagingScaleAffine` in `src/libImaging/Geometry.c`
//! with the affine matrix `_resize` in `src/_imaging.c` builds.
//!
//! The convolution filters are separable and antialias when shrinking: the filter is stretched by the
//! scale factor, so every source pixel contributes. Weights are computed in `f64`, normalised to sum to
//! one, then turned into 22-bit fixed point; each pass accumulates in `i32` and rounds back to `u8`,
//! so the horizontal pass's output is an 8-bit image, exactly as in Pillow. Every step here mirrors the
//! C code, including its float/double mix and truncating casts, so the output is bit-identical.

use std::ops::Range;

use crate::image::RgbImage;

/// A resampling filter, as `PIL.Image.Resampling` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Nearest neighbour (no antialiasing).
    Nearest,
    /// Box (area average when shrinking), support 0.5.
    Box,
    /// Triangle, support 1.
    Bilinear,
    /// Hamming-windowed sinc, support 1.
    Hamming,
    /// Keys' cubic convolution with `a = -0.5`, support 2. What CLIP uses.
    Bicubic,
    /// Lanczos-windowed sinc, support 3.
    Lanczos,
}

impl Filter {
    /// The filter for one of Pillow's integer codes, as HF configs store them in `resample`
    /// (0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming).
    pub fn from_pil_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }

    /// Pillow's integer code for this filter (the inverse of [`Filter::from_pil_code`]).
    pub fn pil_code(self) -> u8 {
        match self {
            Self::Nearest => 0,
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    /// Half-width of the filter at scale 1 (`struct filter.support` in Resample.c).
    fn support(self) -> f64 {
        match self {
            Self::Nearest => 0.0,
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    /// The filter kernel (`box_filter`, `bilinear_filter`, ... in Resample.c).
    fn kernel(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                return 1.0;
            }
            let x = x * PI;
            x.sin() / x
        }
        match self {
            Self::Nearest => unreachable!("nearest neighbour does not convolve"),
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Bicubic => {
                // https://en.wikipedia.org/wiki/Bicubic_interpolation#Bicubic_convolution_algorithm
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point precision of the 8-bit weights: `PRECISION_BITS = 32 - 8 - 2` in Resample.c.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resizes an RGB image to `width` x `height` exactly as Pillow's `Image.resize(size, filter)` does
/// for an `"RGB"` image (no `box`, no `reducing_gap`).
///
/// Same-size resizes return a copy, as Pillow does. A zero-sized target gives an empty image.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_window(img, width, height, 0..width, 0..height, filter)
}

/// The `x` x `y` window of `resize(img, width, height, filter)`, computed without the rest.
///
/// Each output pixel depends only on its own filter taps, so resizing then cropping equals resizing
/// just the window, bit for bit; the cost and memory follow the window, not the full target size.
/// Pre-processing uses this for its centre crop, so a 1 x 16384 strip resized to a short side of 224
/// never materialises the 224 x 3.7M image that the full resize would be.
///
/// # Panics
/// If the window reaches past `width` x `height`.
pub fn resize_window(
    img: &RgbImage,
    width: u32,
    height: u32,
    x: Range<u32>,
    y: Range<u32>,
    filter: Filter,
) -> RgbImage {
    assert!(x.end <= width && y.end <= height, "window {x:?} x {y:?} outside {width}x{height}");
    let plane = Plane { data: &img.data, width: img.width as usize, height: img.height as usize, channels: 3 };
    let to_usize = |r: Range<u32>| r.start as usize..r.end.max(r.start) as usize;
    let data = resize_plane(&plane, width as usize, height as usize, to_usize(x.clone()), to_usize(y.clone()), filter);
    RgbImage { width: x.end.saturating_sub(x.start), height: y.end.saturating_sub(y.start), data }
}

/// [`resize`] for any interleaved 8-bit image with `channels` samples per pixel.
///
/// # Shapes
/// `src` is `[in_height, in_width, channels]` row-major; the result is `[out_height, out_width, channels]`.
///
/// # Panics
/// If `src.len() != in_width * in_height * channels`.
pub fn resize_interleaved(
    src: &[u8],
    in_width: usize,
    in_height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
) -> Vec<u8> {
    let plane = Plane { data: src, width: in_width, height: in_height, channels };
    resize_plane(&plane, out_width, out_height, 0..out_width, 0..out_height, filter)
}

/// Resizes `img` to `out_width` x `out_height` and returns the `xs` x `ys` window of the result.
fn resize_plane(
    img: &Plane<'_>,
    out_width: usize,
    out_height: usize,
    xs: Range<usize>,
    ys: Range<usize>,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(img.data.len(), img.width * img.height * img.channels, "buffer does not match its shape");
    let window_len = xs.len() * ys.len() * img.channels;
    if window_len == 0 {
        return Vec::new();
    }
    if img.width == 0 || img.height == 0 {
        // Nothing to sample from; Pillow cannot even hold such an image.
        return vec![0; window_len];
    }
    match filter {
        Filter::Nearest => resize_nearest(img, out_width, out_height, xs, ys),
        _ => resize_convolve(img, out_width, out_height, xs, ys, filter),
    }
}

/// A borrowed interleaved 8-bit image.
struct Plane<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    channels: usize,
}

impl Plane<'_> {
    /// Rows `rows`, columns `cols`, copied out.
    fn crop(&self, cols: Range<usize>, rows: Range<usize>) -> Vec<u8> {
        let ch = self.channels;
        rows.flat_map(|y| &self.data[(y * self.width + cols.start) * ch..(y * self.width + cols.end) * ch])
            .copied()
            .collect()
    }
}

/// Per output pixel along one axis: the first input pixel, how many follow, and their weights.
struct Coeffs {
    /// Maximum number of taps per output pixel; `weights` holds `ksize` entries per output pixel.
    ksize: usize,
    /// `(min, count)` of the input range read for each output pixel (`bounds` in Resample.c).
    bounds: Vec<(usize, usize)>,
    /// 22-bit fixed-point weights, `ksize` per output pixel, unused taps zero.
    weights: Vec<i32>,
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc` (box `0..in_size`), for the output pixels
/// in `range` only: each one's taps depend on its own position alone.
fn precompute_coeffs(in_size: usize, out_size: usize, range: Range<usize>, filter: Filter) -> Coeffs {
    // The box is `float` in Pillow and `in1 - in0` is a float subtraction.
    let (in0, in1) = (0.0_f32, in_size as f32);
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;

    let mut bounds = Vec::with_capacity(range.len());
    let mut weights = vec![0_i32; range.len() * ksize];
    let mut k = vec![0.0_f64; ksize];
    for (i, xx) in range.enumerate() {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // `(int)` truncates toward zero; the clamps then keep the range inside the image.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k[..count].iter_mut().enumerate() {
            let w = filter.kernel(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let out = &mut weights[i * ksize..i * ksize + count];
        for (o, &kx) in out.iter_mut().zip(&k[..count]) {
            let kx = if ww != 0.0 { kx / ww } else { kx };
            // normalize_coeffs_8bpc: round half away from zero, then truncate to int.
            let scaled = kx * f64::from(1_u32 << PRECISION_BITS);
            *o = if kx < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs { ksize, bounds, weights }
}

/// `clip8`: back from 22-bit fixed point to `u8`, saturating (`>>` on `i32` is arithmetic, as in C).
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Accumulator start value: one half, so the final shift rounds to nearest.
const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);

/// `ImagingResampleInner`: two passes through an 8-bit intermediate, each skipped when its dimension
/// does not change (Pillow's `need_horizontal` / `need_vertical`). Horizontal first, except when the
/// height shrinks by more than twice as many pixels as the width does (Pillow 13's `horizontal_first`
/// is false: `in_h - out_h > 0 && in_h - out_h > (in_w - out_w) * 2`, in C `int`s, so a growing width
/// counts as negative). The order decides where the intermediate rounds to 8 bits, so it is part of the
/// result: a 427x640 photo resized to 384x384 goes vertical first.
fn resize_convolve(
    img: &Plane<'_>,
    out_width: usize,
    out_height: usize,
    xs: Range<usize>,
    ys: Range<usize>,
    filter: Filter,
) -> Vec<u8> {
    let need_horizontal = out_width != img.width;
    let need_vertical = out_height != img.height;
    let shrink_h = img.height as i64 - out_height as i64;
    let shrink_w = img.width as i64 - out_width as i64;
    let horizontal_first = !(shrink_h > 0 && shrink_h > shrink_w * 2);
    if !horizontal_first {
        return vertical_first(img, out_width, out_height, xs, ys, filter, need_horizontal);
    }
    let mut vert = need_vertical.then(|| precompute_coeffs(img.height, out_height, ys.clone(), filter));
    // Source rows the vertical pass reads (ybox_first..ybox_last), or the window's rows without one.
    let rows = second_pass_span(&mut vert, ys);
    let rows_len = rows.len();
    let current = if need_horizontal {
        let horiz = precompute_coeffs(img.width, out_width, xs.clone(), filter);
        horizontal_pass(img, rows, &horiz)
    } else {
        img.crop(xs.clone(), rows)
    };
    match vert {
        Some(v) => {
            let plane = Plane { data: &current, width: xs.len(), height: rows_len, channels: img.channels };
            vertical_pass(&plane, 0..xs.len(), &v)
        }
        None => current,
    }
}

/// The source span (rows or columns) the second pass reads — `window` when there is no second pass —
/// with that pass's bounds rebased to start at the span, since the first pass only produces the span.
fn second_pass_span(second: &mut Option<Coeffs>, window: Range<usize>) -> Range<usize> {
    let Some(coeffs) = second else { return window };
    let (last_min, last_count) = coeffs.bounds[coeffs.bounds.len() - 1];
    let span = coeffs.bounds[0].0..last_min + last_count;
    for bound in &mut coeffs.bounds {
        bound.0 -= span.start;
    }
    span
}

/// The vertical-first branch of [`resize_convolve`] (the height changes, so there is a vertical pass):
/// the vertical pass over the source columns the horizontal pass reads, then the horizontal pass.
fn vertical_first(
    img: &Plane<'_>,
    out_width: usize,
    out_height: usize,
    xs: Range<usize>,
    ys: Range<usize>,
    filter: Filter,
    need_horizontal: bool,
) -> Vec<u8> {
    let vert = precompute_coeffs(img.height, out_height, ys.clone(), filter);
    let mut horiz = need_horizontal.then(|| precompute_coeffs(img.width, out_width, xs.clone(), filter));
    // Source columns the horizontal pass reads, or the window's columns without one.
    let cols = second_pass_span(&mut horiz, xs);
    let cols_len = cols.len();
    let current = vertical_pass(img, cols, &vert);
    match horiz {
        Some(h) => {
            let plane = Plane { data: &current, width: cols_len, height: ys.len(), channels: img.channels };
            horizontal_pass(&plane, 0..ys.len(), &h)
        }
        None => current,
    }
}

/// `ImagingResampleHorizontal_8bpc` over the given source rows, one output pixel per coefficient set.
fn horizontal_pass(img: &Plane<'_>, rows: Range<usize>, c: &Coeffs) -> Vec<u8> {
    let ch = img.channels;
    let out_width = c.bounds.len();
    let mut out = vec![0_u8; rows.len() * out_width * ch];
    let mut acc = vec![0_i32; ch];
    for (out_row, y) in out.chunks_exact_mut(out_width * ch).zip(rows) {
        let src_row = &img.data[y * img.width * ch..(y + 1) * img.width * ch];
        for (xx, out_px) in out_row.chunks_exact_mut(ch).enumerate() {
            let (xmin, count) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            acc.fill(ROUNDING);
            for (px, &kx) in src_row[xmin * ch..(xmin + count) * ch].chunks_exact(ch).zip(k) {
                for (a, &v) in acc.iter_mut().zip(px) {
                    *a += i32::from(v) * kx;
                }
            }
            for (o, &a) in out_px.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
    }
    out
}

/// `ImagingResampleVertical_8bpc` over the given source columns, one output row per coefficient set.
fn vertical_pass(img: &Plane<'_>, cols: Range<usize>, c: &Coeffs) -> Vec<u8> {
    let ch = img.channels;
    let stride = img.width * ch;
    let row_len = cols.len() * ch;
    let mut out = vec![0_u8; c.bounds.len() * row_len];
    let mut acc = vec![0_i32; row_len];
    for (yy, out_row) in out.chunks_exact_mut(row_len.max(1)).enumerate() {
        let (ymin, count) = c.bounds[yy];
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        // Row by row rather than pixel by pixel: same sums in the same order, cache-friendly.
        acc.fill(ROUNDING);
        for (y, &ky) in (ymin..ymin + count).zip(k) {
            let src_row = &img.data[y * stride + cols.start * ch..y * stride + cols.end * ch];
            for (a, &v) in acc.iter_mut().zip(src_row) {
                *a += i32::from(v) * ky;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Nearest neighbour as Pillow's `resize(..., NEAREST)` does it: `ImagingScaleAffine` with
/// `a = [in_w / out_w, 0, 0, 0, in_h / out_h, 0]`, sampling at pixel centres. The source position is
/// accumulated by repeated addition, as in the C code, which can differ from `(x + 0.5) * scale`
/// in the last bit.
fn resize_nearest(img: &Plane<'_>, out_width: usize, out_height: usize, xs: Range<usize>, ys: Range<usize>) -> Vec<u8> {
    let ch = img.channels;
    // `COORD(v)`: -1 for negative positions, else truncation.
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let positions = |in_size: usize, out_size: usize, window: Range<usize>| -> Vec<Option<usize>> {
        let a = f64::from(in_size as f32) / out_size as f64;
        let mut pos = a * 0.5;
        (0..window.end)
            .map(|_| {
                let i = coord(pos);
                pos += a;
                (0..in_size as i64).contains(&i).then_some(i as usize)
            })
            .skip(window.start)
            .collect()
    };
    let x_src = positions(img.width, out_width, xs.clone());
    let y_src = positions(img.height, out_height, ys);
    let mut out = vec![0_u8; xs.len() * y_src.len() * ch];
    for (out_row, yi) in out.chunks_exact_mut(xs.len() * ch).zip(y_src) {
        let Some(yi) = yi else { continue }; // Pillow fills rows outside the source with zeros
        let src_row = &img.data[yi * img.width * ch..(yi + 1) * img.width * ch];
        for (out_px, xi) in out_row.chunks_exact_mut(ch).zip(&x_src) {
            if let Some(xi) = xi {
                out_px.copy_from_slice(&src_row[xi * ch..(xi + 1) * ch]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn grey(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..height).flat_map(|y| (0..width).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect()
    }

    #[test]
    fn same_size_is_a_copy() {
        let src = grey(5, 4, |x, y| (x * 40 + y * 7) as u8);
        for filter in [Filter::Nearest, Filter::Bicubic, Filter::Lanczos] {
            assert_eq!(resize_interleaved(&src, 5, 4, 1, 5, 4, filter), src);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        // Weights sum to one (up to fixed-point rounding), so a flat image must stay flat.
        let src = vec![77_u8; 13 * 9 * 3];
        for filter in [Filter::Box, Filter::Bilinear, Filter::Hamming, Filter::Bicubic, Filter::Lanczos] {
            for (w, h) in [(4, 3), (30, 20), (13, 2), (1, 1)] {
                let out = resize_interleaved(&src, 13, 9, 3, w, h, filter);
                assert!(out.iter().all(|&v| v == 77), "{filter:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn bicubic_coefficients_by_hand() {
        // Halving 4 -> 2: scale 2, support 4, centre of output 0 is 1.0.
        // Taps x = 0..3 (xmin = trunc(1 - 4 + 0.5) -> 0, xmax = trunc(1 + 4 + 0.5) = 5 -> 4),
        // distances (x + 0.5 - 1) / 2 = -0.25, 0.25, 0.75, 1.25.
        let c = precompute_coeffs(4, 2, 0..2, Filter::Bicubic);
        assert_eq!(c.ksize, 9);
        assert_eq!(c.bounds, vec![(0, 4), (0, 4)]);
        let cubic = |x: f64| Filter::Bicubic.kernel(x);
        let w = [cubic(-0.25), cubic(0.25), cubic(0.75), cubic(1.25)];
        let sum: f64 = w.iter().sum();
        let fixed: Vec<i32> = w
            .iter()
            .map(|&v| {
                let s = v / sum * 4194304.0;
                if s < 0.0 { (s - 0.5) as i32 } else { (s + 0.5) as i32 }
            })
            .collect();
        assert_eq!(&c.weights[..4], &fixed[..]);
        // Hand values: cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125.
        assert_eq!(cubic(0.25), 0.8671875);
        assert_eq!(cubic(0.75), 0.2265625);
        assert_eq!(cubic(1.25), -0.0703125);
    }

    #[test]
    fn halving_a_ramp_by_hand() {
        // One row [0, 100, 200, 255] shrunk to 2 pixels with bicubic. Weights (sum 1.9453125):
        // One row [0, 100, 200, 255] halved with bicubic; taps at distances 0.25, 0.25, 0.75, 1.25
        // (weights 0.8671875, 0.8671875, 0.2265625, -0.0703125, sum 1.890625):
        // out[0] = (0.8671875*0 + 0.8671875*100 + 0.2265625*200 - 0.0703125*255) / 1.890625 = 60.35 -> 60
        // out[1] = (-0.0703125*0 + 0.2265625*100 + 0.8671875*200 + 0.8671875*255) / 1.890625 = 220.68 -> 221
        let src = [0_u8, 100, 200, 255];
        assert_eq!(resize_interleaved(&src, 4, 1, 1, 2, 1, Filter::Bicubic), vec![60, 221]);
    }

    #[test]
    fn overshoot_is_clipped() {
        // Bicubic rings at a hard edge; values must saturate, not wrap.
        let src = grey(8, 1, |x, _| if x < 4 { 0 } else { 255 });
        let out = resize_interleaved(&src, 8, 1, 1, 20, 1, Filter::Bicubic);
        assert_eq!(out[0], 0);
        assert_eq!(out[19], 255);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
    }

    #[test]
    fn one_pass_when_one_side_is_unchanged() {
        // Width unchanged: rows are resampled only vertically, so each column is independent.
        let src = grey(3, 10, |x, y| (x * 80 + y * 10) as u8);
        let out = resize_interleaved(&src, 3, 10, 1, 3, 4, Filter::Bicubic);
        for x in 0..3 {
            let column: Vec<u8> = (0..10).map(|y| src[y * 3 + x]).collect();
            let alone = resize_interleaved(&column, 1, 10, 1, 1, 4, Filter::Bicubic);
            let got: Vec<u8> = (0..4).map(|y| out[y * 3 + x]).collect();
            assert_eq!(got, alone);
        }
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        // Each order equals its two one-pass resizes chained (each rounds to 8 bits in between). Pillow 13
        // goes vertical first iff the height loses more than twice as many pixels as the width.
        let src = grey(40, 64, |x, y| ((x * 37 + y * 91 + x * y) % 256) as u8);
        let chain = |first: (usize, usize), out: (usize, usize)| {
            let mid = resize_interleaved(&src, 40, 64, 1, first.0, first.1, Filter::Bicubic);
            resize_interleaved(&mid, first.0, first.1, 1, out.0, out.1, Filter::Bicubic)
        };
        // ((out_w, out_h), horizontal first?) from 40x64: shrink_h > 0 && shrink_h > 2 * shrink_w goes vertical.
        let cases = [
            ((36, 36), false), // 28 > 2 * 4 (a 427x640 photo to 384x384, in small)
            ((30, 44), true),  // 20 > 2 * 10 is false: the boundary stays horizontal first
            ((30, 43), false), // 21 > 2 * 10
            ((20, 30), true),  // 34 > 2 * 20 is false
            ((60, 50), false), // the width grows: 14 > 2 * -20
            ((60, 80), true),  // the height grows
        ];
        for ((w, h), horizontal_first) in cases {
            let out = resize_interleaved(&src, 40, 64, 1, w, h, Filter::Bicubic);
            let (h_first, v_first) = (chain((w, 64), (w, h)), chain((40, h), (w, h)));
            assert_ne!(h_first, v_first, "{w}x{h}: both orders agree, the case tests nothing");
            assert_eq!(out, if horizontal_first { h_first } else { v_first }, "{w}x{h}");
        }
    }

    #[test]
    fn window_equals_full_resize_then_crop() {
        let src = grey(23, 17, |x, y| ((x * 37 + y * 91) % 256) as u8);
        let img = RgbImage { width: 23, height: 17, data: src.iter().flat_map(|&v| [v, v / 2, 255 - v]).collect() };
        for filter in [Filter::Nearest, Filter::Bicubic, Filter::Lanczos, Filter::Box] {
            // (20, 5) and (30, 4) take the vertical-first order.
            for (w, h) in [(10, 7), (50, 40), (23, 9), (8, 17), (23, 17), (20, 5), (30, 4)] {
                let full = resize(&img, w, h, filter);
                let (xs, ys) = (w / 3..w - w / 4, h / 4..h);
                let window = resize_window(&img, w, h, xs.clone(), ys.clone(), filter);
                let expected: Vec<u8> = ys
                    .flat_map(|y| {
                        full.data[((y * w + xs.start) * 3) as usize..((y * w + xs.end) * 3) as usize].to_vec()
                    })
                    .collect();
                assert_eq!(window.data, expected, "{filter:?} {w}x{h}");
                assert_eq!((window.width, window.height), (xs.len() as u32, (h - h / 4) as u32));
            }
        }
    }

    #[test]
    fn nearest_picks_centres() {
        let src = grey(4, 1, |x, _| x as u8 * 10);
        assert_eq!(resize_interleaved(&src, 4, 1, 1, 2, 1, Filter::Nearest), vec![10, 30]);
        assert_eq!(resize_interleaved(&src, 4, 1, 1, 8, 1, Filter::Nearest), vec![0, 0, 10, 10, 20, 20, 30, 30]);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let src = grey(3, 2, |x, y| (x + y) as u8);
        assert!(resize_interleaved(&src, 3, 2, 1, 0, 5, Filter::Bicubic).is_empty());
        assert_eq!(resize_interleaved(&[], 0, 0, 1, 2, 2, Filter::Bicubic), vec![0; 4]);
        assert_eq!(resize_interleaved(&src, 3, 2, 1, 1, 1, Filter::Box), vec![2]);
    }

    #[test]
    fn pil_codes_round_trip() {
        for code in 0..6 {
            assert_eq!(Filter::from_pil_code(code).unwrap().pil_code(), code);
        }
        assert_eq!(Filter::from_pil_code(6), None);
    }
}
