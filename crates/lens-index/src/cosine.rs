//! Scores are cosines of unit vectors: every vector an index is given is checked and normalised
//! here, and every score kept in `[-1, 1]`.

use crate::IndexError;
use crate::kernels;

/// Checks `vector` against `dim` and returns its L2-normalised copy.
pub(crate) fn prepare(dim: usize, vector: &[f32]) -> Result<Vec<f32>, IndexError> {
    if vector.len() != dim {
        return Err(IndexError::DimensionMismatch { expected: dim, got: vector.len() });
    }
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(IndexError::NotFinite);
    }
    // The norm is accumulated in f64, so a finite f32 vector cannot overflow it. A zero vector stays
    // zero, and so may one of a few subnormals (its norm rounds to 0 in f32): both are rejected.
    let v = lens_core::vector::normalized(vector.to_vec());
    if kernels::dot_f32(&v, &v) < 0.5 {
        return Err(IndexError::ZeroVector);
    }
    Ok(v)
}

/// A cosine similarity of unit vectors, kept in `[-1, 1]` despite rounding.
pub(crate) fn clamp_score(s: f32) -> f32 {
    s.clamp(-1.0, 1.0)
}
