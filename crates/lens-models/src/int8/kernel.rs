//! The integer dot products behind [`QuantizedMatrix::matmul`](super::QuantizedMatrix::matmul): a
//! portable loop that LLVM vectorises; on wasm32 built with `simd128`, the same arithmetic on wasm
//! SIMD; and with the `relaxed-simd` feature on wasm32, `i16x8.relaxed_dot_i8x16_i7x16_s` (16
//! multiply-adds per instruction instead of 8), which needs activation codes in `0..=127`
//! ([`Activations::Unsigned7`]). All compute the same integers from the same codes,
//! so their results are bit-identical.

/// `dots[r * n + o] = Σ_i qx[r * k + i] · w[o * k + i]` for every row `r` of `qx` (`[m, k]`) and every
/// row `o` of `w` (`[n, k]`), with `dots` `[m, n]`.
pub(super) type Kernel = fn(&[i8], &[i8], usize, &mut [i32]);

/// How a product's activations become integer codes, one scale per row of `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// Symmetric int8: `q = round(x / t)` within ±127, `t = max|x| / 127`.
    Signed8,
    /// Asymmetric 7-bit: `q = round(x / t) + z` within `0..=127` over the row's range (0 included),
    /// `t = (max - min) / 127`; each sum is corrected by `z · Σ_i w[o, i]`.
    /// What the relaxed-SIMD dot product takes (its second operand must have the top bit clear).
    Unsigned7,
}

/// The activation codes this target's kernel takes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
pub(super) const ACTIVATIONS: Activations = Activations::Unsigned7;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd")))]
pub(super) const ACTIVATIONS: Activations = Activations::Signed8;

/// The kernel [`QuantizedMatrix::matmul`](super::QuantizedMatrix::matmul) runs on this target.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
pub(super) use relaxed::dot_rows;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(feature = "relaxed-simd")))]
pub(super) use simd::dot_rows;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub(super) use portable::dot_rows;

/// `Σ a[i] · b[i]` one pair at a time: the tails the vector kernels leave (and the relaxed kernel's
/// last columns when the weight's rows are not a multiple of 4).
fn scalar_dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// The `R x C` dot products of `R` activation rows with `C` weight rows (`R <= 2`, `C <= 4`), all of
/// one length `k`; the results fill `out[..R][..C]`.
trait Block {
    fn block<const R: usize, const C: usize>(xs: &[&[i8]], ws: &[&[i8]]) -> [[i32; 4]; 2];
}

/// The loop order both kernels share. Weight rows are taken four at a time, and each block of four
/// (a few KB, so it stays in L1) meets every activation row, two at a time, before the next block is
/// read: the weights are streamed from memory once per product instead of once per activation row,
/// and each load feeds several multiply-adds (2 x 4 accumulators per step).
fn dot_rows_with<K: Block>(qx: &[i8], w: &[i8], k: usize, dots: &mut [i32]) {
    if k == 0 {
        dots.fill(0);
        return;
    }
    fn row(a: &[i8], r: usize, k: usize) -> &[i8] {
        &a[r * k..(r + 1) * k]
    }
    let n = w.len() / k;
    let m = dots.len().checked_div(n).unwrap_or(0);
    let mut out = [[0i32; 4]; 2];
    let mut o = 0;
    while o < n {
        let cols = (n - o).min(4);
        let ws: [&[i8]; 4] = std::array::from_fn(|j| row(w, o + j.min(cols - 1), k));
        let mut r = 0;
        while r < m {
            let rs = (m - r).min(2);
            let xs: [&[i8]; 2] = std::array::from_fn(|i| row(qx, r + i.min(rs - 1), k));
            match (rs, cols) {
                (2, 4) => out = K::block::<2, 4>(&xs, &ws),
                (1, 4) => out[0] = K::block::<1, 4>(&xs[..1], &ws)[0],
                _ => {
                    for i in 0..rs {
                        for j in 0..cols {
                            out[i][j] = K::block::<1, 1>(&xs[i..i + 1], &ws[j..j + 1])[0][0];
                        }
                    }
                }
            }
            for i in 0..rs {
                dots[(r + i) * n + o..(r + i) * n + o + cols].copy_from_slice(&out[i][..cols]);
            }
            r += rs;
        }
        o += cols;
    }
}

pub(super) mod portable {
    const LANES: usize = 16;

    pub fn dot_rows(qx: &[i8], w: &[i8], k: usize, dots: &mut [i32]) {
        super::dot_rows_with::<Portable>(qx, w, k, dots);
    }

    struct Portable;

    impl super::Block for Portable {
        /// 16-lane chunks that LLVM vectorises (i8 → i16 products summed in i32).
        #[inline(always)]
        fn block<const R: usize, const C: usize>(xs: &[&[i8]], ws: &[&[i8]]) -> [[i32; 4]; 2] {
            let k = xs[0].len();
            assert!(xs.len() == R && ws.len() == C && xs.iter().chain(ws).all(|r| r.len() == k));
            let body = k / LANES * LANES;
            let mut acc = [[[0i32; LANES]; C]; R];
            for c in (0..body).step_by(LANES) {
                let xc: [&[i8; LANES]; R] =
                    std::array::from_fn(|i| xs[i][c..c + LANES].try_into().expect("lane chunk"));
                for j in 0..C {
                    let wc: &[i8; LANES] = ws[j][c..c + LANES].try_into().expect("lane chunk");
                    for i in 0..R {
                        for l in 0..LANES {
                            acc[i][j][l] += (xc[i][l] as i16 * wc[l] as i16) as i32;
                        }
                    }
                }
            }
            let mut out = [[0i32; 4]; 2];
            for i in 0..R {
                for j in 0..C {
                    out[i][j] = acc[i][j].iter().sum::<i32>() + super::scalar_dot(&xs[i][body..], &ws[j][body..]);
                }
            }
            out
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[cfg_attr(feature = "relaxed-simd", allow(dead_code))]
mod simd {
    use core::arch::wasm32::*;

    /// The portable kernel's arithmetic on wasm SIMD: 8 codes widened to i16 per load, pairwise
    /// products summed into i32 lanes by `i32x4.dot_i16x8_s`.
    pub fn dot_rows(qx: &[i8], w: &[i8], k: usize, dots: &mut [i32]) {
        super::dot_rows_with::<Simd>(qx, w, k, dots);
    }

    struct Simd;

    impl super::Block for Simd {
        /// `R + C` loads per 8 codes feed `R * C` dot instructions.
        #[inline(always)]
        fn block<const R: usize, const C: usize>(xs: &[&[i8]], ws: &[&[i8]]) -> [[i32; 4]; 2] {
            let k = xs[0].len();
            assert!(xs.len() == R && ws.len() == C && xs.iter().chain(ws).all(|r| r.len() == k));
            let body = k / 8 * 8;
            let mut acc = [[i32x4_splat(0); C]; R];
            let mut c = 0;
            while c < body {
                // SAFETY: c + 8 <= body <= k, and every row holds exactly k codes (asserted above).
                unsafe {
                    let xv: [v128; R] = std::array::from_fn(|i| i16x8_load_extend_i8x8(xs[i].as_ptr().add(c)));
                    for j in 0..C {
                        let wv = i16x8_load_extend_i8x8(ws[j].as_ptr().add(c));
                        for i in 0..R {
                            acc[i][j] = i32x4_add(acc[i][j], i32x4_dot_i16x8(xv[i], wv));
                        }
                    }
                }
                c += 8;
            }
            let mut out = [[0i32; 4]; 2];
            for i in 0..R {
                for j in 0..C {
                    out[i][j] = hsum(acc[i][j]) + super::scalar_dot(&xs[i][body..], &ws[j][body..]);
                }
            }
            out
        }
    }

    #[inline(always)]
    fn hsum(v: v128) -> i32 {
        i32x4_extract_lane::<0>(v)
            .wrapping_add(i32x4_extract_lane::<1>(v))
            .wrapping_add(i32x4_extract_lane::<2>(v))
            .wrapping_add(i32x4_extract_lane::<3>(v))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128", feature = "relaxed-simd"))]
mod relaxed {
    use core::arch::wasm32::*;

    /// Activation rows per register block (with 4 weight rows: `ROWS * 4` accumulators). 2 and 3 ran
    /// alike in Chromium (2 ahead on 4 of 6 shapes of ViT-B/32), 4 slower (x86 has 16 vector registers).
    const ROWS: usize = 2;

    /// `qx` must hold codes in `0..=127`: engines may read them as unsigned bytes (x86's `pmaddubsw`),
    /// and then only codes with the top bit clear give the same sum everywhere. With |w| ≤ 128 a pair
    /// of products is at most 2 · 127 · 128 = 32512, so no engine's 16-bit intermediate saturates.
    pub fn dot_rows(qx: &[i8], w: &[i8], k: usize, dots: &mut [i32]) {
        debug_assert!(qx.iter().all(|&q| q >= 0), "relaxed kernel: activation codes must be 0..=127");
        if k == 0 {
            dots.fill(0);
            return;
        }
        let n = w.len() / k;
        let m = dots.len().checked_div(n).unwrap_or(0);
        assert!(qx.len() == m * k && w.len() == n * k && dots.len() == m * n);
        // SAFETY: the lengths are checked above; every block reads whole rows of `qx` and `w` and
        // writes inside `dots`.
        unsafe { dot_rows_relaxed(qx, w, k, n, m, dots) }
    }

    /// Four weight rows at a time (a few KB, kept in L1) against every activation row, `ROWS` at a time:
    /// the weights stream from memory once per product.
    #[target_feature(enable = "relaxed-simd")]
    unsafe fn dot_rows_relaxed(qx: &[i8], w: &[i8], k: usize, n: usize, m: usize, dots: &mut [i32]) {
        let mut o = 0;
        while o + 4 <= n {
            let mut r = 0;
            while r + ROWS <= m {
                unsafe { block::<ROWS>(qx, w, k, n, r, o, dots) };
                r += ROWS;
            }
            while r < m {
                unsafe { block::<1>(qx, w, k, n, r, o, dots) };
                r += 1;
            }
            o += 4;
        }
        for o in o..n {
            for r in 0..m {
                dots[r * n + o] = super::scalar_dot(&qx[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
            }
        }
    }

    /// Rows `r..r + R` of `qx` against rows `o..o + 4` of `w`, into `dots[r.., o..o + 4]`.
    #[inline(always)]
    unsafe fn block<const R: usize>(qx: &[i8], w: &[i8], k: usize, n: usize, r: usize, o: usize, dots: &mut [i32]) {
        let body = k / 16 * 16;
        let xp = unsafe { qx.as_ptr().add(r * k) };
        let wp = unsafe { w.as_ptr().add(o * k) };
        let mut acc = [[i32x4_splat(0); 4]; R];
        let ones = i16x8_splat(1);
        let mut c = 0;
        while c < body {
            unsafe {
                let xv: [v128; R] = std::array::from_fn(|i| v128_load(xp.add(i * k + c).cast()));
                for j in 0..4 {
                    let wv = v128_load(wp.add(j * k + c).cast());
                    for i in 0..R {
                        // The pairs' 16-bit sums (exact: |w| ≤ 128, x ≤ 127), widened into i32 lanes by a
                        // dot with ones held in a register. `i32x4.relaxed_dot_i8x16_i7x16_add_s` says the
                        // same in one instruction, but V8 on x86 without AVX-VNNI lowers it slower: 31–47
                        // against 40–60 G multiply-adds/s here (Chromium 156, AVX-512 Zen 4, same run).
                        let pairs = i16x8_relaxed_dot_i8x16_i7x16(wv, xv[i]);
                        acc[i][j] = i32x4_add(acc[i][j], i32x4_dot_i16x8(pairs, ones));
                    }
                }
            }
            c += 16;
        }
        for (i, a) in acc.iter().enumerate() {
            // The four accumulators' lane sums, as one vector (columns o..o + 4).
            let lo = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a[0], a[1]), i32x4_shuffle::<2, 6, 3, 7>(a[0], a[1]));
            let hi = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(a[2], a[3]), i32x4_shuffle::<2, 6, 3, 7>(a[2], a[3]));
            let mut sums = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(lo, hi), i32x4_shuffle::<2, 3, 6, 7>(lo, hi));
            if body < k {
                let x = &qx[(r + i) * k + body..(r + i + 1) * k];
                let tail: [i32; 4] =
                    std::array::from_fn(|j| super::scalar_dot(x, &w[(o + j) * k + body..(o + j + 1) * k]));
                sums = i32x4_add(sums, unsafe { v128_load(tail.as_ptr().cast()) });
            }
            unsafe { v128_store(dots.as_mut_ptr().add((r + i) * n + o).cast(), sums) };
        }
    }
}
