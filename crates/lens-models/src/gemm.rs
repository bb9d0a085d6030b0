//! f32 matrix products on the host, for burn-ndarray's linear layers and the host kernels of [`crate::cpu`].
//!
//! burn-ndarray 0.21 copies both operands of every `matmul` (its reshape of a shared array always makes an
//! owned copy), so a linear layer copied its whole weight matrix at each call: a decoding step of a 1.1B
//! LLaMA copied 8.8 GB and took 5 s. Here the weights stay where they were loaded.
//!
//! Natively the products run in the `gemm` crate: AVX-512 kernels where the CPU has them (chosen at run time,
//! AVX2+FMA otherwise) and the work split across rayon's threads, one per core. On this project's 2-core
//! machine that is 290–340 GFLOP/s on a CLIP layer's shapes where matrixmultiply on one thread gave 120–140.
//! On wasm32 (one thread, no AVX) `matrixmultiply`'s packed kernel does the large products and a few rows (a
//! decoding step) stream through each weight row once instead of packing it.

mod weight;

pub use weight::Weight;

/// `x · w (+ bias)`: `x` is `[m, k]`, `w` `[k, n]` (row-major, burn's `[in, out]`), `bias` `[n]`. Returns
/// `[m, n]`.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), k * n, "w is not [k, n]");
    #[cfg(target_arch = "wasm32")]
    if m <= FEW_ROWS {
        let mut y = bias_rows(m, n, bias);
        columns(x, m, k, w, n, &mut y);
        return y;
    }
    product_with_bias(m, k, n, View::rows(x, k), View::rows(w, n), bias)
}

/// `a · b (+ bias)`, `a` `[m, k]`, `b` `[k, n]`, `bias` `[n]`, as a new row-major `[m, n]` matrix, on every
/// core. The bias fills every row first and the product adds onto it, with no pass of its own.
pub fn product_with_bias(m: usize, k: usize, n: usize, a: View, b: View, bias: Option<&[f32]>) -> Vec<f32> {
    let mut y = bias_rows(m, n, bias);
    let write = if bias.is_some() { Write::Add } else { Write::Overwrite };
    multiply(Parallel::Yes, write, Operands { m, k, n, a, b }, &mut y, n);
    y
}

/// `[m, n]` rows that each hold `bias` (zeros without one).
pub(crate) fn bias_rows(m: usize, n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    match bias {
        Some(bias) => {
            assert_eq!(bias.len(), n, "bias is not [n]");
            bias.repeat(m)
        }
        None => vec![0f32; m * n],
    }
}

/// Whether a product replaces what its output held or adds onto it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Overwrite,
    Add,
}

/// A matrix inside a slice: element `(r, c)` is `data[r * row_stride + c * col_stride]`. A transposed view is
/// the same slice with the strides swapped, so `q · kᵀ` reads `k` where it lies.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub fn rows(data: &'a [f32], row_stride: usize) -> Self {
        View { data, row_stride, col_stride: 1 }
    }

    /// The same matrix transposed.
    pub fn t(self) -> Self {
        View { data: self.data, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    /// The matrix from row `rows`, column `cols` on.
    pub fn skip(self, rows: usize, cols: usize) -> Self {
        View { data: &self.data[rows * self.row_stride + cols * self.col_stride..], ..self }
    }

    /// Panics unless every element of an `[r, c]` matrix lies inside the slice.
    fn check(&self, r: usize, c: usize, what: &str) {
        if r > 0 && c > 0 {
            let last = (r - 1) * self.row_stride + (c - 1) * self.col_stride;
            assert!(last < self.data.len(), "{what}: [{r}, {c}] view reaches {last}, slice holds {}", self.data.len());
        }
    }
}

/// Whether one product may use every core (a product inside a loop that is itself split across cores may not).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    Yes,
    No,
}

/// `y = a · b`, `a` `[m, k]`, `b` `[k, n]`, into the row-major `[m, n]` matrix whose rows are `y_row_stride`
/// apart in `y` (what `y` held there is overwritten).
#[allow(clippy::too_many_arguments)] // the three shapes and the output stride are one product's description
pub fn product(parallel: Parallel, m: usize, k: usize, n: usize, a: View, b: View, y: &mut [f32], y_row_stride: usize) {
    multiply(parallel, Write::Overwrite, Operands { m, k, n, a, b }, y, y_row_stride)
}

/// One product's operands: `a` `[m, k]` times `b` `[k, n]`.
#[derive(Clone, Copy)]
struct Operands<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: View<'a>,
    b: View<'a>,
}

impl Operands<'_> {
    /// Panics unless both views lie inside their slices and `y` holds the `[m, n]` result with rows
    /// `y_row_stride` apart: what the unsafe products below rely on.
    fn check(&self, y: &[f32], y_row_stride: usize) {
        let Operands { m, k, n, a, b } = *self;
        a.check(m, k, "a");
        b.check(k, n, "b");
        assert!(m == 0 || ((m - 1) * y_row_stride + n <= y.len() && n <= y_row_stride), "y cannot hold [{m}, {n}]");
    }
}

fn multiply(parallel: Parallel, write: Write, ops: Operands, y: &mut [f32], y_row_stride: usize) {
    let Operands { m, k, n, .. } = ops;
    if m == 0 || n == 0 {
        return;
    }
    ops.check(y, y_row_stride);
    if k == 0 {
        if write == Write::Overwrite {
            for row in y.chunks_mut(y_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = if parallel == Parallel::Yes { rayon::current_num_threads() } else { 1 };
        if threads > 1 && m < SPLIT_COLUMNS_BELOW_ROWS && n >= 2 * COLUMN_BLOCK {
            split_columns(threads, write, ops, y, y_row_stride);
        } else {
            let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
            gemm_into(parallelism, write, ops, y, y_row_stride);
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = parallel; // one thread
        // SAFETY: `ops.check` above keeps every element of the `[m, k]`, `[k, n]` and `[m, n]` views inside their
        // slices; `y` is borrowed mutably, so nothing else reads or writes it.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                ops.a.data.as_ptr(),
                ops.a.row_stride as isize,
                ops.a.col_stride as isize,
                ops.b.data.as_ptr(),
                ops.b.row_stride as isize,
                ops.b.col_stride as isize,
                if write == Write::Add { 1.0 } else { 0.0 },
                y.as_mut_ptr(),
                y_row_stride as isize,
                1,
            );
        }
    }
}

/// Below this many rows, the columns are split across threads here: `gemm`'s own split gave a 50-row product
/// (a ViT-B/32 image) less than one thread did (96 against 115 GFLOP/s at `[50, 768] · [768, 3072]`), this
/// one 230. From 64 rows on its split is as good or better.
#[cfg(not(target_arch = "wasm32"))]
const SPLIT_COLUMNS_BELOW_ROWS: usize = 64;

/// Columns per block of that split are a multiple of this (whole AVX-512 registers).
#[cfg(not(target_arch = "wasm32"))]
const COLUMN_BLOCK: usize = 16;

/// [`product`] with `threads` column blocks, each one thread's product into its own buffer, then copied into
/// place (for fewer than 64 rows the copy is small against the product).
#[cfg(not(target_arch = "wasm32"))]
fn split_columns(threads: usize, write: Write, ops: Operands, y: &mut [f32], y_row_stride: usize) {
    use rayon::prelude::*;
    let Operands { m, n, b, .. } = ops;
    let width = n.div_ceil(threads).div_ceil(COLUMN_BLOCK) * COLUMN_BLOCK;
    let y_in = &*y;
    let blocks: Vec<(usize, Vec<f32>)> = (0..n)
        .step_by(width)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let cols = width.min(n - start);
            let block_of_y = |r: usize| &y_in[r * y_row_stride + start..r * y_row_stride + start + cols];
            let mut block = match write {
                Write::Add => (0..m).flat_map(block_of_y).copied().collect(),
                Write::Overwrite => vec![0f32; m * cols],
            };
            let block_ops = Operands { n: cols, b: b.skip(0, start), ..ops };
            gemm_into(gemm::Parallelism::None, write, block_ops, &mut block, cols);
            (start, block)
        })
        .collect();
    for (start, block) in blocks {
        let cols = block.len() / m;
        for (r, row) in block.chunks_exact(cols).enumerate() {
            y[r * y_row_stride + start..r * y_row_stride + start + cols].copy_from_slice(row);
        }
    }
}

/// One `gemm` call: `y = a · b`, or `y += a · b` (views checked by [`product`]).
#[cfg(not(target_arch = "wasm32"))]
fn gemm_into(parallelism: gemm::Parallelism, write: Write, ops: Operands, y: &mut [f32], y_row_stride: usize) {
    let Operands { m, k, n, a, b } = ops;
    ops.check(y, y_row_stride);
    // SAFETY: `ops.check` keeps every element of the `[m, k]`, `[k, n]` and `[m, n]` views inside their
    // slices; `y` is borrowed mutably, so nothing else reads or writes it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            y_row_stride as isize,
            write == Write::Add,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Up to this many rows, the weight is streamed once rather than packed (packing costs a copy of it).
#[cfg(target_arch = "wasm32")]
const FEW_ROWS: usize = 8;

/// `y = x · w`, `y` being `[m, n]`: each weight row is read once, for every row of `x` (the inner loop runs
/// over contiguous columns and vectorizes).
#[cfg(target_arch = "wasm32")]
fn columns(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, y: &mut [f32]) {
    for kk in 0..k {
        let w_row = &w[kk * n..(kk + 1) * n];
        for r in 0..m {
            let a = x[r * k + kk];
            if a == 0.0 {
                continue;
            }
            let y_row = &mut y[r * n..(r + 1) * n];
            for (out, &wv) in y_row.iter_mut().zip(w_row) {
                *out += a * wv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + c] as f64).sum();
            }
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0).collect()
    }

    #[test]
    fn every_path_matches_the_naive_product() {
        // one row, a few rows, many rows (split across threads), a large product
        for (m, k, n) in
            [(1, 5, 3), (3, 17, 9), (1, 600, 1000), (2, 512, 777), (9, 33, 65), (40, 70, 30), (130, 300, 257)]
        {
            let (x, w) = (values(m * k, 1), values(k * n, 2));
            let bias = values(n, 3);
            let got = matmul(&x, m, k, &w, n, Some(&bias));
            let want = naive(&x, m, k, &w, n);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let expected = w + bias[i % n];
                assert!((g - expected).abs() <= 1e-4 * (1.0 + expected.abs()), "[{m},{k},{n}] {i}: {g} vs {expected}");
            }
        }
    }

    #[test]
    fn strided_views_multiply_in_place() {
        // q · kᵀ with q and k interleaved in one [rows, 2 * d] buffer, written into the middle of a wider output.
        let (rows, d) = (7, 5);
        let qk = values(rows * 2 * d, 4);
        let q = View::rows(&qk, 2 * d);
        let k = View::rows(&qk[d..], 2 * d);
        let mut y = vec![f32::NAN; rows * (rows + 3)];
        product(Parallel::No, rows, d, rows, q, k.t(), &mut y[1..], rows + 3);
        for r in 0..rows {
            for c in 0..rows {
                let want: f32 = (0..d).map(|i| qk[r * 2 * d + i] * qk[c * 2 * d + d + i]).sum();
                let got = y[1 + r * (rows + 3) + c];
                assert!((got - want).abs() < 1e-5, "({r},{c}) {got} vs {want}");
            }
        }
        assert!(y[0].is_nan(), "outside the output is untouched");
    }

    #[test]
    #[should_panic(expected = "view reaches")]
    fn a_view_past_its_slice_is_refused() {
        let a = values(10, 1);
        let mut y = vec![0.0; 4];
        product(Parallel::No, 2, 6, 2, View::rows(&a, 6), View::rows(&a, 2), &mut y, 2);
    }
}
