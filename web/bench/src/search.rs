//! Search over the local index: `n` random unit vectors, exact f32 scan ([`ExactIndex`]) against the
//! int8 scan ([`Int8Index`]), top 10, one query at a time as the search box issues them.

use lens_core::rng::SplitMix64;
use lens_index::{ExactIndex, Hit, Int8Index, VectorIndex};

use crate::clock;
use crate::report::Row;

/// CLIP ViT-B/32's embedding width.
pub const DIM: usize = 512;
/// Results per query, as the app shows.
pub const K: usize = 10;

/// A random direction: Gaussian components (Box–Muller), so the points are uniform on the sphere.
/// The index normalises on insert.
fn random_vector(rng: &mut SplitMix64) -> Vec<f32> {
    (0..DIM)
        .map(|_| {
            let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
            let u2 = rng.next_f64();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// What one index size measured: the two table rows and the mean top-10 overlap of int8 with exact.
pub struct SearchResult {
    pub exact: Row,
    pub int8: Row,
    /// Mean of |int8 top-10 ∩ exact top-10| over the queries (10 = identical sets).
    pub overlap: f64,
}

fn ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

/// Fill both indexes with `n` vectors and time `queries` top-10 searches on each (after one warm-up
/// query), against `target_ms`.
pub fn bench(n: usize, queries: usize, target_ms: Option<f64>) -> SearchResult {
    let mut rng = SplitMix64::new(0x5EA7C4 ^ n as u64);
    let mut exact = ExactIndex::new(DIM);
    let mut int8 = Int8Index::new(DIM);
    for id in 0..n as u64 {
        let v = random_vector(&mut rng);
        exact.insert(id, &v).expect("random vectors are finite and non-zero");
        int8.insert(id, &v).expect("random vectors are finite and non-zero");
    }
    let queries: Vec<Vec<f32>> = (0..queries).map(|_| random_vector(&mut rng)).collect();
    let search = |index: &dyn VectorIndex, q: &[f32]| index.search(q, K, None).expect("valid query");

    let mut at = 0;
    let exact_samples = clock::time(1, queries.len(), || {
        let hits = search(&exact, &queries[at % queries.len()]);
        at += 1;
        hits
    });
    let mut at = 0;
    let int8_samples = clock::time(1, queries.len(), || {
        let hits = search(&int8, &queries[at % queries.len()]);
        at += 1;
        hits
    });
    let overlap = queries
        .iter()
        .map(|q| {
            let want = ids(&search(&exact, q));
            ids(&search(&int8, q)).iter().filter(|id| want.contains(id)).count() as f64
        })
        .sum::<f64>()
        / queries.len() as f64;

    let what = format!("search top-{K}, {}k × {DIM}", n / 1000);
    let mut exact = Row::new(what.clone(), "f32 ExactIndex", exact_samples);
    let mut int8 = Row::new(what, "int8 Int8Index", int8_samples).versus(&exact);
    if let Some(t) = target_ms {
        exact = exact.target(t);
        int8 = int8.target(t);
    }
    SearchResult { exact, int8, overlap }
}
