//! Transformer blocks on host memory: layer norm, multi-head attention, activations and residual adds over
//! row-major `f32` slices.
//!
//! Where every weight of an encoder is on the host (burn-ndarray's [`crate::nn::HostLinear`], or int8), the
//! encoders of CLIP and BLIP's ViT run their layers here instead of through burn-ndarray: its element-wise
//! operations iterate over dynamic-rank indices, its `matmul` copies both operands, and reading a tensor
//! that another holds as well copies it one element at a time. On ViT-B/32 those costs were more than half
//! of an image's time. The arithmetic is the reference's (`torch.nn.functional.layer_norm`, `softmax`, the
//! `ACT2FN` activations), in f32 as PyTorch computes it; the parity tests hold both paths to the same
//! tolerances.

use crate::gemm::{Parallel, View, product};

/// `LayerNorm` over each row of `x` (`[rows, d]`, rows of `gamma.len()` values): `(x - mean) / sqrt(var +
/// eps) * gamma + beta`, the variance biased, as `torch.nn.LayerNorm`.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f32> {
    let d = gamma.len();
    assert_eq!(beta.len(), d, "gamma and beta differ in length");
    assert!(d > 0 && x.len().is_multiple_of(d), "x is not [rows, {d}]");
    let mut y = x.to_vec();
    par_chunks(&mut y, d * (PAR_CHUNK / d).max(1), |_, rows| {
        for row in rows.chunks_exact_mut(d) {
            // f64 sums: the mean and variance of 768–1024 f32 values without the drift of a running f32 sum.
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean) * (v as f64 - mean)).sum::<f64>() / d as f64;
            let (inv, mean) = ((1.0 / (var + eps).sqrt()) as f32, mean as f32);
            for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    });
    y
}

/// `x += y`, element by element (a residual connection).
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "residual of another shape");
    par_chunks(x, PAR_CHUNK, |i, part| part.iter_mut().zip(&y[i * PAR_CHUNK..]).for_each(|(a, b)| *a += b));
}

/// Values per task when an element-wise pass is split across cores (64 KiB of f32).
const PAR_CHUNK: usize = 16 * 1024;

/// `f(i, chunk i)` over `x` in chunks of `chunk` values, on every core natively. The serial element-wise passes of a
/// layer (norms, activations, residuals) kept one of two cores idle for a fifth of a ViT-B/32 batch.
fn par_chunks(x: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    if x.len() > chunk {
        use rayon::prelude::*;
        x.par_chunks_mut(chunk).enumerate().for_each(|(i, part)| f(i, part));
        return;
    }
    x.chunks_mut(chunk.max(1)).enumerate().for_each(|(i, part)| f(i, part));
}

/// `x * sigmoid(1.702 x)` in place (CLIP's `quick_gelu`).
pub fn quick_gelu(x: &mut [f32]) {
    map(x, |v| v / (1.0 + exp(-1.702 * v)))
}

/// Exact GELU, `x * Φ(x)` through `erf`, in place (`gelu`).
pub fn gelu(x: &mut [f32]) {
    map(x, |v| 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2)))
}

/// GELU's tanh approximation in place (`gelu_new`, `gelu_pytorch_tanh`).
pub fn gelu_tanh(x: &mut [f32]) {
    map(x, |v| 0.5 * v * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh()))
}

/// `max(x, 0)` in place.
pub fn relu(x: &mut [f32]) {
    map(x, |v| v.max(0.0))
}

/// `x * sigmoid(x)` in place (`silu`, `swish`).
pub fn silu(x: &mut [f32]) {
    map(x, |v| v / (1.0 + exp(-v)))
}

/// `x = f(x)` for every value: compiled for AVX2 where the CPU has it, so that a branch-free `f` ([`exp`],
/// [`erf`]) runs 8 values at a time instead of the x86-64 baseline's 4.
#[inline(always)]
fn map(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Send) {
    par_chunks(x, PAR_CHUNK, |_, part| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked on the line above).
            return unsafe { map_avx2(part, &f) };
        }
        part.iter_mut().for_each(|v| *v = f(*v));
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn map_avx2(x: &mut [f32], f: impl Fn(f32) -> f32) {
    x.iter_mut().for_each(|v| *v = f(*v));
}

/// `erf(x)` within 1e-6 (Eigen's rational approximation on [-4, 4], ±1 outside), branch-free like [`exp`];
/// libm's f64 `erf` per value was most of BLIP's GELU.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_473_9e-2;
    x * p / q
}

/// `e^x` within 2 ulp of the correctly rounded value (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial
/// in `r`, `2^n` from the exponent bits), with no branch or call, so that a loop over it vectorizes; libm's
/// `expf`, one call per value, was 6% of a ViT-B/32 image. Below -87.3 it is 0; above 88.3 it is clamped.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.3);
    let rounded = x * LOG2E + ROUND;
    let n = rounded - ROUND;
    // n as an integer, read from the mantissa bits (an `as` cast checks for NaN lane by lane and stays scalar).
    let n_int = rounded.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p =
        ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let e = (p * r * r + r + 1.0) * f32::from_bits(((n_int + 127) << 23) as u32);
    if underflow { 0.0 } else { e }
}

/// Which keys each query may not see: `hidden[((b * seq) + query) * seq + key]` for `b` below `batches`, which
/// is 1 (one mask for every row of the batch) or the batch.
pub struct Mask {
    pub hidden: Vec<bool>,
    pub batches: usize,
}

/// The shape of a multi-head attention: `batch` sequences of `seq` queries, and as many keys (`keys`), split
/// into `heads` heads of `head_dim` values.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub batch: usize,
    pub seq: usize,
    pub keys: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// `softmax(q · kᵀ / sqrt(head_dim), masked) · v` per sequence and head, heads side by side in the output
/// (`[batch * seq, heads * head_dim]`, the layout the output projection reads).
///
/// `q` is `[batch * seq, ≥ heads * head_dim]`, `k` and `v` `[batch * keys, ≥ heads * head_dim]`, each a
/// [`View`] with its own row stride (so a fused `qkv` projection's output is read in place); head `h` of a row
/// is its values `h * head_dim ..`. A query whose every key is masked gets NaN, as in the reference.
pub fn attention(q: View, k: View, v: View, shape: Heads, mask: Option<&Mask>) -> Vec<f32> {
    let Heads { batch, seq, keys, heads, head_dim } = shape;
    let hidden = heads * head_dim;
    let scale = (head_dim as f64).powf(-0.5) as f32;
    if let Some(mask) = mask {
        assert!(mask.batches == 1 || mask.batches == batch, "mask rows are neither 1 nor the batch");
        assert_eq!(mask.hidden.len(), mask.batches * seq * keys, "mask is not [batches, seq, keys]");
    }
    // One (sequence, head) pair per task; each writes its own [seq, head_dim] block, copied into place after.
    let one = |item: usize| -> Vec<f32> {
        let (b, h) = (item / heads, item % heads);
        let (q, k, v) = (q.skip(b * seq, h * head_dim), k.skip(b * keys, h * head_dim), v.skip(b * keys, h * head_dim));
        let mut scores = vec![0f32; seq * keys];
        product(Parallel::No, seq, head_dim, keys, q, k.t(), &mut scores, keys);
        for (query, row) in scores.chunks_exact_mut(keys).enumerate() {
            let hidden = mask.map(|m| {
                let base = ((if m.batches == 1 { 0 } else { b }) * seq + query) * keys;
                &m.hidden[base..base + keys]
            });
            softmax_row(row, scale, hidden);
        }
        let mut context = vec![0f32; seq * head_dim];
        product(Parallel::No, seq, keys, head_dim, View::rows(&scores, keys), v, &mut context, head_dim);
        context
    };
    let blocks = for_each_item(batch * heads, one);
    let mut out = vec![0f32; batch * seq * hidden];
    for (item, block) in blocks.into_iter().enumerate() {
        let (b, h) = (item / heads, item % heads);
        for (s, row) in block.chunks_exact(head_dim).enumerate() {
            let at = (b * seq + s) * hidden + h * head_dim;
            out[at..at + head_dim].copy_from_slice(row);
        }
    }
    out
}

/// `softmax(row * scale)` with the masked entries at -inf, in place.
fn softmax_row(row: &mut [f32], scale: f32, hidden: Option<&[bool]>) {
    for (i, v) in row.iter_mut().enumerate() {
        *v = if hidden.is_some_and(|m| m[i]) { f32::NEG_INFINITY } else { *v * scale };
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|v| *v = exp(*v - max)); // apart from the sum, so that it vectorizes
    let sum: f32 = row.iter().sum();
    row.iter_mut().for_each(|v| *v /= sum);
}

/// `f(0) .. f(n - 1)`, on every core natively.
fn for_each_item<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..n).map(f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0).collect()
    }

    /// The reference, one (sequence, head) at a time in f64.
    fn naive(qkv: &[f32], s: Heads, mask: Option<&Mask>) -> Vec<f32> {
        let hidden = s.heads * s.head_dim;
        let mut out = vec![0f32; s.batch * s.seq * hidden];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.seq {
                    let q = |d: usize| qkv[(b * s.seq + i) * 3 * hidden + h * s.head_dim + d] as f64;
                    let kv = |j: usize, part: usize, d: usize| {
                        qkv[(b * s.keys + j) * 3 * hidden + part * hidden + h * s.head_dim + d] as f64
                    };
                    let scores: Vec<f64> = (0..s.keys)
                        .map(|j| {
                            let masked = mask.is_some_and(|m| {
                                m.hidden[((if m.batches == 1 { 0 } else { b }) * s.seq + i) * s.keys + j]
                            });
                            if masked {
                                f64::NEG_INFINITY
                            } else {
                                (0..s.head_dim).map(|d| q(d) * kv(j, 1, d)).sum::<f64>() / (s.head_dim as f64).sqrt()
                            }
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    for d in 0..s.head_dim {
                        let v: f64 = (0..s.keys).map(|j| weights[j] / sum * kv(j, 2, d)).sum();
                        out[(b * s.seq + i) * hidden + h * s.head_dim + d] = v as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_over_a_fused_qkv_matches_the_naive_one_with_and_without_a_causal_mask() {
        let shape = Heads { batch: 3, seq: 6, keys: 6, heads: 2, head_dim: 4 };
        let hidden = 8;
        let qkv = values(3 * 6 * 3 * hidden, 5);
        let view = |part: usize| View::rows(&qkv[part * hidden..], 3 * hidden);
        let causal = Mask { hidden: (0..36).map(|i| i % 6 > i / 6).collect(), batches: 1 };
        for mask in [None, Some(&causal)] {
            let got = attention(view(0), view(1), view(2), shape, mask);
            let want = naive(&qkv, shape, mask);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-5, "{i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let x = [1.0, 2.0, 3.0, 4.0, -2.0, 0.0, 2.0, 8.0];
        let y = layer_norm(&x, &[1.0, 1.0, 2.0, 1.0], &[0.0, 0.0, 0.0, 1.0], 1e-5);
        // row 0: mean 2.5, var 1.25
        let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
        let want0 = [-1.5 * inv, -0.5 * inv, 2.0 * 0.5 * inv, 1.5 * inv + 1.0];
        for (g, w) in y[..4].iter().zip(want0) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        let row1 = &y[4..];
        assert!(row1[1] < 0.0 && row1[3] > 1.0, "{row1:?}");
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_and_zero_far_below() {
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (exp(x), (x as f64).exp() as f32);
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_finite());
    }

    #[test]
    fn erf_is_within_a_millionth_of_libm() {
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (erf(x) as f64, libm::erf(x as f64));
            assert!((got - want).abs() < 1e-6, "erf({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs = [-3.0f32, -0.5, 0.0, 0.7, 2.5];
        let check = |act: fn(&mut [f32]), f: fn(f64) -> f64| {
            let mut y = xs;
            act(&mut y);
            for (x, y) in xs.iter().zip(y) {
                assert!((y as f64 - f(*x as f64)).abs() < 1e-6, "f({x}) = {y}, want {}", f(*x as f64));
            }
        };
        check(quick_gelu, |x| x / (1.0 + (-1.702 * x).exp()));
        check(gelu, |x| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())));
        check(gelu_tanh, |x| {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        });
        check(relu, |x| x.max(0.0));
        check(silu, |x| x / (1.0 + (-x).exp()));
    }
}
