//! [`QuantizedMatrix`]: int8 codes with one f32 scale per row, and its W8A8 product with f32
//! activations quantized per row (see the [module docs](super) for the scheme).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use super::kernel::{self, Activations, Kernel, dot_rows, portable};
use crate::artifact::{Artifact, SectionDtype};
use crate::{Error, Result};

/// What an int8 artifact's `meta` says about its weights (the quantizers write it there).
pub const SCHEME_WEIGHTS: &str = "int8 symmetric per output channel (scale = max|w| / 127)";
/// What it says about activations: how they are handled at run time.
pub const SCHEME_ACTIVATIONS: &str = "int8 symmetric per row, dynamic (W8A8, i32 accumulation)";

/// The scheme [`QuantizedMatrix::matmul`] uses in this build: [`Activations::Unsigned7`] on wasm32 with
/// the `relaxed-simd` feature, [`Activations::Signed8`] everywhere else.
pub const ACTIVATIONS: Activations = kernel::ACTIVATIONS;

/// Quantize a row-major `[rows, cols]` f32 matrix, one scale per row.
///
/// Returns `(q, scales)`; a row of zeros (or of non-finite values) gets scale 0 and zero codes, so
/// dequantizing it gives zeros instead of NaN. Halves round away from zero (the committed artifacts'
/// bytes depend on it).
pub fn quantize_rows(values: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(values.len(), rows * cols, "quantize_rows: {} values for [{rows}, {cols}]", values.len());
    let mut q = vec![0i8; values.len()];
    let mut scales = vec![0f32; rows];
    if cols == 0 {
        return (q, scales);
    }
    for ((row, out), scale) in values.chunks_exact(cols).zip(q.chunks_exact_mut(cols)).zip(&mut scales) {
        *scale = quantize_row(row, out);
    }
    (q, scales)
}

/// Quantize one row into `out`; returns its scale (0 for an all-zero or non-finite row).
fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    let inv = 127.0 / max;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Quantize a row-major `[rows, cols]` f32 matrix of activations as `activations` says, one scale (and
/// zero point, 0 for [`Activations::Signed8`]) per row: `x ≈ scale · (q - zero_point)`. A row of zeros
/// or with a non-finite value gets scale 0, zero point 0 and zero codes. Halves round to even.
///
/// This is what [`QuantizedMatrix::matmul`] does to its `x` (weights go through [`quantize_rows`]).
pub fn quantize_activations(
    values: &[f32],
    rows: usize,
    cols: usize,
    activations: Activations,
) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
    assert_eq!(values.len(), rows * cols, "quantize_activations: {} values for [{rows}, {cols}]", values.len());
    let mut q = vec![0i8; values.len()];
    let mut scales = vec![0f32; rows];
    let mut zero_points = vec![0i32; rows];
    if cols == 0 {
        return (q, scales, zero_points);
    }
    for (((row, out), scale), zero) in
        values.chunks_exact(cols).zip(q.chunks_exact_mut(cols)).zip(&mut scales).zip(&mut zero_points)
    {
        (*scale, *zero) = quantize_activation_row(row, out, activations);
    }
    (q, scales, zero_points)
}

/// One row of [`quantize_activations`] into `out`; returns its scale and zero point. Written for speed: it
/// is the only pass over a product's input besides the kernel (7 ns a value on wasm before).
fn quantize_activation_row(row: &[f32], out: &mut [i8], activations: Activations) -> (f32, i32) {
    // The range always holds 0, so that a zero point is a code and a zero stays exactly zero.
    let (lo, hi, finite) = row_range(row);
    if hi == lo || !finite || !(hi - lo).is_finite() {
        out.fill(0);
        return (0.0, 0);
    }
    match activations {
        Activations::Signed8 => {
            let max = hi.max(-lo);
            let inv = 127.0 / max;
            codes(row, out, |v| v * inv, -127.0);
            (max / 127.0, 0)
        }
        Activations::Unsigned7 => {
            let scale = (hi - lo) / 127.0;
            let inv = 1.0 / scale;
            let zero = (-lo * inv).round_ties_even().clamp(0.0, 127.0);
            codes(row, out, |v| v * inv + zero, 0.0);
            (scale, zero as i32)
        }
    }
}

/// The smallest and largest value of `row`, 0 included, and whether every value is finite: in lanes that
/// vectorise (a fold of `f32::min`/`max` is serial, for their NaN rules; this ran at 7 ns a value on wasm).
fn row_range(row: &[f32]) -> (f32, f32, bool) {
    const LANES: usize = 8;
    let (mut lo, mut hi, mut bad) = ([0f32; LANES], [0f32; LANES], [0u32; LANES]);
    let mut take = |l: usize, v: f32| {
        lo[l] = if v < lo[l] { v } else { lo[l] };
        hi[l] = if v > hi[l] { v } else { hi[l] };
        bad[l] |= (!v.is_finite()) as u32;
    };
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in c.iter().enumerate() {
            take(l, v);
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        take(l, v);
    }
    let lo = lo.iter().fold(0f32, |a, &b| a.min(b));
    let hi = hi.iter().fold(0f32, |a, &b| a.max(b));
    (lo, hi, bad.iter().all(|&b| b == 0))
}

/// `out[i] = round(f(row[i]))` clamped to `[min, 127]`, ties to even. The rounding adds and subtracts
/// 1.5 · 2^23 and reads the integer from the sum's bits (no float-to-int conversion), so the loop
/// vectorises on every target.
#[inline(always)]
fn codes(row: &[f32], out: &mut [i8], f: impl Fn(f32) -> f32, min: f32) {
    const ROUND: f32 = 12_582_912.0;
    for (o, &v) in out.iter_mut().zip(row) {
        let v = f(v);
        let v = if v < min {
            min
        } else if v > 127.0 {
            127.0
        } else {
            v
        };
        *o = ((v + ROUND).to_bits() as i32 - ROUND.to_bits() as i32) as i8;
    }
}

/// An int8 `[rows, cols]` matrix (a PyTorch `[out, in]` weight) with one f32 scale per row.
///
/// The codes are a byte range of a shared buffer (the artifact file), so loading does not copy them.
#[derive(Clone)]
pub struct QuantizedMatrix {
    buffer: Arc<Vec<u8>>,
    range: Range<usize>,
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    /// `Σ_i q[o, i]` per row, for [`Activations::Unsigned7`]'s zero points (computed on first use).
    row_sums: OnceLock<Vec<i32>>,
}

impl std::fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantizedMatrix").field("rows", &self.rows).field("cols", &self.cols).finish_non_exhaustive()
    }
}

impl QuantizedMatrix {
    /// Quantize a row-major `[rows, cols]` f32 matrix (owning its codes).
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Self {
        let (q, scales) = quantize_rows(values, rows, cols);
        Self::from_codes(q, scales, rows, cols)
    }

    /// Wrap codes and scales computed elsewhere.
    pub fn from_codes(q: Vec<i8>, scales: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(q.len(), rows * cols);
        assert_eq!(scales.len(), rows);
        let bytes: Vec<u8> = q.into_iter().map(|v| v as u8).collect();
        let len = bytes.len();
        QuantizedMatrix { buffer: Arc::new(bytes), range: 0..len, rows, cols, scales, row_sums: OnceLock::new() }
    }

    /// The matrix stored in `artifact` as section `name` (i8, any shape whose first dimension is
    /// `rows` and whose other dimensions multiply to `cols`) with scales `{name}.scale` (f32 `[rows]`).
    pub fn from_artifact(artifact: &Artifact, name: &str, shape: &[usize]) -> Result<Self> {
        let range = artifact.checked(name, SectionDtype::I8, shape)?;
        let rows = shape.first().copied().unwrap_or(1);
        let cols = shape.iter().skip(1).product();
        let scales = artifact.f32_values(&scale_name(name), &[rows])?;
        if let Some(bad) = scales.iter().find(|s| !s.is_finite() || **s < 0.0) {
            return Err(Error::Artifact { message: format!("`{name}` has an invalid scale {bad}") });
        }
        Ok(QuantizedMatrix { buffer: artifact.buffer().clone(), range, rows, cols, scales, row_sums: OnceLock::new() })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The int8 codes, row-major.
    pub fn codes(&self) -> &[i8] {
        let bytes = &self.buffer[self.range.clone()];
        // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid for both.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }

    /// Row `r` dequantized to f32 (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let s = self.scales[r];
        let row = &self.codes()[r * self.cols..(r + 1) * self.cols];
        for (o, &q) in out.iter_mut().zip(row) {
            *o = q as f32 * s;
        }
    }

    /// `Σ_i q[o, i]` for every row `o`.
    fn row_sums(&self) -> &[i32] {
        self.row_sums.get_or_init(|| {
            if self.cols == 0 {
                return vec![0; self.rows];
            }
            self.codes().chunks_exact(self.cols).map(|r| r.iter().map(|&q| q as i32).sum()).collect()
        })
    }

    /// `y = x · Wᵀ (+ bias)` with activations quantized per row ([`ACTIVATIONS`]; W8A8 or W8A7).
    ///
    /// # Shapes
    /// - x: `m * cols` values (`[m, in]`, row-major); bias: `rows` values
    /// - output: `m * rows` values (`[m, out]`)
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(x, m, bias, dot_rows, ACTIVATIONS)
    }

    /// [`matmul`](Self::matmul) on the portable kernel with the same activation codes, whatever the
    /// target (tests compare the two).
    pub fn matmul_portable(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(x, m, bias, portable::dot_rows, ACTIVATIONS)
    }

    /// [`matmul_portable`](Self::matmul_portable) with the activations quantized as `activations` says:
    /// what another build's kernel computes (tests and accuracy checks on any target).
    pub fn matmul_portable_with(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        activations: Activations,
    ) -> Vec<f32> {
        self.matmul_with(x, m, bias, portable::dot_rows, activations)
    }

    fn matmul_with(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        kernel: Kernel,
        activations: Activations,
    ) -> Vec<f32> {
        let (k, n) = (self.cols, self.rows);
        assert_eq!(x.len(), m * k, "matmul: {} values are not [{m}, {k}]", x.len());
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "matmul: bias of {} for {n} outputs", b.len());
        }
        let mut y = vec![0f32; m * n];
        if m == 0 || n == 0 {
            return y;
        }
        let w = self.codes();
        let sums = (activations == Activations::Unsigned7).then(|| self.row_sums());
        let run = |x: &[f32], y: &mut [f32]| {
            let rows = y.len() / n;
            let mut qx = vec![0i8; rows * k];
            let mut t = vec![0f32; rows];
            let mut zero = vec![0i32; rows];
            if k > 0 {
                for (((xr, qr), tr), zr) in x.chunks_exact(k).zip(qx.chunks_exact_mut(k)).zip(&mut t).zip(&mut zero) {
                    (*tr, *zr) = quantize_activation_row(xr, qr, activations);
                }
            }
            let mut dots = vec![0i32; rows * n];
            kernel(&qx, w, k, &mut dots);
            // One pass per step, each without a branch inside, so that they vectorise.
            for (((yr, dr), &tr), &zr) in y.chunks_exact_mut(n).zip(dots.chunks_exact_mut(n)).zip(&t).zip(&zero) {
                if let Some(sums) = sums {
                    // Σ (q - z) · w = Σ q · w - z · Σ w: both terms and the result are within ±127 · 128 · k.
                    dr.iter_mut().zip(sums).for_each(|(d, &sum)| *d -= zr * sum);
                }
                yr.iter_mut().zip(&*dr).zip(&self.scales).for_each(|((yo, &d), &s)| *yo = d as f32 * (tr * s));
                if let Some(b) = bias {
                    yr.iter_mut().zip(b).for_each(|(yo, &b)| *yo += b);
                }
            }
        };
        let threads = threads_for(m * n * k);
        if threads <= 1 || m < 2 {
            run(x, &mut y);
        } else {
            let per = m.div_ceil(threads);
            std::thread::scope(|scope| {
                for (xc, yc) in x.chunks(per * k).zip(y.chunks_mut(per * n)) {
                    scope.spawn(|| run(xc, yc));
                }
            });
        }
        y
    }
}

/// Threads worth starting for a product of `work` multiply-adds (native only; wasm has one thread).
fn threads_for(work: usize) -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static CORES: OnceLock<usize> = OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        // Below a few million multiply-adds a thread costs more than it saves.
        if work < (4 << 20) { 1 } else { cores }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = work;
        1
    }
}

/// Name of the scales section of the int8 section `name`.
pub fn scale_name(name: &str) -> String {
    format!("{name}.scale")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = lens_core::rng::SplitMix64::new(seed);
        (0..n).map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0).collect()
    }

    #[test]
    fn rows_are_scaled_to_127_and_zero_rows_stay_zero() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, f32::INFINITY, 1.0, 2.0];
        let (q, s) = quantize_rows(&w, 3, 3);
        assert_eq!(&q[..3], &[64, -127, 32]);
        assert_eq!(s[0], 1.0 / 127.0);
        assert_eq!((&q[3..6], s[1]), (&[0i8, 0, 0][..], 0.0));
        assert_eq!((&q[6..], s[2]), (&[0i8, 0, 0][..], 0.0));
    }

    #[test]
    fn matmul_equals_f64_reference_of_the_quantized_operands() {
        // Odd sizes exercise the 4-row blocks' remainder and the 16-lane tails.
        for activations in [Activations::Signed8, Activations::Unsigned7] {
            for &(m, k, n) in &[(1, 1, 1), (3, 17, 5), (7, 64, 8), (33, 771, 130)] {
                let x = values(m * k, 1);
                let w = values(n * k, 2);
                let bias = values(n, 3);
                let qm = QuantizedMatrix::quantize(&w, n, k);
                let ours = qm.matmul_portable_with(&x, m, Some(&bias), activations);
                if activations == ACTIVATIONS {
                    assert_eq!(ours, qm.matmul(&x, m, Some(&bias)), "{activations:?}: kernels differ");
                }
                let (qx, tx, zx) = quantize_activations(&x, m, k, activations);
                assert!(activations == Activations::Signed8 || qx.iter().all(|&q| q >= 0));
                for r in 0..m {
                    for o in 0..n {
                        let dot: f64 =
                            (0..k).map(|i| (qx[r * k + i] as f64 - zx[r] as f64) * qm.codes()[o * k + i] as f64).sum();
                        let exact = dot * tx[r] as f64 * qm.scales()[o] as f64 + bias[o] as f64;
                        // The integer sum is exact; only the final f32 scaling rounds (≤ 2 ulp of the
                        // scale product plus the bias add): 1e-5 relative to the row's magnitude is generous.
                        let tol = 1e-5 * (1.0 + exact.abs());
                        let got = ours[r * n + o] as f64;
                        assert!(
                            (got - exact).abs() <= tol,
                            "{activations:?} [{m},{k},{n}] ({r},{o}): {got} vs {exact}"
                        );
                    }
                }
                // Against the unquantized product, the error is the quantization noise: relative L2 ≤ 2e-2
                // with 8-bit activations, ≤ 3e-2 with 7 (half the steps over about the same range).
                let mut diff = 0f64;
                let mut norm = 0f64;
                for r in 0..m {
                    for o in 0..n {
                        let f: f64 =
                            (0..k).map(|i| x[r * k + i] as f64 * w[o * k + i] as f64).sum::<f64>() + bias[o] as f64;
                        diff += (ours[r * n + o] as f64 - f).powi(2);
                        norm += f * f;
                    }
                }
                let rel = (diff / norm).sqrt();
                let bar = if activations == Activations::Signed8 { 2e-2 } else { 3e-2 };
                assert!(rel < bar, "{activations:?} [{m},{k},{n}] relative L2 vs f32 {rel:.3e}");
            }
        }
    }

    fn unsigned7(x: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
        quantize_activations(x, rows, cols, Activations::Unsigned7)
    }

    #[test]
    fn unsigned7_codes_span_the_row_and_keep_zero_exact() {
        // All positive: zero point 0, the largest value code 127.
        let (q, t, z) = unsigned7(&[0.0, 1.0, 0.5], 1, 3);
        assert_eq!((q, t[0], z[0]), (vec![0, 127, 64], 1.0 / 127.0, 0));
        // All negative: zero point 127, the smallest value code 0.
        let (q, _, z) = unsigned7(&[-1.0, 0.0, -0.5], 1, 3);
        assert_eq!((q, z[0]), (vec![0, 127, 64], 127));
        // Mixed: codes cover 0..=127 and a zero maps to the zero point exactly.
        let (q, t, z) = unsigned7(&[-0.25, 0.0, 1.0], 1, 3);
        assert_eq!((q[0], q[1], q[2]), (0, z[0] as i8, 127));
        assert!(((q[2] as i32 - z[0]) as f32 * t[0] - 1.0).abs() < t[0]);
        // Zero and non-finite rows: scale 0, no codes.
        let (q, t, z) = unsigned7(&[0.0, 0.0, 1.0, f32::NAN, f32::INFINITY, -1.0], 3, 2);
        assert_eq!((q, t, z), (vec![0; 6], vec![0.0; 3], vec![0; 3]));
    }

    #[test]
    fn threaded_and_single_threaded_rows_agree() {
        // Large enough to cross the threading threshold on a multi-core machine.
        let (m, k, n) = (64, 512, 256);
        let x = values(m * k, 4);
        let qm = QuantizedMatrix::quantize(&values(n * k, 5), n, k);
        let all = qm.matmul(&x, m, None);
        for r in [0, 31, 63] {
            assert_eq!(qm.matmul(&x[r * k..(r + 1) * k], 1, None), &all[r * n..(r + 1) * n]);
        }
    }
}
