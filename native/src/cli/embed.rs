//! `lens embed` and `lens classify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::artifact::{Artifact, Engine};
use lens_models::clip::ClipPipeline;
use lens_models::clip::onnx::{OnnxClip, OnnxClipFiles};
use serde::Serialize;

use crate::ModelArgs;
use crate::backend::with_backend;

#[derive(Serialize)]
struct EmbeddingLine<'a> {
    input: &'a str,
    embedding: &'a [f32],
}

#[derive(Serialize)]
struct Classification<'a> {
    labels: &'a [&'a str],
    probs: &'a [f32],
}

/// Read and decode image files, naming the file in any error.
fn read_images(paths: &[PathBuf]) -> Result<Vec<RgbImage>> {
    let limits = DecodeLimits::default();
    paths
        .iter()
        .map(|path| {
            let bytes = read_limited(path, limits.max_bytes)?;
            decode_image(&bytes, &limits).with_context(|| format!("cannot decode image {}", path.display()))
        })
        .collect()
}

/// Read a file, refusing one larger than `limit` before reading it.
pub(crate) fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if len > limit as u64 {
        bail!("{} is {len} bytes, more than the limit of {limit}", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// What `--model` names, before loading: a checkpoint directory or a model artifact.
pub(crate) enum ModelSource {
    Dir(PathBuf),
    Artifact(Artifact),
}

/// Look at `--model`: a file starting with the artifact magic is an artifact (read and verified);
/// anything else is a checkpoint directory or a hub id (`org/name`, pulled once).
pub(crate) fn open_model(path: &Path) -> Result<ModelSource> {
    if path.is_file() {
        let mut prefix = [0u8; 8];
        let n = std::io::Read::read(&mut std::fs::File::open(path)?, &mut prefix)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !Artifact::sniff(&prefix[..n]) {
            bail!("{} is neither a checkpoint directory nor a model artifact", path.display());
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let artifact = Artifact::parse(bytes).with_context(|| format!("cannot load {}", path.display()))?;
        return Ok(ModelSource::Artifact(artifact));
    }
    Ok(ModelSource::Dir(crate::serve::model_dir(path, "--model")?))
}

/// A loaded embedding model, whichever engine runs it.
pub(crate) enum LoadedModel<B: Backend> {
    /// burn modules: fp32 checkpoints and `burn-int8` artifacts.
    Burn(Box<ClipPipeline<B>>),
    /// ONNX graphs run by tract (on the CPU, whatever the device): `onnx` artifacts and export
    /// directories holding `visual.onnx` and `textual.onnx`.
    Onnx(Box<OnnxClip>),
}

impl<B: Backend> LoadedModel<B> {
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        let loaded = match open_model(path)? {
            ModelSource::Dir(dir) if OnnxClipFiles::is_export_dir(&dir) => OnnxClipFiles::read_dir(&dir)
                .and_then(|files| OnnxClip::load(&files))
                .map(Box::new)
                .map(LoadedModel::Onnx),
            ModelSource::Dir(dir) => ClipPipeline::<B>::from_dir(&dir, device).map(Box::new).map(LoadedModel::Burn),
            ModelSource::Artifact(artifact) => match artifact.engine() {
                Engine::BurnInt8 => {
                    ClipPipeline::<B>::from_artifact(artifact, device).map(Box::new).map(LoadedModel::Burn)
                }
                Engine::Onnx => OnnxClip::from_artifact(&artifact).map(Box::new).map(LoadedModel::Onnx),
            },
        };
        loaded.with_context(|| format!("cannot load model from {}", path.display()))
    }

    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        match self {
            LoadedModel::Burn(p) => Ok(p.embed_images(images)?),
            LoadedModel::Onnx(p) => Ok(p.embed_images(images)?),
        }
    }

    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self {
            LoadedModel::Burn(p) => Ok(p.embed_texts(texts)?),
            LoadedModel::Onnx(p) => Ok(p.embed_texts(texts)?),
        }
    }

    pub fn classify(&self, image: &RgbImage, labels: &[&str]) -> Result<Vec<f32>> {
        match self {
            LoadedModel::Burn(p) => Ok(p.classify(image, labels)?),
            LoadedModel::Onnx(_) => {
                bail!("classify needs the model's logit scale, which ONNX exports do not carry: use the checkpoint")
            }
        }
    }
}

pub fn embed(model: &ModelArgs, images: &[PathBuf], texts: &[String]) -> Result<()> {
    // Inputs are checked before the model is loaded: a bad file fails fast.
    let decoded = read_images(images)?;
    with_backend!(model.device, |B, device| {
        let pipeline = LoadedModel::<B>::load(&model.model, &device)?;
        let (inputs, embeddings): (Vec<String>, Vec<Vec<f32>>) = if !images.is_empty() {
            (images.iter().map(|p| p.display().to_string()).collect(), pipeline.embed_images(&decoded)?)
        } else {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            (texts.to_vec(), pipeline.embed_texts(&refs)?)
        };
        let mut out = std::io::stdout().lock();
        for (input, embedding) in inputs.iter().zip(&embeddings) {
            serde_json::to_writer(&mut out, &EmbeddingLine { input, embedding })?;
            writeln!(out)?;
        }
        Ok(())
    })
}

pub fn classify(model: &ModelArgs, image: &Path, labels: &str) -> Result<()> {
    let labels: Vec<&str> = labels.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        bail!("--labels needs at least one non-empty label");
    }
    let decoded = read_images(&[image.to_path_buf()])?.remove(0);
    with_backend!(model.device, |B, device| {
        let pipeline = LoadedModel::<B>::load(&model.model, &device)?;
        let probs = pipeline.classify(&decoded, &labels)?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &Classification { labels: &labels, probs: &probs })?;
        writeln!(out)?;
        Ok(())
    })
}
