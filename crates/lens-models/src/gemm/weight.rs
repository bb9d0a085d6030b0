//! A linear layer's f32 weight, laid out once at load for the products it takes part in.
//!
//! A product of a few rows (a text query's 8 tokens, a decoding step) reads the whole weight for little
//! arithmetic, so it runs at the speed the weight streams in. Stored `[k, n]` row-major, a product reads it
//! column block by column block, one cache line per row and each row in another page, and the prefetchers
//! do not follow: 6–11 GB/s on this project's 2-core machine. `gemm` packs the weight on each call instead,
//! which costs a copy of it. Where the CPU has AVX-512, the weight is packed once here, into tiles of 32
//! columns (`[n / 32][k][32]`), which a product reads in order: 20–29 GB/s, and 2.2–2.7× less time for a CLIP
//! text tower's products at 8 rows. The same tiles serve many rows as well as `gemm` does (within this
//! machine's noise at 800 rows), so nothing keeps a second copy.
//!
//! Elsewhere (AVX2, wasm32) the weight stays `[k, n]` and goes to [`super::matmul`].

/// A `[k, n]` weight (`[in, out]`, burn's layout) for `x · w` products.
pub struct Weight {
    k: usize,
    n: usize,
    layout: Layout,
}

enum Layout {
    /// Row-major `[k, n]`.
    Rows(Vec<f32>),
    /// [`tiles::pack`]'s layout.
    #[cfg(target_arch = "x86_64")]
    Tiles(Vec<f32>),
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layout = match self.layout {
            Layout::Rows(_) => "rows",
            #[cfg(target_arch = "x86_64")]
            Layout::Tiles(_) => "tiles",
        };
        write!(f, "Weight [{}, {}] ({layout})", self.k, self.n)
    }
}

impl Weight {
    /// `values` is row-major `[k, n]`; it is re-laid where this CPU's kernels read another layout faster.
    pub fn new(values: Vec<f32>, k: usize, n: usize) -> Self {
        assert_eq!(values.len(), k * n, "the weight is not [{k}, {n}]");
        #[cfg(target_arch = "x86_64")]
        if tiles::supported() {
            return Weight { k, n, layout: Layout::Tiles(tiles::pack(&values, k, n)) };
        }
        Self::rows(values, k, n)
    }

    /// `values` kept row-major whatever the CPU (the layout other CPUs get; tests compare the two).
    pub fn rows(values: Vec<f32>, k: usize, n: usize) -> Self {
        assert_eq!(values.len(), k * n, "the weight is not [{k}, {n}]");
        Weight { k, n, layout: Layout::Rows(values) }
    }

    /// Input width `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x · w (+ bias)`: `x` is `[m, k]`, `bias` `[n]`. Returns `[m, n]`, computed on every core.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        match &self.layout {
            Layout::Rows(w) => super::matmul(x, m, k, w, n, bias),
            #[cfg(target_arch = "x86_64")]
            Layout::Tiles(t) => {
                assert_eq!(x.len(), m * k, "x is not [m, k]");
                let mut y = super::bias_rows(m, n, bias);
                tiles::multiply_add(x, m, k, t, n, &mut y);
                y
            }
        }
    }
}

/// The AVX-512 tile kernel: `y += x · w`, `w` in tiles of [`WIDTH`] columns.
#[cfg(target_arch = "x86_64")]
mod tiles {
    use std::arch::x86_64::*;

    /// Columns per tile: two AVX-512 registers per row of accumulators.
    pub const WIDTH: usize = 32;
    /// Rows of `x` per kernel call: 8 × 2 accumulators, 2 weight registers and a broadcast fit in 32 registers.
    const ROWS: usize = 8;
    /// Weight rows per pass (a 32 KiB slice of a tile, reused from L1 by every block of rows).
    const DEPTH: usize = 256;
    /// Rows of `x` per group: the group's `[rows, k]` block stays in L2 while every tile passes over it.
    const GROUP: usize = 128;
    /// Below this many multiply-adds a product stays on the calling thread.
    const PARALLEL_FROM: usize = 1 << 18;

    pub fn supported() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// `[k, n]` row-major → `[ceil(n / 32)][k][32]`, the last tile's missing columns zero.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Vec<f32> {
        let tiles = n.div_ceil(WIDTH);
        let mut packed = vec![0f32; tiles * k * WIDTH];
        if k == 0 {
            return packed; // no rows to copy (and no zero-sized chunks)
        }
        for (tile, block) in packed.chunks_exact_mut(k * WIDTH).enumerate() {
            let (start, cols) = (tile * WIDTH, WIDTH.min(n - tile * WIDTH));
            for (p, row) in block.chunks_exact_mut(WIDTH).enumerate() {
                row[..cols].copy_from_slice(&w[p * n + start..p * n + start + cols]);
            }
        }
        packed
    }

    /// The output, written by several threads at disjoint columns.
    #[derive(Clone, Copy)]
    struct Output(*mut f32);
    // SAFETY: each thread writes only the columns of its own tiles (see `multiply_add`).
    unsafe impl Send for Output {}
    unsafe impl Sync for Output {}

    /// `y += x · w`: `x` `[m, k]`, `packed` from [`pack`] of a `[k, n]` weight, `y` `[m, n]`. The tiles are split
    /// across rayon's threads.
    pub fn multiply_add(x: &[f32], m: usize, k: usize, packed: &[f32], n: usize, y: &mut [f32]) {
        use rayon::prelude::*;
        let tiles = n.div_ceil(WIDTH);
        assert!(supported(), "tile kernel without AVX-512");
        assert_eq!(x.len(), m * k, "x is not [m, k]");
        assert_eq!(packed.len(), tiles * k * WIDTH, "packed weight is not [{tiles}][{k}][{WIDTH}]");
        assert_eq!(y.len(), m * n, "y is not [m, n]");
        if m == 0 || k == 0 {
            return;
        }
        let out = Output(y.as_mut_ptr());
        let run = |range: std::ops::Range<usize>| {
            // SAFETY: the asserts above bound every read of `x` and `packed` and every write of `y` that
            // `tiles_into` makes; `range` is this call's own tiles, so no two threads write the same column,
            // and `y` is borrowed mutably for the whole call.
            unsafe { tiles_into(x, m, k, packed, n, out, range) }
        };
        let threads = if m * k * n < PARALLEL_FROM { 1 } else { rayon::current_num_threads().min(tiles) };
        if threads <= 1 {
            return run(0..tiles);
        }
        let per = tiles.div_ceil(threads);
        (0..tiles)
            .step_by(per)
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|start| run(start..tiles.min(start + per)));
    }

    /// `y += x · w` over the tiles in `range`.
    ///
    /// # Safety
    /// The shapes are as [`multiply_add`] asserts, `y` points at `[m, n]` values no one else touches in these
    /// tiles' columns, and the CPU has AVX-512.
    unsafe fn tiles_into(
        x: &[f32],
        m: usize,
        k: usize,
        packed: &[f32],
        n: usize,
        y: Output,
        range: std::ops::Range<usize>,
    ) {
        for group in (0..m).step_by(GROUP) {
            let group_end = m.min(group + GROUP);
            for tile in range.clone() {
                let cols = WIDTH.min(n - tile * WIDTH);
                for depth in (0..k).step_by(DEPTH) {
                    let depth_len = DEPTH.min(k - depth);
                    // SAFETY (all pointer arithmetic below): the tile's slice starts at `tile * k * WIDTH` and
                    // holds `k * WIDTH` values; the kernel reads `depth_len` of its rows from `depth`, rows
                    // `row..row + rows` of `x` from column `depth`, and `cols` columns of `y` from this tile's.
                    let w = unsafe { packed.as_ptr().add((tile * k + depth) * WIDTH) };
                    for row in (group..group_end).step_by(ROWS) {
                        let rows = ROWS.min(group_end - row);
                        let (a, out) = unsafe { (x.as_ptr().add(row * k + depth), y.0.add(row * n + tile * WIDTH)) };
                        let operands = Block { a, a_stride: k, w, depth: depth_len, y: out, y_stride: n, cols };
                        unsafe { kernel(rows, operands) }
                    }
                }
            }
        }
    }

    /// One kernel call's operands: `rows` rows of `a` (`a_stride` apart) times `depth` rows of one tile `w`,
    /// added onto `cols` columns of `y`'s rows (`y_stride` apart).
    #[derive(Clone, Copy)]
    struct Block {
        a: *const f32,
        a_stride: usize,
        w: *const f32,
        depth: usize,
        y: *mut f32,
        y_stride: usize,
        cols: usize,
    }

    /// [`block`] for `rows` (1..=8) rows.
    ///
    /// # Safety
    /// As for [`block`].
    unsafe fn kernel(rows: usize, b: Block) {
        // SAFETY: as the caller guarantees.
        unsafe {
            match rows {
                1 => block::<1>(b),
                2 => block::<2>(b),
                3 => block::<3>(b),
                4 => block::<4>(b),
                5 => block::<5>(b),
                6 => block::<6>(b),
                7 => block::<7>(b),
                _ => block::<8>(b),
            }
        }
    }

    /// `y[.., ..cols] += a · w` for `M` rows: the accumulators stay in registers over the whole depth, each
    /// weight row is loaded once for all `M` rows.
    ///
    /// # Safety
    /// `a` holds `M` rows of `depth` values `a_stride` apart, `w` `depth` rows of [`WIDTH`], `y` `M` rows of
    /// `cols` (≤ 32) values `y_stride` apart; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const M: usize>(b: Block) {
        // Masks keep a partial last tile's loads and stores inside `y`'s row (masked-off lanes are not touched).
        let low: __mmask16 = if b.cols >= 16 { 0xffff } else { (1u16 << b.cols) - 1 };
        let high: __mmask16 = if b.cols >= WIDTH {
            0xffff
        } else if b.cols <= 16 {
            0
        } else {
            (1u16 << (b.cols - 16)) - 1
        };
        // SAFETY: every access below is inside the regions the caller guarantees.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; M];
            for (r, acc) in acc.iter_mut().enumerate() {
                let y = b.y.add(r * b.y_stride);
                acc[0] = _mm512_maskz_loadu_ps(low, y);
                acc[1] = _mm512_maskz_loadu_ps(high, y.add(16));
            }
            for p in 0..b.depth {
                let w0 = _mm512_loadu_ps(b.w.add(p * WIDTH));
                let w1 = _mm512_loadu_ps(b.w.add(p * WIDTH + 16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*b.a.add(r * b.a_stride + p));
                    acc[0] = _mm512_fmadd_ps(a, w0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(a, w1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let y = b.y.add(r * b.y_stride);
                _mm512_mask_storeu_ps(y, low, acc[0]);
                _mm512_mask_storeu_ps(y.add(16), high, acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0).collect()
    }

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let dot: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + c] as f64).sum();
                y[r * n + c] = (dot + bias[c] as f64) as f32;
            }
        }
        y
    }

    /// Runs `f(threads)` in pools of 1, 2 and 3 threads natively (even and uneven splits); once on wasm32.
    fn on_every_pool(f: impl Fn(usize) + Send + Sync) {
        #[cfg(not(target_arch = "wasm32"))]
        for threads in [1, 2, 3] {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| f(threads));
        }
        #[cfg(target_arch = "wasm32")]
        f(1);
    }

    /// Every layout this CPU has, on shapes that cover partial tiles, depths past one pass, row counts past
    /// one block and one group, and products on one thread and split across threads (evenly or not).
    #[test]
    fn every_layout_matches_the_naive_product() {
        let shapes = [
            (1, 1, 1),
            (2, 0, 5),
            (3, 17, 9),
            (8, 300, 33),
            (9, 513, 64),
            (13, 40, 100),
            (1, 600, 1000),
            (130, 260, 70),
        ];
        for (m, k, n) in shapes {
            let (x, w, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            let with_bias = naive(&x, m, k, &w, n, &bias);
            let without = naive(&x, m, k, &w, n, &vec![0.0; n]);
            for weight in [Weight::new(w.clone(), k, n), Weight::rows(w.clone(), k, n)] {
                for (bias, want) in [(Some(bias.as_slice()), &with_bias), (None, &without)] {
                    on_every_pool(|threads| {
                        let got = weight.matmul(&x, m, bias);
                        assert_eq!(got.len(), m * n);
                        for (i, (g, e)) in got.iter().zip(want).enumerate() {
                            assert!(
                                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                                "{weight:?}, {m} rows, {threads} threads, at {i}: {g} vs {e}"
                            );
                        }
                    });
                }
            }
        }
    }

    #[test]
    fn no_rows_give_an_empty_product() {
        assert!(Weight::new(values(12, 1), 3, 4).matmul(&[], 0, None).is_empty());
    }

    #[test]
    #[should_panic(expected = "x is not [m, k]")]
    fn rows_of_the_wrong_width_are_refused() {
        Weight::new(values(12, 1), 3, 4).matmul(&values(4, 2), 1, None);
    }
}
