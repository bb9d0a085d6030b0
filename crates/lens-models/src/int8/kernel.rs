//! The integer dot products behind [`QuantizedMatrix::matmul`](super::QuantizedMatrix::matmul): a
//! portable loop that LLVM vectorises and, on wasm32 built with `simd128`, the same arithmetic on wasm
//! SIMD. Both compute the same integers, so their results are bit-identical.

/// `dots[r * n + o] = Σ_i qx[r * k + i] · w[o * k + i]` for every row `r` of `qx` (`[m, k]`) and every
/// row `o` of `w` (`[n, k]`), with `dots` `[m, n]`.
pub(super) type Kernel = fn(&[i8], &[i8], usize, &mut [i32]);

/// The kernel [`QuantizedMatrix::matmul`](super::QuantizedMatrix::matmul) runs on this target.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(super) use simd::dot_rows;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub(super) use portable::dot_rows;

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
                    out[i][j] = acc[i][j].iter().sum::<i32>()
                        + xs[i][body..].iter().zip(&ws[j][body..]).map(|(&a, &b)| a as i32 * b as i32).sum::<i32>();
                }
            }
            out
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
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
                    let tail: i32 = xs[i][body..].iter().zip(&ws[j][body..]).map(|(&a, &b)| a as i32 * b as i32).sum();
                    out[i][j] = hsum(acc[i][j]) + tail;
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
