//! [`summarize`]: what an int8 artifact holds, by kind of section.

use crate::artifact::{Artifact, SectionDtype};

/// What an artifact holds, by kind of section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactSummary {
    /// Int8 matrices.
    pub int8_tensors: usize,
    /// f32 tensors, the matrices' scales included.
    pub f32_tensors: usize,
    /// What the same tensors take in f32 (scales excluded): the checkpoint's size at fp32.
    pub fp32_bytes: u64,
}

/// Count an artifact's tensors and their fp32 size.
pub fn summarize(artifact: &Artifact) -> ArtifactSummary {
    let mut summary = ArtifactSummary { int8_tensors: 0, f32_tensors: 0, fp32_bytes: 0 };
    for s in &artifact.header().sections {
        match s.dtype {
            SectionDtype::I8 => {
                summary.int8_tensors += 1;
                summary.fp32_bytes += 4 * s.len;
            }
            SectionDtype::F32 => {
                summary.f32_tensors += 1;
                let is_scale = s.name.strip_suffix(".scale").and_then(|w| artifact.section(w)).is_some();
                if !is_scale {
                    summary.fp32_bytes += s.len;
                }
            }
            SectionDtype::Bytes => {}
        }
    }
    summary
}
