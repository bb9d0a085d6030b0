//! From dequantised coefficients to RGB pixels, as libjpeg-turbo computes them with its defaults
//! (`dct_method = JDCT_ISLOW`, `do_fancy_upsampling = TRUE`), which is what Pillow uses.
//!
//! References (libjpeg-turbo 3.1, <https://github.com/libjpeg-turbo/libjpeg-turbo/tree/3.1.0>):
//! `jidctint.c` (`jpeg_idct_islow`), `jdsample.c` (`h2v1_fancy_upsample`, `h2v2_fancy_upsample`,
//! `h1v2_fancy_upsample`, `int_upsample`, and the choice among them in `jinit_upsampler`),
//! `jdmainct.c` (context rows: the row above the first is the first, rows past the last repeat the last),
//! `jdcolor.c` (`build_ycc_rgb_table`, `ycc_rgb_convert`, `ycck_cmyk_convert`). The SIMD versions Pillow's
//! wheels run are bit-exact with these C versions for valid data.

/// `jpeg_idct_islow`: the accurate integer inverse DCT, with its dequantisation, writing an 8x8 block
/// of samples (level-shifted and range-limited) at `out[..]` with row stride `stride`.
///
/// `coefs` and `quant` are in natural (row-major) order.
pub(super) fn idct_islow(coefs: &[i16; 64], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const FIX_0_298631336: i64 = 2446;
    const FIX_0_390180644: i64 = 3196;
    const FIX_0_541196100: i64 = 4433;
    const FIX_0_765366865: i64 = 6270;
    const FIX_0_899976223: i64 = 7373;
    const FIX_1_175875602: i64 = 9633;
    const FIX_1_501321110: i64 = 12299;
    const FIX_1_847759065: i64 = 15137;
    const FIX_1_961570560: i64 = 16069;
    const FIX_2_053119869: i64 = 16819;
    const FIX_2_562915447: i64 = 20995;
    const FIX_3_072711026: i64 = 25172;
    let descale = |x: i64, n: u32| (x + (1 << (n - 1))) >> n;

    /// The shared butterfly of both passes: inputs in 0..8 order, outputs [0..8] before descaling.
    fn butterfly(i: [i64; 8]) -> [i64; 8] {
        // Even part: the rotator is sqrt(2) * c(-6).
        let z1 = (i[2] + i[6]) * FIX_0_541196100;
        let tmp2 = z1 + i[6] * -FIX_1_847759065;
        let tmp3 = z1 + i[2] * FIX_0_765366865;
        let tmp0 = (i[0] + i[4]) << CONST_BITS;
        let tmp1 = (i[0] - i[4]) << CONST_BITS;
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        // Odd part per figure 8 of the paper; i7, i5, i3, i1.
        let (mut t0, mut t1, mut t2, mut t3) = (i[7], i[5], i[3], i[1]);
        let (z1, z2, mut z3, mut z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
        let z5 = (z3 + z4) * FIX_1_175875602;
        t0 *= FIX_0_298631336;
        t1 *= FIX_2_053119869;
        t2 *= FIX_3_072711026;
        t3 *= FIX_1_501321110;
        let z1 = z1 * -FIX_0_899976223;
        let z2 = z2 * -FIX_2_562915447;
        z3 = z3 * -FIX_1_961570560 + z5;
        z4 = z4 * -FIX_0_390180644 + z5;
        t0 += z1 + z3;
        t1 += z2 + z4;
        t2 += z2 + z3;
        t3 += z1 + z4;
        [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
    }

    // Pass 1: columns, into a work array scaled up by 2^PASS1_BITS. (libjpeg's shortcut for columns
    // with only a DC term gives the same numbers, so it is not repeated here.)
    let mut ws = [0_i64; 64];
    for col in 0..8 {
        let input: [i64; 8] =
            std::array::from_fn(|row| i64::from(coefs[row * 8 + col]) * i64::from(quant[row * 8 + col]));
        for (row, v) in butterfly(input).into_iter().enumerate() {
            // `(int)DESCALE(...)`: the work array is `int`.
            ws[row * 8 + col] = i64::from(descale(v, CONST_BITS - PASS1_BITS) as i32);
        }
    }
    // Pass 2: rows, descaled by 8 and by the pass-1 scaling, level-shifted by 128 and range-limited.
    for row in 0..8 {
        let input: [i64; 8] = std::array::from_fn(|col| ws[row * 8 + col]);
        let out_row = &mut out[row * stride..row * stride + 8];
        for (o, v) in out_row.iter_mut().zip(butterfly(input)) {
            let v = descale(v, CONST_BITS + PASS1_BITS + 3);
            // libjpeg's C code wraps with `& RANGE_MASK` past +-512; its SIMD code (what Pillow runs)
            // saturates. They agree on everything a real encoder produces; saturate like the SIMD.
            *o = (v + 128).clamp(0, 255) as u8;
        }
    }
}

/// A component's samples at its own (downsampled) resolution.
///
/// # Shapes
/// `data` is `[rows, stride]`; only the top-left `width` x `height` are meaningful.
pub(super) struct Plane {
    pub data: Vec<u8>,
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane {
    /// Row `y`, clamped to the meaningful rows as libjpeg's context-row pointers are.
    fn row(&self, y: isize) -> &[u8] {
        let y = y.clamp(0, self.height as isize - 1) as usize;
        &self.data[y * self.stride..y * self.stride + self.width]
    }
}

/// Brings a component to full resolution (`out_width` x `out_height`), choosing the method as
/// `jinit_upsampler` does: `(h_expand, v_expand)` is `(max_h / h, max_v / v)`.
pub(super) fn upsample(
    plane: &Plane,
    h_expand: usize,
    v_expand: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    let mut out = vec![0_u8; out_width * out_height];
    let fancy_width = plane.width > 2; // libjpeg falls back to replication for narrower components
    match (h_expand, v_expand) {
        (1, 1) => {
            for (y, o) in out.chunks_exact_mut(out_width).enumerate() {
                o.copy_from_slice(&plane.row(y as isize)[..out_width]);
            }
        }
        (2, 1) if fancy_width => {
            let mut row = vec![0_u8; plane.width * 2];
            for (y, o) in out.chunks_exact_mut(out_width).enumerate() {
                h2v1_fancy(plane.row(y as isize), &mut row);
                o.copy_from_slice(&row[..out_width]);
            }
        }
        (1, 2) => {
            for (y, o) in out.chunks_exact_mut(out_width).enumerate() {
                let (inrow, below) = ((y / 2) as isize, y % 2 == 1);
                let (near, far) = (plane.row(inrow), plane.row(if below { inrow + 1 } else { inrow - 1 }));
                let bias = if below { 2 } else { 1 };
                for ((o, &n), &f) in o.iter_mut().zip(near).zip(far) {
                    *o = ((u32::from(n) * 3 + u32::from(f) + bias) >> 2) as u8;
                }
            }
        }
        (2, 2) if fancy_width => {
            let mut row = vec![0_u8; plane.width * 2];
            for (y, o) in out.chunks_exact_mut(out_width).enumerate() {
                let (inrow, below) = ((y / 2) as isize, y % 2 == 1);
                let far = plane.row(if below { inrow + 1 } else { inrow - 1 });
                h2v2_fancy(plane.row(inrow), far, &mut row);
                o.copy_from_slice(&row[..out_width]);
            }
        }
        // h2v1_upsample, h2v2_upsample and int_upsample: plain replication.
        _ => {
            for (y, o) in out.chunks_exact_mut(out_width).enumerate() {
                let src = plane.row((y / v_expand) as isize);
                for (x, o) in o.iter_mut().enumerate() {
                    *o = src[x / h_expand];
                }
            }
        }
    }
    out
}

/// `h2v1_fancy_upsample`: 3/4 nearer + 1/4 further sample, biases 1 (left) and 2 (right).
fn h2v1_fancy(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    let v = |i: usize| u32::from(input[i]);
    out[0] = input[0];
    out[1] = ((v(0) * 3 + v(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let here = v(i) * 3;
        out[2 * i] = ((here + v(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((here + v(i + 1) + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((v(n - 1) * 3 + v(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

/// `h2v2_fancy_upsample` for one output row: column sums `3 * nearer row + further row`, then the same
/// 3:1 weighting across columns, with a single rounding (biases 8 and 7) at the end.
fn h2v2_fancy(near: &[u8], far: &[u8], out: &mut [u8]) {
    let n = near.len();
    let colsum = |i: usize| u32::from(near[i]) * 3 + u32::from(far[i]);
    let first = colsum(0);
    let next = colsum(1);
    out[0] = ((first * 4 + 8) >> 4) as u8;
    out[1] = ((first * 3 + next + 7) >> 4) as u8;
    let (mut last, mut this) = (first, next);
    for i in 1..n - 1 {
        let next = colsum(i + 1);
        out[2 * i] = ((this * 3 + last + 8) >> 4) as u8;
        out[2 * i + 1] = ((this * 3 + next + 7) >> 4) as u8;
        (last, this) = (this, next);
    }
    out[2 * n - 2] = ((this * 3 + last + 8) >> 4) as u8;
    out[2 * n - 1] = ((this * 4 + 7) >> 4) as u8;
}

/// `build_ycc_rgb_table`: 16-bit fixed-point YCbCr -> RGB, indexed by the 8-bit Cb / Cr sample.
pub(super) struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    pub(super) fn new() -> Self {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * f64::from(1_u32 << SCALEBITS) + 0.5) as i64;
        let mut t = Self { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF; // rounding folded into this table
        }
        t
    }

    /// `ycc_rgb_convert` for one pixel.
    #[inline]
    pub(super) fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [clamp(y + self.cr_r[cr]), clamp(y + g), clamp(y + self.cb_b[cb])]
    }

    /// `ycck_cmyk_convert`'s colour part: CMY = 255 - RGB (K passes through).
    #[inline]
    pub(super) fn cmy(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [clamp(255 - (y + self.cr_r[cr])), clamp(255 - (y + g)), clamp(255 - (y + self.cb_b[cb]))]
    }
}

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Pillow's `CMYK;I` unpacking (inverted, Adobe's convention, always assumed for JPEG) followed by its
/// `cmyk2rgb` conversion: `R = (255 - K) - MULDIV255(C, 255 - K)`, and likewise for G and B.
#[inline]
pub(super) fn pil_cmyk_to_rgb(cmyk: [u8; 4]) -> [u8; 3] {
    let [c, m, y, k] = cmyk.map(|v| 255 - i32::from(v));
    let nk = 255 - k;
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| clamp(nk - muldiv255(v, nk)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn dc_only_block_is_flat() {
        // DC 80 with quantiser 2: 160 / 8 = 20 above mid-grey.
        let mut coefs = [0_i16; 64];
        coefs[0] = 80;
        let mut quant = [1_u16; 64];
        quant[0] = 2;
        let mut out = [0_u8; 64];
        idct_islow(&coefs, &quant, &mut out, 8);
        assert!(out.iter().all(|&v| v == 148), "{out:?}");
    }

    #[test]
    fn fancy_upsampling_by_hand() {
        let mut out = [0_u8; 6];
        h2v1_fancy(&[0, 100, 200], &mut out);
        // [0, (0*3+100+2)>>2=25, (300+0+1)>>2=75, (300+200+2)>>2=125, (600+100+1)>>2=175, 200]
        assert_eq!(out, [0, 25, 75, 125, 175, 200]);
        h2v2_fancy(&[0, 100, 200], &[0, 100, 200], &mut out);
        // Column sums 0, 400, 800; [8>>4, (0+400+7)>>4, (1200+0+8)>>4, (1200+800+7)>>4, (2400+400+8)>>4, (3200+7)>>4]
        assert_eq!(out, [0, 25, 75, 125, 175, 200]);
    }

    #[test]
    fn ycc_tables_match_libjpeg_constants() {
        let t = YccTables::new();
        assert_eq!(t.rgb(128, 128, 128), [128, 128, 128]);
        // Cr = 255: R = y + round(1.402 * 127) = y + 178.
        assert_eq!(t.rgb(0, 128, 255)[0], 178);
        // Y 255, Cb = Cr = 0: R = 255 + floor(-178.95) = 76, G saturates, B = 255 + floor(-226.3) = 28.
        assert_eq!(t.rgb(255, 0, 0), [76, 255, 28]);
    }

    #[test]
    fn cmyk_matches_pillow_formula() {
        // Stored (inverted) 255 = no ink.
        assert_eq!(pil_cmyk_to_rgb([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(pil_cmyk_to_rgb([0, 255, 255, 255]), [0, 255, 255]);
        assert_eq!(pil_cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
    }
}
