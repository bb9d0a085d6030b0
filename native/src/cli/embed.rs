//! `lens embed` and `lens classify`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::clip::LoadedClip;
use serde::Serialize;

use crate::backend::{DeviceKind, with_backend};

/// `--model` and `--device`, shared by the commands that run CLIP.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// HuggingFace-format CLIP checkpoint directory (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json), a hub repository id (`org/name`, pulled once), or a model artifact
    /// written by `lens models quantize` (int8; computes on the CPU) or `lens models pack`, or an ONNX CLIP
    /// export directory (visual.onnx, textual.onnx; run by tract on the CPU).
    #[arg(long, value_name = "DIR|FILE")]
    pub model: PathBuf,
    /// Compute device: `cpu` (burn-ndarray), `wgpu` or `cuda` when built with those features.
    #[arg(long, default_value = "cpu", env = "LENS_DEVICE")]
    pub device: DeviceKind,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["image", "text"])))]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files (JPEG, PNG, GIF, WebP).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub image: Vec<PathBuf>,
    /// Texts.
    #[arg(long, num_args = 1.., value_name = "STR")]
    pub text: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The image to classify.
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,
    /// Comma-separated candidate labels, e.g. "a photo of a cat,a photo of a dog".
    #[arg(long, value_name = "LIST")]
    pub labels: String,
}

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

/// Reads and decodes an image file, naming the file in any error.
pub(super) fn read_image(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let bytes = read_limited(path, limits.max_bytes)?;
    decode_image(&bytes, limits).with_context(|| format!("cannot decode image {}", path.display()))
}

/// Reads a file, refusing one larger than `limit` before reading it.
pub(super) fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if len > limit as u64 {
        bail!("{} is {len} bytes, more than the limit of {limit}", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `--model`: a hub id is pulled once; a directory or an artifact is opened as it is.
fn load<B: burn::tensor::backend::Backend>(model: &Path, device: &B::Device) -> Result<LoadedClip<B>> {
    let path = crate::hub::resolve_model(model, "--model")?;
    let (model, _) =
        LoadedClip::open(&path, device).with_context(|| format!("cannot load model from {}", path.display()))?;
    Ok(model)
}

pub fn embed(args: &EmbedArgs) -> Result<()> {
    // Inputs are checked before the model is loaded: a bad file fails fast.
    let limits = DecodeLimits::default();
    let decoded: Vec<RgbImage> = args.image.iter().map(|p| read_image(p, &limits)).collect::<Result<_>>()?;
    with_backend!(args.model.device, |B, device| {
        let model = load::<B>(&args.model.model, &device)?;
        let (inputs, embeddings): (Vec<String>, Vec<Vec<f32>>) = if !args.image.is_empty() {
            (args.image.iter().map(|p| p.display().to_string()).collect(), model.embed_images(&decoded)?)
        } else {
            let refs: Vec<&str> = args.text.iter().map(String::as_str).collect();
            (args.text.to_vec(), model.embed_texts(&refs)?)
        };
        let mut out = std::io::stdout().lock();
        for (input, embedding) in inputs.iter().zip(&embeddings) {
            serde_json::to_writer(&mut out, &EmbeddingLine { input, embedding })?;
            writeln!(out)?;
        }
        Ok(())
    })
}

pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let labels: Vec<&str> = args.labels.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        bail!("--labels needs at least one non-empty label");
    }
    let image = read_image(&args.image, &DecodeLimits::default())?;
    with_backend!(args.model.device, |B, device| {
        let model = load::<B>(&args.model.model, &device)?;
        let probs = model.classify(&image, &labels)?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &Classification { labels: &labels, probs: &probs })?;
        writeln!(out)?;
        Ok(())
    })
}
