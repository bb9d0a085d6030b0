//! A parsed GGUF file: header, metadata, tensor infos, and each tensor's bytes or f32 values.
//!
//! Layout (GGUF v2 and v3 are the same little-endian layout; v3 only allowed big-endian files, which
//! are refused here; v1 had 32-bit counts and is refused too):
//!
//! ```text
//! "GGUF"  version u32  tensor count u64  metadata count u64
//! metadata: key (u64 length + UTF-8), value type u32, value      (repeated)
//! tensor infos: name, dimension count u32, dimensions u64 × n,
//!               ggml type u32, data offset u64                   (repeated)
//! zero padding to `general.alignment` (u32, default 32)
//! data section: each tensor at its offset, a multiple of the alignment
//! ```
//!
//! Everything is checked against the bytes there are before it is used or allocated: counts, lengths,
//! dimensions (element counts without overflow), types, offsets and overlaps. The file is read from a
//! byte slice (or anything that derefs to one) so the same code runs in the browser.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::dequant::dequantize;
use super::error::{Error, Result};
use super::limits::{MAX_METADATA_KEYS, MAX_TENSORS};
use super::metadata::Metadata;
use super::tensor::TensorInfo;
use super::value::Value;

/// First bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Fewest bytes a tensor info takes (empty name, no dimensions): bounds the tensor count by the file size.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Fewest bytes a metadata pair takes (an empty key, refused only once read, and a u8 value).
const MIN_METADATA_BYTES: u64 = 8 + 4 + 1;

/// A GGUF file over its bytes `D` (`Vec<u8>`, `&[u8]`, `Arc<[u8]>`, ...): tensor data is read in place.
pub struct Gguf<D = Vec<u8>> {
    data: D,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl<D> std::fmt::Debug for Gguf<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Gguf<Vec<u8>> {
    /// Read a whole file into memory and parse it.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Gguf::parse(bytes)
    }
}

impl<D: AsRef<[u8]>> Gguf<D> {
    /// Parse and check a GGUF file. Refuses another magic, big-endian files, versions other than 2 and 3,
    /// anything that points outside the file or past [`super::limits`], unknown value or tensor types,
    /// duplicate keys or tensor names, a bad alignment, misaligned or overlapping tensor data.
    pub fn parse(data: D) -> Result<Self> {
        let bytes = data.as_ref();
        let mut c = Cursor::new(bytes);
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic.to_vec() });
        }
        let version = c.u32("version")?;
        // A big-endian file's small version number reads as a multiple of 2^16 here (as llama.cpp checks).
        if version != 0 && version & 0xffff == 0 {
            return Err(Error::BigEndian { raw: version });
        }
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion { version });
        }
        let n_tensors = c.count("tensor count", MAX_TENSORS, MIN_TENSOR_INFO_BYTES)?;
        let n_metadata = c.count("metadata key count", MAX_METADATA_KEYS, MIN_METADATA_BYTES)?;
        let metadata = Metadata::read(&mut c, n_metadata)?;
        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(Value::U32(a)) => return Err(Error::BadAlignment { found: a.to_string() }),
            Some(other) => return Err(Error::BadAlignment { found: format!("a {}", other.describe()) }),
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let info = TensorInfo::read(&mut c)?;
            if index.insert(info.name().to_string(), i).is_some() {
                return Err(Error::BadTensorName { name: info.name().to_string(), problem: "duplicated".into() });
            }
            tensors.push(info);
        }

        let len = bytes.len() as u64;
        let data_offset = (c.pos() as u64).next_multiple_of(alignment);
        if n_tensors > 0 && data_offset > len {
            return Err(Error::Truncated {
                what: "padding before the data section",
                offset: c.pos() as u64,
                needed: data_offset - c.pos() as u64,
                available: c.remaining() as u64,
            });
        }
        let data_len = len.saturating_sub(data_offset);
        let mut spans = Vec::with_capacity(n_tensors);
        for (i, t) in tensors.iter().enumerate() {
            if t.offset() % alignment != 0 {
                return Err(Error::Misaligned { tensor: t.name().to_string(), offset: t.offset(), alignment });
            }
            let end = t.offset().checked_add(t.n_bytes()).filter(|&end| end <= data_len);
            let Some(end) = end else {
                return Err(Error::OutOfBounds {
                    tensor: t.name().to_string(),
                    offset: t.offset(),
                    len: t.n_bytes(),
                    data_len,
                });
            };
            spans.push((t.offset(), end, i));
        }
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(Error::Overlap {
                first: tensors[w[0].2].name().to_string(),
                second: tensors[w[1].2].name().to_string(),
            });
        }
        Ok(Gguf { data, version, alignment, data_offset, metadata, tensors, index })
    }

    /// The file format version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor in it.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor's bytes as stored (blocks of its ggml type).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        // `parse` checked that the range lies inside the file, so these fit a usize.
        let start = (self.data_offset + t.offset()) as usize;
        Ok(&self.data.as_ref()[start..start + t.n_bytes() as usize])
    }

    /// A tensor dequantized to f32, with its shape in PyTorch / HF order (GGUF's dimensions reversed; the
    /// values are the same row-major buffer in both orders). F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K;
    /// any other type is [`Error::UnsupportedType`].
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let data = self.tensor_data(name)?;
        let t = &self.tensors[self.index[name]];
        Ok((dequantize(name, t.ggml_type(), data)?, t.shape()))
    }
}
