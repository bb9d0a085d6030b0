//! Shared test data: clustered unit vectors from a fixed seed.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt() as f32;
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `n` unit vectors around `centres` random centres: `centre + noise × N(0, I/dim)`, normalised.
pub fn clustered(n: usize, dim: usize, centres: usize, noise: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let cs: Vec<Vec<f32>> = (0..centres).map(|_| normalized((0..dim).map(|_| gaussian(&mut rng)).collect())).collect();
    let sigma = noise / (dim as f32).sqrt();
    (0..n)
        .map(|i| {
            let c = &cs[i % centres];
            normalized(c.iter().map(|&x| x + sigma * gaussian(&mut rng)).collect())
        })
        .collect()
}

/// The true top `k` ids by cosine, in f64 (ties by lower id).
pub fn brute_force(data: &[(u64, Vec<f32>)], q: &[f32], k: usize) -> Vec<u64> {
    let qn = normalized(q.to_vec());
    let mut scored: Vec<(f64, u64)> = data
        .iter()
        .map(|(id, v)| {
            let vn = normalized(v.clone());
            (vn.iter().zip(&qn).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum(), *id)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// |a ∩ b|.
pub fn overlap(a: &[u64], b: &[u64]) -> usize {
    a.iter().filter(|x| b.contains(x)).count()
}
