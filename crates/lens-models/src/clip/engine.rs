//! A CLIP model opened from a path, whichever engine runs it: burn ([`ClipPipeline`]: fp32 checkpoints
//! and `burn-int8` artifacts) or, with the `onnx` feature, tract ([`OnnxClip`]: ONNX exports and `onnx`
//! artifacts). The command line and the server load `--model` through here. Native only: it reads paths.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;

use super::config::ClipConfig;
#[cfg(feature = "onnx")]
use super::onnx::{OnnxClip, OnnxClipFiles};
use super::pipeline::{ClipFiles, ClipPipeline};
use crate::artifact::{Artifact, Engine};
#[cfg(feature = "onnx")]
use crate::identity::directory_name;
use crate::identity::{ModelIdentity, identify};
use crate::{Error, Result};

/// What a path names, before loading.
pub enum ClipSource {
    /// A checkpoint directory (or, with `onnx`, an ONNX export directory).
    Dir(PathBuf),
    /// A model artifact, read and verified.
    Artifact(Artifact),
}

impl ClipSource {
    /// A directory, or a file that starts with the artifact magic (read whole and verified).
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(Self::Dir(path.to_path_buf()));
        }
        let io = |source| Error::Io { path: path.display().to_string(), source };
        if !path.is_file() {
            return Err(io(std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory or artifact")));
        }
        let mut prefix = [0u8; 8];
        let n = std::io::Read::read(&mut std::fs::File::open(path).map_err(io)?, &mut prefix).map_err(io)?;
        if !Artifact::sniff(&prefix[..n]) {
            return Err(Error::invalid_input(format!(
                "{} is neither a checkpoint directory nor a model artifact",
                path.display()
            )));
        }
        Ok(Self::Artifact(Artifact::parse(std::fs::read(path).map_err(io)?)?))
    }
}

/// A loaded CLIP, whichever engine runs it.
pub enum LoadedClip<B: Backend> {
    /// burn modules: fp32 checkpoints and `burn-int8` artifacts.
    Burn(Box<ClipPipeline<B>>),
    /// ONNX graphs run by tract (on the CPU, whatever the device).
    #[cfg(feature = "onnx")]
    Onnx(Box<OnnxClip>),
}

impl<B: Backend> LoadedClip<B> {
    /// Loads what `path` names ([`ClipSource::open`]) on `device`, with its identity.
    pub fn open(path: &Path, device: &B::Device) -> Result<(Self, ModelIdentity)> {
        Self::load(ClipSource::open(path)?, device)
    }

    /// Loads `source` on `device`, with its identity: a checkpoint's ([`identify`]), an artifact's
    /// source, or for an ONNX export its directory name and a hash of its graphs.
    pub fn load(source: ClipSource, device: &B::Device) -> Result<(Self, ModelIdentity)> {
        match source {
            #[cfg(feature = "onnx")]
            ClipSource::Dir(dir) if OnnxClipFiles::is_export_dir(&dir) => {
                let files = OnnxClipFiles::read_dir(&dir)?;
                let name = directory_name(&dir).unwrap_or_else(|| "onnx-clip".into());
                let identity =
                    ModelIdentity { id: format!("{name}@onnx-{}", &files.graphs_sha256()[..16]), name, revision: None };
                Ok((Self::Onnx(Box::new(OnnxClip::load(&files)?)), identity))
            }
            ClipSource::Dir(dir) => {
                let files = ClipFiles::read_dir(&dir)?;
                let identity = identify(&dir, &files.weights, "clip");
                Ok((Self::Burn(Box::new(ClipPipeline::load(files, device)?)), identity))
            }
            ClipSource::Artifact(artifact) => {
                let source = &artifact.header().source;
                let identity = ModelIdentity { id: source.id.clone(), name: source.name.clone(), revision: None };
                let model = match artifact.engine() {
                    Engine::BurnInt8 => Self::Burn(Box::new(ClipPipeline::from_artifact(artifact, device)?)),
                    #[cfg(feature = "onnx")]
                    Engine::Onnx => Self::Onnx(Box::new(OnnxClip::from_artifact(&artifact)?)),
                    #[cfg(not(feature = "onnx"))]
                    Engine::Onnx => {
                        return Err(Error::Artifact { message: "an onnx artifact needs the `onnx` feature".into() });
                    }
                };
                Ok((model, identity))
            }
        }
    }

    pub fn config(&self) -> &ClipConfig {
        match self {
            Self::Burn(p) => &p.config,
            #[cfg(feature = "onnx")]
            Self::Onnx(p) => &p.config,
        }
    }

    /// The embedding's length.
    pub fn dim(&self) -> usize {
        self.config().projection_dim
    }

    /// L2-normalised image embeddings.
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Burn(p) => p.embed_images(images),
            #[cfg(feature = "onnx")]
            Self::Onnx(p) => p.embed_images(images),
        }
    }

    /// The image processor the model's inputs go through: [`LoadedClip::embed_pixels`] takes its output.
    pub fn processor(&self) -> &ClipImageProcessor {
        match self {
            Self::Burn(p) => &p.processor,
            #[cfg(feature = "onnx")]
            Self::Onnx(p) => &p.processor,
        }
    }

    /// L2-normalised embeddings of `batch` images already pre-processed by [`LoadedClip::processor`]
    /// (their `[3, size, size]` values one after the other): [`LoadedClip::embed_images`]' numbers, for
    /// callers that keep the model's input instead of the decoded image.
    pub fn embed_pixels(&self, pixels: Vec<f32>, batch: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Burn(p) => p.embed_pixels(pixels, batch),
            #[cfg(feature = "onnx")]
            Self::Onnx(p) => Ok(super::pipeline::normalized_chunks(&p.image_features(pixels, batch)?, p.dim())),
        }
    }

    /// L2-normalised text embeddings.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Burn(p) => p.embed_texts(texts),
            #[cfg(feature = "onnx")]
            Self::Onnx(p) => p.embed_texts(texts),
        }
    }

    /// `exp(logit_scale)`, the temperature of zero-shot logits (`scale · cos`); `None` for ONNX exports,
    /// which do not carry it.
    pub fn logit_scale_exp(&self) -> Option<f32> {
        match self {
            Self::Burn(p) => Some(p.logit_scale_exp()),
            #[cfg(feature = "onnx")]
            Self::Onnx(_) => None,
        }
    }

    /// Zero-shot probabilities of `labels` for `image`. ONNX exports carry no logit scale: refused.
    pub fn classify(&self, image: &RgbImage, labels: &[&str]) -> Result<Vec<f32>> {
        match self {
            Self::Burn(p) => p.classify(image, labels),
            #[cfg(feature = "onnx")]
            Self::Onnx(_) => Err(Error::invalid_input(
                "classify needs the model's logit scale, which ONNX exports do not carry: use the checkpoint",
            )),
        }
    }
}
