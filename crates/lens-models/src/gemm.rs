//! f32 matrix products on the host for burn-ndarray's linear layers.
//!
//! burn-ndarray 0.21 copies both operands of every `matmul` (its reshape of a shared array always makes an
//! owned copy), so a linear layer copied its whole weight matrix at each call: a decoding step of a 1.1B
//! LLaMA copied 8.8 GB and took 5 s. Here the weights stay where they were loaded: a few rows (a decoding
//! step) stream through each weight row once, split across threads by output column; more rows go to
//! `matrixmultiply`'s packed kernel, as ndarray's own `dot` does.

/// `x · w (+ bias)`: `x` is `[m, k]`, `w` `[k, n]` (row-major, burn's `[in, out]`), `bias` `[n]`. Returns
/// `[m, n]`.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), k * n, "w is not [k, n]");
    let mut y = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    if m <= FEW_ROWS {
        few_rows(x, m, k, w, n, &mut y);
    } else {
        // SAFETY: the pointers and strides describe the row-major `[m, k]`, `[k, n]` and `[m, n]` buffers
        // asserted and allocated above.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                n as isize,
                1,
                0.0,
                y.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    if let Some(bias) = bias {
        for row in y.chunks_exact_mut(n) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    }
    y
}

/// Up to this many rows, the weight is streamed once rather than packed (packing costs a copy of it).
const FEW_ROWS: usize = 8;

/// Weights (in values) from which splitting the columns across threads pays for starting them.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_WEIGHTS: usize = 1 << 18;

fn few_rows(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, y: &mut [f32]) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n.div_ceil(64));
        if threads > 1 && k * n >= PARALLEL_WEIGHTS {
            let chunk = n.div_ceil(threads);
            let parts: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|start| {
                        let end = (start + chunk).min(n);
                        s.spawn(move || {
                            let mut part = vec![0f32; m * (end - start)];
                            columns(x, m, k, w, n, start..end, &mut part);
                            (start, part)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a matmul thread panicked")).collect()
            });
            for (start, part) in parts {
                let width = part.len() / m;
                for (r, row) in part.chunks_exact(width).enumerate() {
                    y[r * n + start..r * n + start + width].copy_from_slice(row);
                }
            }
            return;
        }
    }
    columns(x, m, k, w, n, 0..n, y);
}

/// `y[:, cols] = x · w[:, cols]`, `y` being `[m, cols.len()]`: each weight row is read once, for every row of
/// `x` (the inner loop runs over contiguous columns and vectorizes).
fn columns(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, cols: std::ops::Range<usize>, y: &mut [f32]) {
    let width = cols.len();
    for kk in 0..k {
        let w_row = &w[kk * n + cols.start..kk * n + cols.end];
        for r in 0..m {
            let a = x[r * k + kk];
            if a == 0.0 {
                continue;
            }
            let y_row = &mut y[r * width..(r + 1) * width];
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

    #[test]
    fn every_path_matches_the_naive_product() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0).collect()
        };
        // few rows on one thread, few rows split by columns, packed
        for (m, k, n) in [(1, 5, 3), (3, 17, 9), (1, 600, 1000), (2, 512, 777), (9, 33, 65), (40, 70, 30)] {
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
}
