//! `lens models pull | quantize | pack`: checkpoints from a hub, and the single-file artifacts the
//! browser and the edge load.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use lens_models::artifact::{Artifact, ArtifactSource};
use lens_models::clip::onnx::{OnnxClip, OnnxClipFiles, TEXTUAL, VISUAL};
use lens_models::clip::{ClipFiles, quantize_clip, quantize_clip_text};
use lens_models::identity::{directory_name, identify};
use lens_models::int8::summarize;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download a checkpoint (config, safetensors, tokenizer, pre-processor) from the hub at
    /// $HF_ENDPOINT (default https://huggingface.co), resuming partial files and checking checksums.
    Pull(PullArgs),
    /// Quantize a CLIP checkpoint to one int8 model artifact (weights int8 per output channel,
    /// activations int8 per row at run time); prints one JSON line.
    Quantize(QuantizeArgs),
    /// Pack an ONNX CLIP export (visual.onnx, textual.onnx, config, tokenizer, pre-processor) into one
    /// `onnx` model artifact, fp32 or int8 as the graphs are; prints one JSON line.
    Pack(PackArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Repository id, e.g. `openai/clip-vit-base-patch32`.
    pub repo_id: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Destination directory (default: `$LENS_HOME/models/<org>--<name>`, `$LENS_HOME` defaulting to `~/.cache/lens`).
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
    /// Only this `.gguf` file (llama.cpp checkpoints: one file is the whole model); prints its path.
    #[arg(long, value_name = "NAME.gguf")]
    pub file: Option<String>,
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// CLIP checkpoint directory, or a hub repository id (`org/name`), pulled first as `lens serve
    /// --model` pulls it.
    #[arg(long, value_name = "DIR|ORG/NAME")]
    pub model: PathBuf,
    /// The artifact to write (`.lens`); replaced only once it is complete.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Only the text tower, its projection and the tokenizer (family `clip-text`, same model id): what
    /// the edge Worker searches with — a ViT-B/32's whole artifact would not fit its 128 MB.
    #[arg(long)]
    pub text_only: bool,
}

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

pub fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::Pull(args) => {
            let path = match &args.file {
                Some(file) => crate::hub::pull_file(&args.repo_id, &args.revision, args.dir.as_deref(), file)?,
                None => crate::hub::pull(&args.repo_id, &args.revision, args.dir.as_deref())?,
            };
            println!("{}", path.display());
            Ok(())
        }
        ModelsCommand::Quantize(args) => quantize(&args),
        ModelsCommand::Pack(args) => pack(&args),
    }
}

/// What `lens models quantize` adds to the line [`write_and_report`] prints.
#[derive(Serialize)]
struct QuantizeDetails {
    int8_tensors: usize,
    f32_tensors: usize,
    /// The same tensors in f32.
    fp32_bytes: u64,
    /// `bytes / fp32_bytes`.
    ratio: f64,
}

fn quantize(args: &QuantizeArgs) -> Result<()> {
    let dir = crate::hub::resolve_model(&args.model, "--model")?;
    let files =
        ClipFiles::read_dir(&dir).with_context(|| format!("cannot read a checkpoint from {}", dir.display()))?;
    // Same function, same arguments as the server's embedder: the artifact carries the server's model id.
    let identity = identify(&dir, &files.weights, "clip");
    let source = ArtifactSource { id: identity.id, name: identity.name };
    let bytes = if args.text_only { quantize_clip_text(files, source) } else { quantize_clip(files, source) }
        .with_context(|| format!("cannot quantize {} as CLIP", dir.display()))?;
    let artifact = Artifact::parse(bytes).context("the quantized artifact does not read back")?;
    let summary = summarize(&artifact);
    let details = QuantizeDetails {
        int8_tensors: summary.int8_tensors,
        f32_tensors: summary.f32_tensors,
        fp32_bytes: summary.fp32_bytes,
        ratio: artifact.len() as f64 / summary.fp32_bytes.max(1) as f64,
    };
    write_and_report(&args.out, &artifact, details)
}

/// What `lens models pack` adds to the line [`write_and_report`] prints.
#[derive(Serialize)]
struct PackDetails {
    /// `fp32` or `int8`, read from the graphs' ops (also in the artifact's `meta`).
    precision: &'static str,
    dim: usize,
}

fn pack(args: &PackArgs) -> Result<()> {
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
    let name = directory_name(dir).unwrap_or_else(|| "onnx-clip".to_string());
    let id = format!("{name}@onnx-{}", &files.graphs_sha256()[..16]);
    let bytes = files.to_artifact(ArtifactSource { id, name })?;
    let artifact = Artifact::parse(bytes).context("the packed artifact does not read back")?;
    let details = PackDetails { precision: clip.precision().as_str(), dim: clip.dim() };
    write_and_report(&args.out, &artifact, details)
}

/// The one JSON line `lens models quantize` and `lens models pack` print.
#[derive(Serialize)]
struct Report<'a, D> {
    out: String,
    bytes: usize,
    /// SHA-256 of the whole file (as `sha256sum` prints it).
    sha256: String,
    /// The identity `lens serve` reports for the same weights in `/v1/models`.
    source_id: &'a str,
    #[serde(flatten)]
    details: D,
}

/// Writes `artifact` to `out` atomically, then prints one JSON line: the file, its size, SHA-256 and
/// source id, and the command's own `details`.
fn write_and_report(out: &Path, artifact: &Artifact, details: impl Serialize) -> Result<()> {
    write_atomically(out, artifact.buffer())?;
    let report = Report {
        out: out.display().to_string(),
        bytes: artifact.len(),
        sha256: lens_core::ids::sha256_hex(artifact.buffer().as_slice()),
        source_id: &artifact.header().source.id,
        details,
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &report)?;
    writeln!(stdout)?;
    Ok(())
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`: readers never see a
/// partial artifact, and a failure leaves nothing behind.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().with_context(|| format!("--out {} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}
