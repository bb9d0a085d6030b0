//! Reading HuggingFace safetensors checkpoints as they are published.
//!
//! [`Weights`] indexes one or more safetensors buffers (sharded checkpoints are several files);
//! [`VarBuilder`] walks it with `pp("…")` prefixes named after the checkpoint's own tensor names, as
//! candle's `VarBuilder` does, so each module's loader reads like its state dict. Every conversion
//! (f16/bf16/f64 → f32) and every layout change (PyTorch `Linear` is `[out, in]`, burn's is
//! `[in, out]`) happens here or in [`crate::nn`], nowhere else.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors};

use crate::artifact::{Artifact, ArtifactWriter, SectionDtype};
use crate::int8::{QuantizedMatrix, scale_name};
use crate::{Error, Result};

/// Location of one tensor inside one of the buffers.
#[derive(Debug, Clone)]
struct Entry {
    buffer: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Where one safetensors file's bytes are.
#[derive(Debug)]
enum Buffer {
    /// In memory (the browser and the edge fetch checkpoints as bytes).
    Bytes(Vec<u8>),
    /// An open file, read one tensor at a time when a loader asks for it, so that loading a model directory
    /// never holds the checkpoint in memory beside the model's own tensors.
    #[cfg(unix)]
    File { file: std::fs::File, name: String },
}

/// An index over the tensors of one checkpoint (one or more safetensors files, in memory or on disk).
#[derive(Debug, Default)]
pub struct Weights {
    buffers: Vec<Buffer>,
    entries: HashMap<String, Entry>,
}

/// Longest safetensors header read from a file (the safetensors crate's own limit).
#[cfg(unix)]
const MAX_HEADER_BYTES: u64 = 100_000_000;

impl Weights {
    /// Index safetensors buffers; `names` label them in errors (file names, usually).
    pub fn from_buffers(buffers: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let mut weights = Weights::default();
        for (name, bytes) in buffers {
            let (header_len, metadata) = SafeTensors::read_metadata(&bytes)
                .map_err(|e| Error::Safetensors { file: Some(name.clone()), message: e.to_string() })?;
            weights.index(&name, &metadata, 8 + header_len, bytes.len())?;
            weights.buffers.push(Buffer::Bytes(bytes));
        }
        Ok(weights)
    }

    /// Index safetensors files on disk, `(name in errors, path)`, reading only their headers: each tensor is
    /// read from its file when a loader asks for it (peak memory at load: the model plus one tensor).
    #[cfg(unix)]
    pub fn open_files(files: &[(String, std::path::PathBuf)]) -> Result<Self> {
        use std::os::unix::fs::FileExt;
        let mut weights = Weights::default();
        for (name, path) in files {
            let io = |source| Error::Io { path: path.display().to_string(), source };
            let bad = |message: String| Error::Safetensors { file: Some(name.clone()), message };
            let file = std::fs::File::open(path).map_err(io)?;
            let file_len = file.metadata().map_err(io)?.len();
            let mut len = [0u8; 8];
            file.read_exact_at(&mut len, 0).map_err(io)?;
            let header_len = u64::from_le_bytes(len);
            if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
                return Err(bad(format!("header of {header_len} bytes in a file of {file_len}")));
            }
            let mut header = vec![0u8; header_len as usize];
            file.read_exact_at(&mut header, 8).map_err(io)?;
            let metadata: safetensors::tensor::Metadata =
                serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
            weights.index(name, &metadata, 8 + header_len as usize, file_len as usize)?;
            weights.buffers.push(Buffer::File { file, name: name.clone() });
        }
        Ok(weights)
    }

    /// Add the tensors of the next buffer (`len` bytes, data from `data_start`), each checked to lie inside it
    /// and to be as long as its shape and dtype say.
    fn index(
        &mut self,
        name: &str,
        metadata: &safetensors::tensor::Metadata,
        data_start: usize,
        len: usize,
    ) -> Result<()> {
        let buffer = self.buffers.len();
        for (tensor, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let bytes = info.shape.iter().product::<usize>() * info.dtype.bitsize() / 8;
            let problem = if data_start + end > len || start > end {
                Some("points outside the file")
            } else if end - start != bytes {
                Some("holds fewer or more bytes than its shape and dtype take")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::Safetensors {
                    file: Some(name.to_string()),
                    message: format!("tensor `{tensor}` {problem}"),
                });
            }
            let entry = Entry {
                buffer,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start: data_start + start,
                end: data_start + end,
            };
            self.entries.insert(tensor, entry);
        }
        Ok(())
    }

    /// The raw bytes of a tensor: borrowed from memory, or read from its file.
    fn bytes(&self, entry: &Entry) -> Result<Cow<'_, [u8]>> {
        match &self.buffers[entry.buffer] {
            Buffer::Bytes(bytes) => Ok(Cow::Borrowed(&bytes[entry.start..entry.end])),
            #[cfg(unix)]
            Buffer::File { file, name } => {
                use std::os::unix::fs::FileExt;
                let mut bytes = vec![0u8; entry.end - entry.start];
                file.read_exact_at(&mut bytes, entry.start as u64)
                    .map_err(|source| Error::Io { path: name.clone(), source })?;
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// Whether the checkpoint holds a tensor of this full name.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The tensor's values as f32, after checking its shape.
    pub fn f32_values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        // Scalars are published both as `[]` and `[1]` (e.g. `logit_scale`).
        let same = entry.shape == expected
            || (entry.shape.iter().product::<usize>() == 1 && expected.iter().product::<usize>() == 1);
        if !same {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        let bytes = self.bytes(entry)?;
        let values = match entry.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => {
                bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32).collect()
            }
            other => {
                return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") });
            }
        };
        Ok(values)
    }

    /// The tensor's values as i64 (integer fixtures and buffers such as `position_ids`).
    pub fn i64_values(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        let bytes = self.bytes(entry)?;
        let values = match entry.dtype {
            Dtype::I64 => bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8"))).collect(),
            Dtype::I32 => bytes.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4")) as i64).collect(),
            Dtype::U8 => bytes.iter().map(|&b| b as i64).collect(),
            other => {
                return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") });
            }
        };
        Ok((values, entry.shape.clone()))
    }

    /// A builder rooted at the checkpoint's top level.
    pub fn builder<B: Backend>(&self, device: &B::Device) -> VarBuilder<'_, B> {
        VarBuilder { source: Source::Checkpoint(self), prefix: String::new(), device: device.clone() }
    }
}

/// A store of named tensors that makes each one's f32 values when asked (a GGUF file, dequantized tensor by
/// tensor, under the names the module loaders use): nothing is converted before a module needs it, and nothing
/// is kept after.
pub trait TensorSource {
    /// Whether the store holds a tensor of this full name.
    fn contains(&self, name: &str) -> bool;

    /// The values of `name` as f32, after checking that its shape is `expected`
    /// ([`Error::MissingTensor`] and [`Error::ShapeMismatch`] otherwise).
    fn f32_values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>>;
}

/// Where a [`VarBuilder`] takes its values from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A published checkpoint.
    Checkpoint(&'a Weights),
    /// Any other [`TensorSource`], read tensor by tensor.
    Tensors(&'a dyn TensorSource),
    /// Deterministic pseudo-random values (benchmarks, `Config::init`): every name gets its own stream.
    Random { seed: u64, std: f32 },
    /// A `burn-int8` artifact: matrices stored as i8 with scales load as int8, everything else as f32.
    Artifact(&'a Artifact),
    /// A checkpoint being quantized: every value read is also written to the artifact, matrices as int8
    /// (and handed to the model as int8), so loading a model through it writes exactly the sections that
    /// loading the artifact will ask for, in a fixed order.
    /// `random` (seed, std) replaces the checkpoint's values with [`VarBuilder::random`]'s.
    Quantize { weights: Option<&'a Weights>, writer: &'a RefCell<ArtifactWriter>, random: (u64, f32) },
}

/// A weight matrix as the loader found it.
#[derive(Debug)]
pub enum Matrix<B: Backend> {
    /// f32, in the layout asked for (see [`VarBuilder::matrix`]).
    F32(Tensor<B, 2>),
    /// int8 rows (the published `[out, in]` or `[rows, d]` layout) with their scales.
    Int8(Arc<QuantizedMatrix>),
}

/// A cursor into [`Weights`] at a dotted prefix, creating burn tensors on one device.
#[derive(Clone)]
pub struct VarBuilder<'a, B: Backend> {
    source: Source<'a>,
    prefix: String,
    device: B::Device,
}

impl<B: Backend> VarBuilder<'static, B> {
    /// A builder that invents weights (uniform, standard deviation `std`) instead of reading them:
    /// the same module code then builds full-size models for benchmarks without a checkpoint.
    pub fn random(seed: u64, std: f32, device: &B::Device) -> Self {
        VarBuilder { source: Source::Random { seed, std }, prefix: String::new(), device: device.clone() }
    }
}

impl<'a, B: Backend> VarBuilder<'a, B> {
    /// [`VarBuilder::random`]'s weights, quantized as [`VarBuilder::quantizing`] does (int8 benchmarks;
    /// the names and shapes a loader asks for end up in `writer`).
    pub fn random_quantizing(seed: u64, std: f32, writer: &'a RefCell<ArtifactWriter>, device: &B::Device) -> Self {
        VarBuilder {
            source: Source::Quantize { weights: None, writer, random: (seed, std) },
            prefix: String::new(),
            device: device.clone(),
        }
    }
}

impl<'a, B: Backend> VarBuilder<'a, B> {
    /// A builder over a `burn-int8` artifact's sections (the engine and family are checked by the caller).
    pub fn from_artifact(artifact: &'a Artifact, device: &B::Device) -> Self {
        VarBuilder { source: Source::Artifact(artifact), prefix: String::new(), device: device.clone() }
    }

    /// A builder that reads `weights` and writes every value it reads to `writer`, matrices quantized
    /// ([`crate::int8`]): a model's loader run over it writes that model's artifact (CLIP's
    /// `quantize_clip`).
    pub fn quantizing(weights: &'a Weights, writer: &'a RefCell<ArtifactWriter>, device: &B::Device) -> Self {
        VarBuilder {
            source: Source::Quantize { weights: Some(weights), writer, random: (0, 0.0) },
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// A builder over any [`TensorSource`] (a GGUF checkpoint: [`crate::llama::gguf::GgufLlamaWeights`]).
    pub fn from_source(source: &'a dyn TensorSource, device: &B::Device) -> Self {
        VarBuilder { source: Source::Tensors(source), prefix: String::new(), device: device.clone() }
    }

    /// Descend one level: `vb.pp("encoder").pp("layers").pp(3)`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        VarBuilder { source: self.source, prefix, device: self.device.clone() }
    }

    /// Full checkpoint name of `name` under this prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// Whether `name` exists under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        match self.source {
            Source::Checkpoint(weights) | Source::Quantize { weights: Some(weights), .. } => {
                weights.contains(&self.path(name))
            }
            Source::Random { .. } | Source::Quantize { weights: None, .. } => true,
            Source::Artifact(artifact) => artifact.section(&self.path(name)).is_some(),
            Source::Tensors(source) => source.contains(&self.path(name)),
        }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Load `name` with exactly this shape, as f32.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    /// Load a PyTorch `Linear` weight published as `[out, in]` and return it as burn's `[in, out]`,
    /// transposed once here so that every matmul later reads contiguous memory.
    pub fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        let values = self.values(name, &[d_out, d_in])?;
        let mut transposed = vec![0f32; values.len()];
        for (o, row) in values.chunks_exact(d_in).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                transposed[i * d_out + o] = v;
            }
        }
        Ok(Tensor::from_data(TensorData::new(transposed, [d_in, d_out]), &self.device))
    }

    /// A weight matrix whose published shape is `shape` (`[rows, ...]`, the rest flattened into columns:
    /// a `Linear` weight `[out, in]`, a `Conv2d` kernel `[out, in, kh, kw]`, an embedding table).
    ///
    /// Int8 when the source holds it as int8 (an artifact's i8 section with its `.scale`) or is
    /// quantizing; otherwise f32 — transposed to `[cols, rows]` when `transpose` (burn's `Linear`
    /// layout, so matmuls read contiguous memory), as published when not.
    pub fn matrix(&self, name: &str, shape: &[usize], transpose: bool) -> Result<Matrix<B>> {
        let path = self.path(name);
        let rows = shape.first().copied().unwrap_or(1);
        let cols: usize = shape.iter().skip(1).product();
        match self.source {
            Source::Artifact(artifact) if artifact.section(&path).is_some_and(|s| s.dtype == SectionDtype::I8) => {
                return Ok(Matrix::Int8(Arc::new(QuantizedMatrix::from_artifact(artifact, &path, shape)?)));
            }
            Source::Quantize { writer, .. } => {
                let values = self.source_values(&path, shape)?;
                let matrix = QuantizedMatrix::quantize(&values, rows, cols);
                let mut writer = writer.borrow_mut();
                writer.add_i8(&path, shape, matrix.codes())?;
                writer.add_f32(&scale_name(&path), &[rows], matrix.scales())?;
                return Ok(Matrix::Int8(Arc::new(matrix)));
            }
            _ => {}
        }
        let values = self.values(name, shape)?;
        let tensor = if transpose {
            let mut transposed = vec![0f32; values.len()];
            for (o, row) in values.chunks_exact(cols.max(1)).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    transposed[i * rows + o] = v;
                }
            }
            Tensor::from_data(TensorData::new(transposed, [cols, rows]), &self.device)
        } else {
            Tensor::from_data(TensorData::new(values, [rows, cols]), &self.device)
        };
        Ok(Matrix::F32(tensor))
    }

    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let path = self.path(name);
        let values = self.source_values(&path, shape)?;
        if let Source::Quantize { writer, .. } = self.source {
            writer.borrow_mut().add_f32(&path, shape, &values)?;
        }
        Ok(values)
    }

    /// The f32 values of the full name `path`, from wherever this builder reads.
    fn source_values(&self, path: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.source {
            Source::Checkpoint(weights) | Source::Quantize { weights: Some(weights), .. } => {
                weights.f32_values(path, shape)
            }
            Source::Random { seed, std } | Source::Quantize { weights: None, random: (seed, std), .. } => {
                Ok(random_values(seed, path, shape.iter().product(), std))
            }
            Source::Artifact(artifact) => artifact.f32_values(path, shape),
            Source::Tensors(source) => source.f32_values(path, shape),
        }
    }
}

/// Uniform values with standard deviation `std`, from a SplitMix64 stream seeded by `seed` and `name`.
pub fn random_values(seed: u64, name: &str, len: usize, std: f32) -> Vec<f32> {
    let state = name.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
    let mut rng = lens_core::rng::SplitMix64::new(state);
    let half_width = std * 3f32.sqrt();
    (0..len)
        .map(|_| {
            let unit = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (unit * 2.0 - 1.0) * half_width
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn checkpoint() -> Vec<u8> {
        let a: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> =
            [half::f16::from_f32(0.25), half::f16::from_f32(-4.0)].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = [
            ("a", safetensors::tensor::TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
            ("b", safetensors::tensor::TensorView::new(Dtype::F16, vec![2], &b).unwrap()),
        ];
        safetensors::serialize(views, None).unwrap()
    }

    fn file_with(bytes: &[u8], name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("lens-weights-{}-{name}.safetensors", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn files_read_tensor_by_tensor_give_the_values_of_the_bytes() {
        let bytes = checkpoint();
        let path = file_with(&bytes, "whole");
        let on_disk = Weights::open_files(&[("model.safetensors".into(), path.clone())]).unwrap();
        let in_memory = Weights::from_buffers(vec![("model.safetensors".into(), bytes)]).unwrap();
        for (name, shape) in [("a", vec![2, 3]), ("b", vec![2])] {
            assert_eq!(on_disk.f32_values(name, &shape).unwrap(), in_memory.f32_values(name, &shape).unwrap());
        }
        assert_eq!(on_disk.f32_values("b", &[2]).unwrap(), vec![0.25, -4.0]);
        assert_eq!(on_disk.names(), vec!["a", "b"]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn truncated_files_and_bad_headers_are_refused_at_open() {
        let bytes = checkpoint();
        for (name, broken) in [
            ("truncated", bytes[..bytes.len() - 3].to_vec()),
            ("header", [&u64::MAX.to_le_bytes()[..], &bytes[8..]].concat()),
            ("json", [&bytes[..8], &vec![b'x'; bytes.len() - 8][..]].concat()),
        ] {
            let path = file_with(&broken, name);
            let err = Weights::open_files(&[("model.safetensors".into(), path.clone())]).unwrap_err();
            assert!(matches!(err, Error::Safetensors { .. }), "{name}: {err}");
            assert!(err.to_string().contains("model.safetensors"), "{name}: {err}");
            std::fs::remove_file(path).unwrap();
        }
    }
}
