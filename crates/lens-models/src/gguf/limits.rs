//! Upper bounds on what a GGUF file may declare. Every count and length is also checked against the bytes
//! left in the file before anything is allocated, so these only cap what a well-formed file could ask for.
//! They sit far above any published model: llama.cpp's own caps are 1 GiB strings and 2^30-element
//! arrays, four dimensions and 64-byte tensor names (the GGUF spec's limit).

/// Metadata key/value pairs in one file.
pub const MAX_METADATA_KEYS: u64 = 1 << 20;
/// Tensors in one file.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Bytes of one metadata key (the GGUF spec allows up to 2^16 - 1).
pub const MAX_KEY_BYTES: u64 = (1 << 16) - 1;
/// Bytes of one string value (a chat template, one token).
pub const MAX_STRING_BYTES: u64 = 1 << 30;
/// Elements of one metadata array (a vocabulary, its merges).
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Arrays inside arrays inside ...: gguf-py writes nested arrays, llama.cpp reads none.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Bytes of a tensor name (the GGUF spec's limit).
pub const MAX_TENSOR_NAME_BYTES: u64 = 64;
/// Dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
