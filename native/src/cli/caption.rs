//! `lens caption`: BLIP captions of image files, one JSON line per input.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lens_core::image::{DecodeLimits, RgbImage};
use lens_models::blip::{BlipFiles, BlipPipeline, CaptionOptions};
use serde::Serialize;

use super::embed::read_image;

use crate::backend::{DeviceKind, with_backend};

#[derive(Args, Debug)]
pub struct CaptionArgs {
    /// HuggingFace-format BLIP captioning checkpoint directory (config.json, model.safetensors,
    /// tokenizer.json, preprocessor_config.json), or a hub repository id (`org/name`, pulled once).
    #[arg(long, value_name = "DIR|REPO")]
    pub model: PathBuf,
    /// Conditional captioning: the caption continues this text (e.g. "a picture of").
    #[arg(long)]
    pub prompt: Option<String>,
    /// Beams of beam search; 1 is greedy decoding. The default is `lens serve`'s.
    #[arg(long, default_value_t = 3)]
    pub beams: usize,
    /// Most tokens generated. The default is `lens serve`'s.
    #[arg(long, default_value_t = 30)]
    pub max_new_tokens: usize,
    /// Compute device: `cpu` (burn-ndarray), `wgpu` or `cuda` when built with those features.
    #[arg(long, default_value = "cpu", env = "LENS_DEVICE")]
    pub device: DeviceKind,
    /// Image files (JPEG, PNG, GIF, WebP).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

#[derive(Serialize)]
struct CaptionLine<'a> {
    input: &'a str,
    caption: &'a str,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    input: &'a str,
    error: &'a str,
}

/// Captions every readable image (one model call per batch of them) and prints a line per input, in
/// order; an unreadable one gets an `{"input", "error"}` line and makes the exit non-zero.
pub fn caption(args: &CaptionArgs) -> Result<()> {
    let mut options = CaptionOptions { prompt: args.prompt.clone().filter(|p| !p.is_empty()), ..Default::default() };
    options.generation.num_beams = args.beams;
    options.generation.max_new_tokens = args.max_new_tokens;
    options.validate()?;
    // Inputs are read before the model is loaded; the bad ones are reported, the rest captioned.
    let limits = DecodeLimits::default();
    let decoded: Vec<Result<RgbImage>> = args.images.iter().map(|path| read_image(path, &limits)).collect();
    let model = crate::hub::resolve_model(&args.model, "--model")?;
    let good: Vec<RgbImage> = decoded.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let captions = if good.is_empty() {
        Vec::new()
    } else {
        with_backend!(args.device, |B, device| {
            let pipeline = BlipFiles::read_dir(&model)
                .and_then(|files| BlipPipeline::<B>::load(files, &device))
                .with_context(|| format!("cannot load caption model from {}", model.display()))?;
            anyhow::Ok(pipeline.caption(&good, &options)?)
        })?
    };
    let mut captions = captions.into_iter();
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (path, image) in args.images.iter().zip(&decoded) {
        let input = path.display().to_string();
        match image {
            Ok(_) => {
                let caption = captions.next().context("the model returned too few captions")?;
                serde_json::to_writer(&mut out, &CaptionLine { input: &input, caption: &caption })?;
            }
            Err(e) => {
                failed += 1;
                let error = format!("{e:#}");
                serde_json::to_writer(&mut out, &ErrorLine { input: &input, error: &error })?;
            }
        }
        writeln!(out)?;
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} of {} image(s) could not be read", args.images.len());
    }
    Ok(())
}
