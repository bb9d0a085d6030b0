//! Errors of the GGUF reader: every malformed, hostile or unsupported input maps to one of these, so a
//! bad file is refused with a reason instead of a panic or an unbounded allocation.

use super::ggml_type::GgmlType;

/// What can go wrong while reading a GGUF file or dequantizing one of its tensors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: it starts with {found:02x?}, expected the magic \"GGUF\"")]
    BadMagic { found: Vec<u8> },

    /// The version field reads as a byte-swapped small number.
    #[error(
        "big-endian GGUF file (the version field reads {raw:#010x} little-endian); only little-endian files are supported"
    )]
    BigEndian { raw: u32 },

    /// Version 1 (32-bit counts), 0, or newer than 3.
    #[error("GGUF version {version} is not supported: this reader takes versions 2 and 3{}", version_hint(.version))]
    UnsupportedVersion { version: u32 },

    /// The file ends inside a field.
    #[error("truncated GGUF file: {what} needs {needed} bytes at offset {offset}, only {available} remain")]
    Truncated { what: &'static str, offset: u64, needed: u64, available: u64 },

    /// A count or length read from the file is beyond this reader's limits or cannot fit in the file.
    #[error("GGUF {what} is {value}, more than the limit of {limit}")]
    Limit { what: &'static str, value: u64, limit: u64 },

    /// A string is not UTF-8.
    #[error("GGUF {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: u64 },

    /// A metadata key is empty or appears twice.
    #[error("GGUF metadata key {key:?} is {problem}")]
    BadKey { key: String, problem: &'static str },

    /// A metadata value (or array element) type id outside 0..=12.
    #[error("GGUF metadata key `{key}` has unknown value type {id}")]
    UnknownValueType { key: String, id: u32 },

    /// A bool stored as a byte other than 0 or 1 (the GGUF spec calls the file invalid).
    #[error("GGUF metadata key `{key}` holds bool byte {byte} at offset {offset}; only 0 and 1 are valid")]
    InvalidBool { key: String, offset: u64, byte: u8 },

    /// Arrays nested deeper than [`super::MAX_ARRAY_DEPTH`].
    #[error("GGUF metadata key `{key}` nests arrays deeper than {limit}")]
    ArrayTooDeep { key: String, limit: usize },

    /// `general.alignment` is not a non-zero power of two stored as u32.
    #[error("GGUF general.alignment is {found}; it must be a u32 power of two")]
    BadAlignment { found: String },

    /// A tensor name is empty, too long or appears twice.
    #[error("GGUF tensor name {name:?} is {problem}")]
    BadTensorName { name: String, problem: String },

    /// A tensor's ggml type id is not one this reader knows the block layout of.
    #[error("tensor `{tensor}` has unknown ggml type id {id}")]
    UnknownGgmlType { tensor: String, id: u32 },

    /// A tensor's dimensions are invalid (too many, a row that is not whole blocks, an element count that
    /// overflows).
    #[error("tensor `{tensor}` has invalid dimensions {dims:?}: {problem}")]
    BadDims { tensor: String, dims: Vec<u64>, problem: String },

    /// A tensor's data does not start on the file's alignment.
    #[error("tensor `{tensor}` starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },

    /// A tensor's data extends past the end of the file.
    #[error(
        "tensor `{tensor}` ({len} bytes at data offset {offset}) extends past the data section of {data_len} bytes"
    )]
    OutOfBounds { tensor: String, offset: u64, len: u64, data_len: u64 },

    /// Two tensors share bytes.
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    Overlap { first: String, second: String },

    /// A tensor of a type this reader cannot dequantize.
    #[error(
        "tensor `{tensor}` is {ggml_type}, which Lens cannot dequantize (supported: F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K)"
    )]
    UnsupportedType { tensor: String, ggml_type: GgmlType },

    /// Data handed to [`super::dequantize`] is not a whole number of blocks.
    #[error("{what}: {len} bytes are not a whole number of {ggml_type} blocks of {type_size} bytes")]
    PartialBlock { what: String, ggml_type: GgmlType, len: usize, type_size: usize },

    /// The f32 values of a tensor do not fit in memory.
    #[error("tensor `{tensor}`: cannot allocate {elements} f32 values")]
    OutOfMemory { tensor: String, elements: u64 },

    /// No tensor of this name.
    #[error("GGUF file has no tensor `{name}`")]
    MissingTensor { name: String },

    /// No metadata key of this name.
    #[error("GGUF file has no metadata key `{key}`")]
    MissingKey { key: String },

    /// A metadata value has another type than the getter asks for.
    #[error("GGUF metadata key `{key}` is {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },

    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn version_hint(version: &u32) -> &'static str {
    match version {
        1 => " (version 1 had 32-bit lengths; convert the file again with a current llama.cpp)",
        _ => "",
    }
}

/// `Result` with the GGUF reader's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
