//! `lens models pack`: an ONNX CLIP export (`visual.onnx`, `textual.onnx` and the checkpoint's JSON
//! files) → one `onnx` model artifact that `lens embed --model` runs with tract.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lens_models::artifact::{Artifact, ArtifactSource};
use lens_models::clip::onnx::{OnnxClip, OnnxClipFiles, TEXTUAL, VISUAL};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct PackArgs {
    /// Directory of an ONNX CLIP export: visual.onnx, textual.onnx, config.json, tokenizer.json,
    /// preprocessor_config.json and optionally tokenizer_config.json.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The artifact to write; replaced only once it is complete.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// What `lens models pack` adds to the line [`crate::quantize::write_and_report`] prints.
#[derive(Serialize)]
struct Details {
    /// `fp32` or `int8`, read from the graphs' ops (also in the artifact's `meta`).
    precision: &'static str,
    dim: usize,
}

pub fn pack(args: &PackArgs) -> Result<()> {
    let dir = &args.model;
    if !dir.is_dir() {
        bail!("--model {} is not a directory", dir.display());
    }
    for graph in [VISUAL, TEXTUAL] {
        if !dir.join(graph).is_file() {
            bail!("{} has no {graph}: an ONNX CLIP export holds {VISUAL} and {TEXTUAL}", dir.display());
        }
    }
    let files = OnnxClipFiles::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // Load it once as `lens embed` will, so an export tract cannot run is refused here.
    let clip = OnnxClip::load(&files).with_context(|| format!("cannot load {} as an ONNX CLIP", dir.display()))?;
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "onnx-clip".to_string());
    let id = format!("{name}@onnx-{}", &files.graphs_sha256()[..16]);
    let bytes = files.to_artifact(ArtifactSource { id, name })?;
    let artifact = Artifact::parse(bytes).context("the packed artifact does not read back")?;
    let details = Details { precision: clip.precision().as_str(), dim: clip.dim() };
    crate::quantize::write_and_report(&args.out, &artifact, details)
}
