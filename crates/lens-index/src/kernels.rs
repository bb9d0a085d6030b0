//! Dot products written so that LLVM vectorises them on every target (no intrinsics). On x86-64 CPUs
//! with AVX2 and FMA (checked at run time, once) the `f32` one is compiled again for those: twice the
//! lanes and fused multiply-adds, the HNSW build's and the exact scan's inner loop.

/// `f32` dot product. Every index uses this one function, so a vector scored by two of them gets the
/// same score; which instructions compute it is fixed for the life of the process.
///
/// # Panics
/// In debug builds, if the lengths differ.
#[inline]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, the only requirement of a `target_feature` function.
        return unsafe { dot_f32_avx2_fma(a, b) };
    }
    dot_f32_portable(a, b)
}

/// Eight independent accumulators (floating-point addition is not associative, so a single
/// accumulator would stay scalar).
#[inline]
fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// Four 8-lane accumulators (enough to hide the FMA latency) with fused multiply-adds. Written with
/// intrinsics: LLVM keeps `f32::mul_add` loops scalar.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_f32_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let load = |s: &[f32], at: usize| {
        assert!(at + 8 <= s.len());
        // SAFETY: the 8 floats from `at` are inside `s` (asserted).
        unsafe { _mm256_loadu_ps(s.as_ptr().add(at)) }
    };
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(load(a, i + 8 * j), load(b, i + 8 * j), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(a, i), load(b, i), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let quad = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let one = _mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair));
    let mut total = _mm_cvtss_f32(one);
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        total = x.mul_add(*y, total);
    }
    total
}

/// `i8` dot product accumulated in `i32`: exact, since |a·b| ≤ 127² × dim < 2³¹ for any dimension
/// up to 133 000.
#[inline]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let tail: i32 = ra.iter().zip(rb).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
    acc.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_the_naive_sums() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        assert!((f64::from(dot_f32(&a, &b)) - naive).abs() < 1e-5);
        assert!((f64::from(dot_f32_portable(&a, &b)) - naive).abs() < 1e-5);
        let long: Vec<f32> = (0..517).map(|i| (i as f32 * 0.07).sin()).collect();
        let naive: f64 = long.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((f64::from(dot_f32(&long, &long)) - naive).abs() < 1e-3);

        let p: Vec<i8> = (0..37).map(|i| (i * 7 % 255 - 127) as i8).collect();
        let q: Vec<i8> = (0..37).map(|i| (i * 13 % 255 - 127) as i8).collect();
        let naive: i32 = p.iter().zip(&q).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum();
        assert_eq!(dot_i8(&p, &q), naive);
        assert_eq!(dot_i8(&[-127; 33], &[-127; 33]), 127 * 127 * 33);
    }
}
