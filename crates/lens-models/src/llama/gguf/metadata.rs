//! Typed reads of GGUF metadata keys, and GGUF reader errors as this crate's, shared by the config, tokenizer and
//! weight loaders of a LLaMA GGUF file.

use crate::gguf::{self, Metadata};
use crate::{Error, Result};

/// What errors about the file's metadata are reported against.
const FILE: &str = "GGUF metadata";

pub(super) fn metadata_error(message: impl std::fmt::Display) -> Error {
    Error::config(FILE, message)
}

/// A GGUF reader error as this crate's: a missing tensor and an unsupported type keep their own variants.
pub(super) fn gguf_error(err: gguf::Error) -> Error {
    match err {
        gguf::Error::MissingTensor { name } => Error::MissingTensor { name },
        gguf::Error::UnsupportedType { tensor, ggml_type } => Error::UnsupportedDtype {
            name: tensor,
            dtype: format!("{} (GGUF; Lens dequantizes F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K)", ggml_type.name()),
        },
        other => Error::config("GGUF file", other),
    }
}

pub(super) fn uint(md: &Metadata, key: &str) -> Result<Option<usize>> {
    Ok(integer(md, key)?.map(|v| v as usize))
}

pub(super) fn required(md: &Metadata, key: &str) -> Result<usize> {
    uint(md, key)?.ok_or_else(|| metadata_error(format!("no `{key}`")))
}

pub(super) fn float(md: &Metadata, key: &str) -> Result<Option<f64>> {
    match md.get(key) {
        None => Ok(None),
        Some(gguf::Value::F32(v)) => Ok(Some(*v as f64)),
        Some(gguf::Value::F64(v)) => Ok(Some(*v)),
        Some(other) => Err(metadata_error(format!("`{key}` is {}, expected a float", other.describe()))),
    }
}

/// An integer metadata value of any integer type; `None` when the key is absent.
pub(super) fn integer(md: &Metadata, key: &str) -> Result<Option<u64>> {
    use gguf::Value as V;
    let value = match md.get(key) {
        None => return Ok(None),
        Some(v) => v,
    };
    let n: Option<u64> = match value {
        V::U8(v) => Some(*v as u64),
        V::U16(v) => Some(*v as u64),
        V::U32(v) => Some(*v as u64),
        V::U64(v) => Some(*v),
        V::I8(v) => u64::try_from(*v).ok(),
        V::I16(v) => u64::try_from(*v).ok(),
        V::I32(v) => u64::try_from(*v).ok(),
        V::I64(v) => u64::try_from(*v).ok(),
        other => {
            return Err(metadata_error(format!("`{key}` is {}, expected an integer", other.describe())));
        }
    };
    n.map(Some).ok_or_else(|| metadata_error(format!("`{key}` is negative")))
}

pub(super) fn flag(md: &Metadata, key: &str) -> Result<Option<bool>> {
    match md.get(key) {
        None => Ok(None),
        Some(gguf::Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(metadata_error(format!("`{key}` is {}, expected bool", other.describe()))),
    }
}
