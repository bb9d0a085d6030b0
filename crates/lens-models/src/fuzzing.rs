//! Entry points for fuzzing the model file parsers (the fuzz targets in `fuzz/` and the corpus replay test
//! call them): any bytes give a parsed file or a typed error, never a panic or an allocation past what the
//! file holds.

use sha2::{Digest, Sha256};

use crate::artifact::{Artifact, PREFIX_BYTES};
use crate::gguf::Gguf;

/// Past this many bytes of tensor data, a tensor is not dequantized (each fuzz run stays fast).
const MAX_DEQUANTIZED_BYTES: u64 = 1 << 20;

/// GGUF: the header, metadata and tensor table (every check of [`Gguf::parse`]), then each small tensor
/// dequantized.
pub fn gguf(data: &[u8]) {
    let Ok(file) = Gguf::parse(data) else { return };
    for tensor in file.tensors() {
        if tensor.n_bytes() <= MAX_DEQUANTIZED_BYTES
            && let Ok((values, shape)) = file.tensor_f32(tensor.name())
        {
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{}", tensor.name());
        }
    }
}

/// A Lens model artifact: the header alone, then the whole file with its trailing checksum rewritten to
/// match (a mutated file would otherwise stop at the checksum), sections and all.
pub fn artifact(data: &[u8]) {
    let _ = Artifact::read_header(data);
    let mut bytes = data.to_vec();
    if bytes.len() >= PREFIX_BYTES + 32 {
        let body = bytes.len() - 32;
        let digest = Sha256::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&digest);
    }
    if let Ok(artifact) = Artifact::parse(bytes) {
        for section in &artifact.header().sections {
            let range = artifact.range(&section.name).expect("a listed section has a range");
            assert!(range.end <= artifact.len() - 32, "section {} runs into the checksum", section.name);
        }
    }
}
