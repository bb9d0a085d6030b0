//! Exact scan over `i8`-quantised vectors.

use crate::cosine::{clamp_score, prepare};
use crate::kernels::dot_i8;
use crate::rows::Rows;
use crate::topk::TopK;
use crate::{Hit, IndexError, VectorIndex};

/// Brute-force cosine search over vectors quantised to `i8`: a quarter of [`ExactIndex`]'s memory.
///
/// Each normalised vector `v` is stored as `q = round(v / s)` with its own scale
/// `s = max|v_i| / 127` (symmetric, no zero point). The query is quantised the same way, the dot
/// product is accumulated exactly in `i32`, and the score is `(q_a · q_b) · s_a · s_b`. Nothing is
/// rescored in `f32` (no `f32` copy is kept), so scores are approximate: for 512-d CLIP-like
/// embeddings the error is about 1e-3 (each component is off by at most `s / 2`; the worst seen in
/// the 128-d test is 3e-3). That only swaps near-ties: the test keeps 9.9 of the exact top 10 on
/// average, the 512-d benchmark a recall@10 of about 0.99. Returned scores are these
/// approximations, clamped to `[-1, 1]`.
///
/// [`ExactIndex`]: crate::ExactIndex
#[derive(Debug, Clone)]
pub struct Int8Index {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    rows: Rows,
}

/// Quantises a normalised vector: codes into `out`, returns the scale.
fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    // A normalised vector has max ≥ 1/sqrt(dim) > 0.
    let scale = max / 127.0;
    let inv = 1.0 / scale;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl Int8Index {
    /// An empty index of `dim`-dimensional vectors.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(dim: usize) -> Self {
        assert!(dim > 0, "an index needs at least one dimension");
        Self { dim, codes: Vec::new(), scales: Vec::new(), rows: Rows::default() }
    }

    /// Approximate heap bytes held: codes, scales, ids and the id map.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity() + self.scales.capacity() * 4 + self.rows.memory_bytes()
    }

    /// The index as bytes (its codes and scales as they are, so [`Int8Index::decode`] gives back the
    /// same scores): `ENCODING_MAGIC`, then little-endian `dim: u32`, `n: u64`, the `n` ids (`u64`),
    /// the `n` scales (`f32`) and the `n · dim` codes (`i8`). The edge keeps its index in R2 this way.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.rows.len();
        let mut out = Vec::with_capacity(ENCODING_MAGIC.len() + 12 + n * (12 + self.dim));
        out.extend_from_slice(ENCODING_MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        for id in self.rows.ids() {
            out.extend_from_slice(&id.to_le_bytes());
        }
        for s in &self.scales {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend(self.codes.iter().map(|&c| c as u8));
        out
    }

    /// Reads what [`Int8Index::encode`] wrote.
    ///
    /// # Errors
    /// [`IndexError::Snapshot`] when the bytes are not such an encoding, are truncated or have bytes
    /// left over, repeat an id, or hold a scale that is not finite and positive.
    pub fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        let bad = |why: &str| IndexError::Snapshot(format!("int8 index: {why}"));
        let rest = bytes.strip_prefix(ENCODING_MAGIC.as_slice()).ok_or_else(|| bad("not an int8 index encoding"))?;
        if rest.len() < 12 {
            return Err(bad("truncated header"));
        }
        let dim = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let n = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
        let body = &rest[12..];
        if dim == 0 {
            return Err(bad("dimension 0"));
        }
        let expected =
            usize::try_from(n).ok().and_then(|n| n.checked_mul(12 + dim)).ok_or_else(|| bad("count out of range"))?;
        if body.len() != expected {
            return Err(bad(&format!("{} bytes for {n} vectors of {dim}, expected {expected}", body.len())));
        }
        let n = n as usize;
        let (ids, rest) = body.split_at(n * 8);
        let (scales, codes) = rest.split_at(n * 4);
        let mut index = Self::new(dim);
        for id in ids.chunks_exact(8) {
            let (_, new) = index.rows.slot(u64::from_le_bytes(id.try_into().expect("8 bytes")));
            if !new {
                return Err(bad("an id appears twice"));
            }
        }
        index.scales = scales.chunks_exact(4).map(|s| f32::from_le_bytes(s.try_into().expect("4 bytes"))).collect();
        if !index.scales.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(bad("a scale is not finite and positive"));
        }
        index.codes = codes.iter().map(|&c| c as i8).collect();
        Ok(index)
    }
}

/// First bytes of [`Int8Index::encode`]'s output (format version 1).
pub const ENCODING_MAGIC: &[u8; 8] = b"LENSI8\x00\x01";

impl VectorIndex for Int8Index {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn contains(&self, id: u64) -> bool {
        self.rows.contains(id)
    }

    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let v = prepare(self.dim, vector)?;
        let (r, new) = self.rows.slot(id);
        if new {
            self.scales.push(0.0);
            self.codes.resize(self.codes.len() + self.dim, 0);
        }
        self.scales[r] = quantize(&v, &mut self.codes[r * self.dim..(r + 1) * self.dim]);
        Ok(())
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some((hole, last)) = self.rows.remove(id) else {
            return false;
        };
        if hole != last {
            self.codes.copy_within(last * self.dim..(last + 1) * self.dim, hole * self.dim);
            self.scales[hole] = self.scales[last];
        }
        self.scales.pop();
        self.codes.truncate(last * self.dim);
        true
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<Hit>, IndexError> {
        let q = prepare(self.dim, query)?;
        let mut qc = vec![0i8; self.dim];
        let qs = quantize(&q, &mut qc);
        let mut top = TopK::new(k);
        for ((&id, &s), row) in self.rows.ids().iter().zip(&self.scales).zip(self.codes.chunks_exact(self.dim)) {
            let score = clamp_score(dot_i8(&qc, row) as f32 * (qs * s));
            if top.would_keep(id, score) && filter.is_none_or(|f| f(id)) {
                top.push(Hit { id, score });
            }
        }
        Ok(top.into_sorted())
    }
}
