//! The single-file model artifact the browser and the edge load (`lens models quantize` writes it).
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! "LENSART\0"  format version u32  header length u32  header JSON  zero padding to 64 bytes
//! payload: the sections, each starting on a 64-byte boundary (relative to the payload start)
//! SHA-256 of every byte before it (32 bytes)
//! ```
//!
//! The header names the engine that runs the artifact ([`Engine`]), the model family, the checkpoint it
//! was made from, and every section: a name, a dtype (`bytes`, `i8`, `f32`), a shape and its place in
//! the payload. Checkpoint files (`config.json`, `tokenizer.json`, ...) are `bytes` sections under their
//! own names. The trailing checksum is verified on load, so a truncated or corrupted download is
//! refused before any of it is used; its hex form is the artifact's identity.
//!
//! Sections are read in place: [`Artifact`] keeps the file in one shared buffer and hands out ranges, so
//! loading a model does not copy its int8 weights.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// First bytes of every artifact.
pub const MAGIC: &[u8; 8] = b"LENSART\0";
/// The layout version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Sections start on multiples of this (relative to the payload), so f32 data is aligned when the
/// buffer is.
pub const ALIGN: usize = 64;
/// Largest header accepted: a CLIP has a few hundred sections, far below this.
pub const MAX_HEADER_BYTES: usize = 16 << 20;
const CHECKSUM_BYTES: usize = 32;
/// The magic, the format version and the header length: what [`Artifact::header_len`] reads.
pub const PREFIX_BYTES: usize = 16;

/// Which engine runs an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    /// The burn modules of this crate with int8 weights (symmetric, one scale per output channel).
    #[serde(rename = "burn-int8")]
    BurnInt8,
    /// ONNX graphs run by tract (`visual.onnx` and `textual.onnx` sections), fp32 or int8.
    #[serde(rename = "onnx")]
    Onnx,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::BurnInt8 => "burn-int8",
            Engine::Onnx => "onnx",
        })
    }
}

/// Element type of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionDtype {
    /// Opaque bytes (a file); the shape is empty.
    Bytes,
    I8,
    F32,
}

impl SectionDtype {
    fn size(self) -> usize {
        match self {
            SectionDtype::Bytes | SectionDtype::I8 => 1,
            SectionDtype::F32 => 4,
        }
    }
}

/// One named piece of the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionInfo {
    pub name: String,
    pub dtype: SectionDtype,
    /// Empty for `bytes`.
    #[serde(default)]
    pub shape: Vec<usize>,
    /// Byte offset from the payload start.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The checkpoint an artifact was made from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArtifactSource {
    /// The identity the native server reports for the same weights (`repo@commit`, or a name and a
    /// hash of the weight files): embeddings are only comparable between equal ids.
    pub id: String,
    /// A human name (`openai/clip-vit-base-patch32`).
    pub name: String,
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactHeader {
    pub engine: Engine,
    /// Model family, `clip`.
    pub family: String,
    pub source: ArtifactSource,
    /// Anything else the engine wants to record (quantization scheme, tool version, ...).
    #[serde(default)]
    pub meta: serde_json::Value,
    pub sections: Vec<SectionInfo>,
}

/// A parsed, checksum-verified artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    bytes: Arc<Vec<u8>>,
    header: ArtifactHeader,
    payload_start: usize,
    index: HashMap<String, usize>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Artifact { message: message.into() }
}

/// `(header length, payload start)` implied by a header of `header_len` bytes.
fn payload_start(header_len: usize) -> usize {
    (PREFIX_BYTES + header_len).next_multiple_of(ALIGN)
}

impl Artifact {
    /// Whether `prefix` (the first bytes of a file) starts like an artifact.
    pub fn sniff(prefix: &[u8]) -> bool {
        prefix.starts_with(MAGIC)
    }

    /// The header's length, from an artifact's first [`PREFIX_BYTES`] bytes (or more): refuses another
    /// magic or version and a header over [`MAX_HEADER_BYTES`].
    pub fn header_len(prefix: &[u8]) -> Result<usize> {
        if prefix.len() < PREFIX_BYTES || !Self::sniff(prefix) {
            return Err(bad("not a Lens model artifact (no LENSART header)"));
        }
        let version = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(bad(format!("format version {version}; this build reads version {FORMAT_VERSION}")));
        }
        let header_len = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes")) as usize;
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!("header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")));
        }
        Ok(header_len)
    }

    /// The header alone, from the artifact's first [`PREFIX_BYTES`] + [`Artifact::header_len`] bytes:
    /// what a model is, without reading (or verifying) its weights.
    pub fn read_header(prefix: &[u8]) -> Result<ArtifactHeader> {
        let header_len = Self::header_len(prefix)?;
        let json = prefix.get(PREFIX_BYTES..PREFIX_BYTES + header_len).ok_or_else(|| bad("truncated header"))?;
        serde_json::from_slice(json).map_err(|e| bad(format!("header: {e}")))
    }

    /// Parse and verify an artifact. Refuses another magic or version, a header that is not valid JSON
    /// or points outside the payload, overlapping or duplicate sections, and a checksum mismatch.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < PREFIX_BYTES + CHECKSUM_BYTES {
            return Err(bad("not a Lens model artifact (no LENSART header)"));
        }
        let header_len = Self::header_len(&bytes)?;
        let body_end = bytes.len() - CHECKSUM_BYTES;
        let payload_start = payload_start(header_len);
        if payload_start > body_end {
            return Err(bad(format!("truncated: {} bytes cannot hold a {header_len}-byte header", bytes.len())));
        }
        let digest = Sha256::digest(&bytes[..body_end]);
        if digest.as_slice() != &bytes[body_end..] {
            return Err(bad("checksum mismatch: the file is corrupted or incomplete"));
        }
        let header = Self::read_header(&bytes[..PREFIX_BYTES + header_len])?;
        let payload_len = (body_end - payload_start) as u64;
        let mut index = HashMap::with_capacity(header.sections.len());
        let mut spans: Vec<(u64, u64)> = Vec::with_capacity(header.sections.len());
        for (i, s) in header.sections.iter().enumerate() {
            let end = s.offset.checked_add(s.len).filter(|&e| e <= payload_len);
            let Some(end) = end else {
                return Err(bad(format!("section `{}` points outside the payload", s.name)));
            };
            let elements = s.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let expected = match s.dtype {
                SectionDtype::Bytes if s.shape.is_empty() => Some(s.len),
                SectionDtype::Bytes => None,
                dtype => elements.and_then(|n| n.checked_mul(dtype.size())).map(|n| n as u64),
            };
            if expected != Some(s.len) {
                return Err(bad(format!(
                    "section `{}`: {} bytes do not hold {:?} of {:?}",
                    s.name, s.len, s.shape, s.dtype
                )));
            }
            if index.insert(s.name.clone(), i).is_some() {
                return Err(bad(format!("section `{}` appears twice", s.name)));
            }
            spans.push((s.offset, end));
        }
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(bad("sections overlap"));
        }
        Ok(Artifact { bytes: Arc::new(bytes), header, payload_start, index })
    }

    pub fn header(&self) -> &ArtifactHeader {
        &self.header
    }

    pub fn engine(&self) -> Engine {
        self.header.engine
    }

    /// Size of the whole file in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a parsed artifact (it has at least a header and a checksum).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Hex SHA-256 of the file's body: the artifact's identity.
    pub fn checksum_hex(&self) -> String {
        lens_core::ids::hex_lower(&self.bytes[self.bytes.len() - CHECKSUM_BYTES..])
    }

    pub fn section(&self, name: &str) -> Option<&SectionInfo> {
        self.index.get(name).map(|&i| &self.header.sections[i])
    }

    /// Byte range of a section inside [`Artifact::buffer`].
    pub fn range(&self, name: &str) -> Option<Range<usize>> {
        self.section(name).map(|s| {
            let start = self.payload_start + s.offset as usize;
            start..start + s.len as usize
        })
    }

    /// The whole file, shared: holders of a [`Artifact::range`] keep it alive without copying.
    pub fn buffer(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    /// A section's bytes.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.range(name).map(|r| &self.bytes[r])
    }

    /// A `bytes` section that must be present (a checkpoint file).
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.bytes(name).ok_or_else(|| bad(format!("has no `{name}`")))
    }

    /// A section after checking its dtype and shape.
    pub fn checked(&self, name: &str, dtype: SectionDtype, shape: &[usize]) -> Result<Range<usize>> {
        let s = self.section(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        if s.dtype != dtype {
            return Err(bad(format!("section `{name}` is {:?}, expected {dtype:?}", s.dtype)));
        }
        if s.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: s.shape.clone(),
            });
        }
        Ok(self.range(name).expect("section exists"))
    }

    /// An `f32` section's values (copied; used for the small tensors that stay in f32).
    pub fn f32_values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let range = self.checked(name, SectionDtype::F32, shape)?;
        Ok(self.bytes[range].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

/// Builds an artifact section by section.
#[derive(Debug)]
pub struct ArtifactWriter {
    header: ArtifactHeader,
    payload: Vec<u8>,
}

impl ArtifactWriter {
    pub fn new(engine: Engine, family: &str, source: ArtifactSource) -> Self {
        ArtifactWriter {
            header: ArtifactHeader {
                engine,
                family: family.to_string(),
                source,
                meta: serde_json::Value::Null,
                sections: Vec::new(),
            },
            payload: Vec::new(),
        }
    }

    pub fn set_meta(&mut self, meta: serde_json::Value) {
        self.header.meta = meta;
    }

    /// The sections written so far.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.header.sections
    }

    fn push(&mut self, name: &str, dtype: SectionDtype, shape: &[usize], data: &[u8]) -> Result<()> {
        if self.header.sections.iter().any(|s| s.name == name) {
            return Err(bad(format!("section `{name}` written twice")));
        }
        let elements: usize = shape.iter().product();
        if dtype != SectionDtype::Bytes && elements * dtype.size() != data.len() {
            return Err(bad(format!("section `{name}`: {} bytes for shape {shape:?}", data.len())));
        }
        self.payload.resize(self.payload.len().next_multiple_of(ALIGN), 0);
        self.header.sections.push(SectionInfo {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            offset: self.payload.len() as u64,
            len: data.len() as u64,
        });
        self.payload.extend_from_slice(data);
        Ok(())
    }

    /// A file, stored as it is.
    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.push(name, SectionDtype::Bytes, &[], data)
    }

    pub fn add_i8(&mut self, name: &str, shape: &[usize], data: &[i8]) -> Result<()> {
        let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
        self.push(name, SectionDtype::I8, shape, &bytes)
    }

    pub fn add_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(name, SectionDtype::F32, shape, &bytes)
    }

    /// The finished file: prefix, header, aligned payload, checksum.
    pub fn finish(self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.header).map_err(|e| bad(format!("header: {e}")))?;
        if header.len() > MAX_HEADER_BYTES {
            return Err(bad(format!("header of {} bytes exceeds {MAX_HEADER_BYTES}", header.len())));
        }
        let start = payload_start(header.len());
        let mut out = Vec::with_capacity(start + self.payload.len() + CHECKSUM_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.resize(start, 0);
        out.extend_from_slice(&self.payload);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w =
            ArtifactWriter::new(Engine::BurnInt8, "clip", ArtifactSource { id: "x@1".into(), name: "x".into() });
        w.add_bytes("config.json", b"{}").unwrap();
        w.add_i8("w", &[2, 3], &[1, -2, 3, -4, 5, -128]).unwrap();
        w.add_f32("w.scale", &[2], &[0.5, 0.25]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let a = Artifact::parse(sample()).unwrap();
        assert_eq!(a.engine(), Engine::BurnInt8);
        assert_eq!(a.header().source.id, "x@1");
        assert_eq!(a.file("config.json").unwrap(), b"{}");
        let r = a.checked("w", SectionDtype::I8, &[2, 3]).unwrap();
        assert_eq!(a.buffer()[r].iter().map(|&b| b as i8).collect::<Vec<_>>(), [1, -2, 3, -4, 5, -128]);
        assert_eq!(a.f32_values("w.scale", &[2]).unwrap(), [0.5, 0.25]);
        assert!(a.checked("w", SectionDtype::F32, &[2, 3]).is_err());
        assert!(matches!(a.checked("w", SectionDtype::I8, &[3, 2]), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(a.f32_values("nope", &[1]), Err(Error::MissingTensor { .. })));
        assert_eq!(a.checksum_hex().len(), 64);
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_refused() {
        let bytes = sample();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Artifact::parse(b).is_err(), "flip at {i} accepted");
        }
        for n in [0, 8, 16, bytes.len() / 2, bytes.len() - 1] {
            assert!(Artifact::parse(bytes[..n].to_vec()).is_err(), "truncation to {n} accepted");
        }
        assert!(Artifact::parse(b"PK\x03\x04 not an artifact at all, a zip file maybe......".to_vec()).is_err());
    }

    #[test]
    fn sections_outside_or_overlapping_are_refused_even_with_a_valid_checksum() {
        let forge = |edit: &dyn Fn(&mut ArtifactHeader)| {
            let a = Artifact::parse(sample()).unwrap();
            let mut header = a.header().clone();
            edit(&mut header);
            let payload = a.buffer()[a.payload_start..a.len() - CHECKSUM_BYTES].to_vec();
            let json = serde_json::to_vec(&header).unwrap();
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
            out.extend_from_slice(&json);
            out.resize(payload_start(json.len()), 0);
            out.extend_from_slice(&payload);
            let digest = Sha256::digest(&out);
            out.extend_from_slice(&digest);
            Artifact::parse(out)
        };
        assert!(forge(&|_| {}).is_ok());
        assert!(forge(&|h| h.sections[1].offset = u64::MAX - 2).is_err());
        assert!(forge(&|h| h.sections[1].len = 1 << 40).is_err());
        assert!(forge(&|h| h.sections[2].offset = h.sections[1].offset).is_err());
        assert!(forge(&|h| h.sections[1].shape = vec![3, 3]).is_err());
        assert!(forge(&|h| h.sections[2].name = "w".into()).is_err());
    }
}
