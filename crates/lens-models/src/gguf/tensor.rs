//! Tensor infos: where each tensor's data sits and how to read it.
//!
//! GGUF stores dimensions fastest-varying first (ggml's `ne[0]` is the row length), the reverse of
//! PyTorch / HF, whose last dimension is the contiguous one: a `Linear` weight published as
//! `[out, in]` is stored as `[in, out]`. [`TensorInfo::dims`] is the file's order,
//! [`TensorInfo::shape`] the PyTorch order, and the data is the same row-major buffer either way.

use super::cursor::Cursor;
use super::error::{Error, Result};
use super::ggml_type::GgmlType;
use super::limits::{MAX_DIMS, MAX_TENSOR_NAME_BYTES};

/// One tensor's name, dimensions, type and place in the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    n_elements: u64,
    n_bytes: u64,
}

impl TensorInfo {
    /// One tensor info: name, dimension count, dimensions, ggml type id, data offset. Checks everything
    /// that does not depend on the rest of the file (the offset is checked by the caller).
    pub(crate) fn read(c: &mut Cursor<'_>) -> Result<Self> {
        let name = c.string("tensor name", MAX_TENSOR_NAME_BYTES)?;
        if name.is_empty() {
            return Err(Error::BadTensorName { name, problem: "empty".into() });
        }
        let n_dims = c.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(Error::BadDims {
                tensor: name,
                dims: Vec::new(),
                problem: format!("{n_dims} dimensions, at most {MAX_DIMS} are allowed"),
            });
        }
        let dims = (0..n_dims).map(|_| c.u64("tensor dimension")).collect::<Result<Vec<u64>>>()?;
        let bad = |problem: String| Error::BadDims { tensor: name.clone(), dims: dims.clone(), problem };
        // ggml keeps dimensions and element counts in i64; `shape` hands dimensions out as usize.
        if dims.iter().any(|&d| d > i64::MAX as u64 || usize::try_from(d).is_err()) {
            return Err(bad("a dimension is too large".into()));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad("the element count overflows".into()))?;
        let id = c.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(id).ok_or_else(|| Error::UnknownGgmlType { tensor: name.clone(), id })?;
        let row = dims.first().copied().unwrap_or(1);
        let block = ggml_type.block_size() as u64;
        if row % block != 0 {
            return Err(bad(format!("rows of {row} elements are not whole {ggml_type} blocks of {block}")));
        }
        // Types with more bytes per block than elements (F32, I64, ...) can still overflow here.
        let n_bytes = (n_elements / block)
            .checked_mul(ggml_type.type_size() as u64)
            .ok_or_else(|| bad(format!("the size in bytes of {ggml_type} data overflows")))?;
        let offset = c.u64("tensor data offset")?;
        Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions as the file stores them: fastest-varying first (ggml's `ne`).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Dimensions in PyTorch / HF order (the file's, reversed): slowest-varying first.
    pub fn shape(&self) -> Vec<usize> {
        // `read` refused dimensions that do not fit a usize.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Byte offset of the data from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Bytes of data.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}
