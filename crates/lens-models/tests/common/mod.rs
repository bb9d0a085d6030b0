//! What the parity tests share: the relative L2 error and its bar.

/// Relative L2 tolerance of every float comparison against the reference (DESIGN.md's fp32 bar).
pub const REL_L2_TOLERANCE: f64 = 1e-4;

/// ‖ours − reference‖ / ‖reference‖, accumulated in f64.
pub fn rel_l2(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let diff: f64 = ours.iter().zip(reference).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let norm: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

/// Fails unless `ours` is within [`REL_L2_TOLERANCE`] of `reference`; prints the error either way.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    let err = rel_l2(ours, reference);
    eprintln!("{what}: relative L2 error {err:.2e}");
    assert!(err <= REL_L2_TOLERANCE, "{what}: relative L2 error {err:.3e} > {REL_L2_TOLERANCE:e}");
}
