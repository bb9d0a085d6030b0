//! The files of a HuggingFace checkpoint as bytes: the browser and the edge fetch them, native reads a
//! model directory. Every model family (CLIP, BLIP, ...) loads from the same set.

use lens_core::preprocess::ClipImageProcessor;

use crate::{Error, Result};

/// Refuses an image processor whose output is not the `size`×`size` square the vision tower takes.
pub(crate) fn check_image_size(processor: &ClipImageProcessor, size: usize) -> Result<()> {
    let (h, w) = processor.output_size();
    if (h, w) != (size, size) {
        return Err(Error::config(
            "preprocessor_config.json",
            format!("produces {h}x{w} images but the vision tower takes {size}x{size}"),
        ));
    }
    Ok(())
}

/// `dir/name`'s bytes; an I/O error names the path.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_file(dir: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// `dir/name`'s bytes when it is a file (`tokenizer_config.json` is optional).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_optional(dir: &std::path::Path, name: &str) -> Result<Option<Vec<u8>>> {
    dir.join(name).is_file().then(|| read_file(dir, name)).transpose()
}

/// Refuses a path that is not a directory.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn check_model_dir(dir: &std::path::Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::Io {
        path: dir.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a model directory"),
    })
}

/// The safetensors files of a model directory, `(file name, path)`: `model.safetensors`, or the shards
/// `model.safetensors.index.json` names. Refuses a path that is not a directory, or one without either.
#[cfg(not(target_arch = "wasm32"))]
pub fn safetensors_files(dir: &std::path::Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    check_model_dir(dir)?;
    if dir.join("model.safetensors").is_file() {
        return Ok(vec![("model.safetensors".to_string(), dir.join("model.safetensors"))]);
    }
    if !dir.join("model.safetensors.index.json").is_file() {
        return Err(Error::Io {
            path: dir.join("model.safetensors").display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read)",
            ),
        });
    }
    let index: serde_json::Value = serde_json::from_slice(&read_file(dir, "model.safetensors.index.json")?)
        .map_err(|e| Error::config("model.safetensors.index.json", e))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::config("model.safetensors.index.json", "no `weight_map` object"))?;
    let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    for shard in &shards {
        // A shard is a file of this directory, never a path out of it.
        if shard.contains(['/', '\\']) || *shard == ".." {
            return Err(Error::config("model.safetensors.index.json", format!("shard `{shard}` is not a file name")));
        }
    }
    Ok(shards.into_iter().map(|s| (s.to_string(), dir.join(s))).collect())
}

/// The safetensors weights of a model directory as bytes, `(file name, bytes)` (see [`safetensors_files`]).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_safetensors(dir: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>> {
    safetensors_files(dir)?.into_iter().map(|(name, _)| Ok((name.clone(), read_file(dir, &name)?))).collect()
}

/// The safetensors weights of a model directory, indexed from their headers and read tensor by tensor as the
/// model loads, so the checkpoint is not held in memory beside the model (see [`Weights::open_files`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_safetensors(dir: &std::path::Path) -> Result<crate::weights::Weights> {
    #[cfg(unix)]
    return crate::weights::Weights::open_files(&safetensors_files(dir)?);
    #[cfg(not(unix))]
    return crate::weights::Weights::from_buffers(read_safetensors(dir)?);
}

/// `config.json`, the safetensors weights, the tokenizer and the image processor's settings.
#[derive(Debug, Default, Clone)]
pub struct CheckpointFiles {
    /// `config.json`
    pub config: Vec<u8>,
    /// `(file name, bytes)` of each safetensors file (one, or the shards of an index).
    pub weights: Vec<(String, Vec<u8>)>,
    /// `tokenizer.json`
    pub tokenizer: Vec<u8>,
    /// `tokenizer_config.json`, when present.
    pub tokenizer_config: Option<Vec<u8>>,
    /// `preprocessor_config.json`
    pub preprocessor_config: Vec<u8>,
}

#[cfg(not(target_arch = "wasm32"))]
impl CheckpointFiles {
    /// Read the files of a model directory.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let weights = read_safetensors(dir)?;
        let read = |name: &str| read_file(dir, name);
        Ok(CheckpointFiles {
            config: read("config.json")?,
            weights,
            tokenizer: read("tokenizer.json")?,
            tokenizer_config: read_optional(dir, "tokenizer_config.json")?,
            preprocessor_config: read("preprocessor_config.json")?,
        })
    }
}
