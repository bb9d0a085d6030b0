//! Int8 weights: symmetric per-output-channel quantization, the W8A8 matmul kernel, and
//! [`quantize_clip`], which turns a CLIP checkpoint into a `burn-int8` [`crate::artifact`].
//!
//! Scheme. A PyTorch `Linear` weight `W` `[out, in]` is stored as `q[o, i] = round(W[o, i] / s[o])`,
//! clamped to ±127, with `s[o] = max_i |W[o, i]| / 127` (a zero row keeps `s = 0` and all-zero `q`).
//! Activations are quantized on the fly, one symmetric scale per row of `x` (`t[m] = max |x[m, :]| / 127`),
//! so `y[m, o] = t[m] · s[o] · Σ_i qx[m, i] · q[o, i] + bias[o]` with the sum exact in i32
//! (|qx · q| ≤ 127², so `in` up to 133,000 cannot overflow).
//!
//! Kernels. The sum is the only hot loop. The activations are quantized first, then each block of
//! four rows of `W` meets every row of `x`, two at a time (a 2 x 4 register block), so `W` is read
//! from memory once per product. On wasm32 built with `simd128` the block runs on
//! `i16x8.load8x8_s` + `i32x4.dot_i16x8_s`; elsewhere on a portable loop written in 16-lane chunks
//! that LLVM vectorises (i8 → i16 products summed into i32 lanes). Both compute the same integers,
//! so their results are bit-identical. Native builds split the rows of `x` over threads.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use crate::artifact::{Artifact, ArtifactSource, ArtifactWriter, Engine, SectionDtype};
use crate::clip::{ClipConfig, ClipModel};
use crate::files::CheckpointFiles;
use crate::weights::{VarBuilder, Weights};
use crate::{Error, Result};

/// The backend the quantizer loads through (it only needs somewhere to put the small f32 tensors).
type Cpu = burn::backend::NdArray<f32>;

/// Checkpoint files carried into a CLIP artifact as `bytes` sections, in this order.
const CLIP_FILES: [&str; 4] = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"];

/// Turn a CLIP checkpoint into a `burn-int8` artifact: every matrix (attention and MLP projections,
/// the two output projections, the patch embedding, the token embedding) as int8 with per-row scales,
/// the small tensors (norms, biases, position and class embeddings, `logit_scale`) as f32, and the
/// config, image processor and tokenizer files as they are.
///
/// The checkpoint is validated the way loading it validates it: the config, image processor and
/// tokenizer must parse and fit, and every tensor the architecture needs must be present with its
/// shape — the artifact is written by running [`ClipModel::load`] itself over the checkpoint, so it
/// holds exactly the sections loading it asks for. The same input always gives the same bytes.
/// Peak memory is the checkpoint plus its int8 copy.
pub fn quantize_clip(files: CheckpointFiles, source: ArtifactSource) -> Result<Vec<u8>> {
    let (config, _, _) = crate::clip::pipeline::read_settings(
        &files.config,
        &files.preprocessor_config,
        &files.tokenizer,
        files.tokenizer_config.as_deref(),
    )?;
    let weights = Weights::from_buffers(files.weights)?;
    let mut writer = ArtifactWriter::new(Engine::BurnInt8, "clip", source);
    writer.set_meta(serde_json::json!({ "weights": SCHEME_WEIGHTS, "activations": SCHEME_ACTIVATIONS }));
    let contents = [
        Some(&files.config),
        Some(&files.preprocessor_config),
        Some(&files.tokenizer),
        files.tokenizer_config.as_ref(),
    ];
    for (name, bytes) in CLIP_FILES.iter().zip(contents) {
        if let Some(bytes) = bytes {
            writer.add_bytes(name, bytes)?;
        }
    }
    let writer = RefCell::new(writer);
    ClipModel::<Cpu>::load(&VarBuilder::quantizing(&weights, &writer, &Default::default()), &config)?;
    writer.into_inner().finish()
}

/// The published name and shape of every tensor a CLIP of this config loads, in loading order (to
/// build checkpoints for tests and benchmarks).
pub fn clip_tensor_shapes(config: &ClipConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let writer = RefCell::new(ArtifactWriter::new(Engine::BurnInt8, "clip", ArtifactSource::default()));
    ClipModel::<Cpu>::load(&VarBuilder::random_quantizing(0, 0.0, &writer, &Default::default()), config)?;
    let writer = writer.into_inner();
    Ok(writer
        .sections()
        .iter()
        .filter(|s| !(s.name.ends_with(".scale") && s.dtype == SectionDtype::F32 && s.name.contains(".weight.")))
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect())
}

/// What an artifact holds, by kind of section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactSummary {
    /// Int8 matrices.
    pub int8_tensors: usize,
    /// f32 tensors, the matrices' scales included.
    pub f32_tensors: usize,
    /// What the same tensors take in f32 (scales excluded): the checkpoint's size at fp32.
    pub fp32_bytes: u64,
}

/// Count an artifact's tensors and their fp32 size.
pub fn summarize(artifact: &Artifact) -> ArtifactSummary {
    let mut summary = ArtifactSummary { int8_tensors: 0, f32_tensors: 0, fp32_bytes: 0 };
    for s in &artifact.header().sections {
        match s.dtype {
            SectionDtype::I8 => {
                summary.int8_tensors += 1;
                summary.fp32_bytes += 4 * s.len;
            }
            SectionDtype::F32 => {
                summary.f32_tensors += 1;
                let is_scale = s.name.strip_suffix(".scale").and_then(|w| artifact.section(w)).is_some();
                if !is_scale {
                    summary.fp32_bytes += s.len;
                }
            }
            SectionDtype::Bytes => {}
        }
    }
    summary
}

/// What `meta` of an artifact written by [`quantize_clip`] says about its numbers.
pub const SCHEME_WEIGHTS: &str = "int8 symmetric per output channel (scale = max|w| / 127)";
/// How activations are handled at run time.
pub const SCHEME_ACTIVATIONS: &str = "int8 symmetric per row, dynamic (W8A8, i32 accumulation)";

/// Quantize a row-major `[rows, cols]` f32 matrix, one scale per row.
///
/// Returns `(q, scales)`; a row of zeros (or of non-finite values) gets scale 0 and zero codes, so
/// dequantizing it gives zeros instead of NaN.
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
        QuantizedMatrix { buffer: Arc::new(bytes), range: 0..len, rows, cols, scales }
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
        Ok(QuantizedMatrix { buffer: artifact.buffer().clone(), range, rows, cols, scales })
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

    /// `y = x · Wᵀ (+ bias)` with activations quantized per row (W8A8).
    ///
    /// # Shapes
    /// - x: `m * cols` values (`[m, in]`, row-major); bias: `rows` values
    /// - output: `m * rows` values (`[m, out]`)
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(x, m, bias, dot_rows)
    }

    /// [`matmul`](Self::matmul) on the portable kernel, whatever the target (tests compare the two).
    pub fn matmul_portable(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(x, m, bias, portable::dot_rows)
    }

    fn matmul_with(&self, x: &[f32], m: usize, bias: Option<&[f32]>, kernel: Kernel) -> Vec<f32> {
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
        let run = |x: &[f32], y: &mut [f32]| {
            let rows = y.len() / n;
            let mut qx = vec![0i8; rows * k];
            let mut t = vec![0f32; rows];
            if k > 0 {
                for ((xr, qr), tr) in x.chunks_exact(k).zip(qx.chunks_exact_mut(k)).zip(&mut t) {
                    *tr = quantize_row(xr, qr);
                }
            }
            let mut dots = vec![0i32; rows * n];
            kernel(&qx, w, k, &mut dots);
            for ((yr, dr), &tr) in y.chunks_exact_mut(n).zip(dots.chunks_exact(n)).zip(&t) {
                for (o, ((yo, &d), &s)) in yr.iter_mut().zip(dr).zip(&self.scales).enumerate() {
                    *yo = d as f32 * (tr * s) + bias.map_or(0.0, |b| b[o]);
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

/// `dots[r * n + o] = Σ_i qx[r * k + i] · w[o * k + i]` for every row `r` of `qx` (`[m, k]`) and every
/// row `o` of `w` (`[n, k]`), with `dots` `[m, n]`.
type Kernel = fn(&[i8], &[i8], usize, &mut [i32]);

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

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use simd::dot_rows;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use portable::dot_rows;

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

mod portable {
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
        for &(m, k, n) in &[(1, 1, 1), (3, 17, 5), (7, 64, 8), (33, 771, 130)] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let bias = values(n, 3);
            let qm = QuantizedMatrix::quantize(&w, n, k);
            let ours = qm.matmul(&x, m, Some(&bias));
            assert_eq!(ours, qm.matmul_portable(&x, m, Some(&bias)));
            let (qx, tx) = quantize_rows(&x, m, k);
            for r in 0..m {
                for o in 0..n {
                    let exact: f64 = (0..k).map(|i| qx[r * k + i] as f64 * qm.codes()[o * k + i] as f64).sum::<f64>()
                        * tx[r] as f64
                        * qm.scales()[o] as f64
                        + bias[o] as f64;
                    // The integer sum is exact; only the final f32 scaling rounds (≤ 2 ulp of the scale
                    // product plus the bias add): 1e-5 relative to the row's magnitude is generous.
                    let tol = 1e-5 * (1.0 + exact.abs());
                    let got = ours[r * n + o] as f64;
                    assert!((got - exact).abs() <= tol, "[{m},{k},{n}] ({r},{o}): {got} vs {exact}");
                }
            }
            // Against the unquantized product, the error is the quantization noise: relative L2 ≤ 2e-2.
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
            assert!(rel < 2e-2, "[{m},{k},{n}] relative L2 vs f32 {rel:.3e}");
        }
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
