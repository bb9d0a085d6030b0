//! `lens embed` and `lens classify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::clip::ClipPipeline;
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

pub fn embed(model: &ModelArgs, images: &[PathBuf], texts: &[String]) -> Result<()> {
    // Inputs are checked before the model is loaded: a bad file fails fast.
    let decoded = read_images(images)?;
    with_backend!(model.device, |B, device| {
        let pipeline = ClipPipeline::<B>::from_dir(&model.model, &device)
            .with_context(|| format!("cannot load model from {}", model.model.display()))?;
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
        let pipeline = ClipPipeline::<B>::from_dir(&model.model, &device)
            .with_context(|| format!("cannot load model from {}", model.model.display()))?;
        let probs = pipeline.classify(&decoded, &labels)?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &Classification { labels: &labels, probs: &probs })?;
        writeln!(out)?;
        Ok(())
    })
}
