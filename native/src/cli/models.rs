//! `lens models quantize`: a CLIP checkpoint → one int8 model artifact for the browser and the edge.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use lens_models::artifact::{Artifact, ArtifactSource};
use lens_models::clip::ClipFiles;
use lens_models::quant::{quantize_clip, summarize};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// CLIP checkpoint directory, or a hub repository id (`org/name`), pulled first as `lens serve
    /// --model` pulls it.
    #[arg(long, value_name = "DIR|ORG/NAME")]
    pub model: PathBuf,
    /// The artifact to write (`.lens`); replaced only once it is complete.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// What `lens models quantize` adds to the line [`write_and_report`] prints.
#[derive(Serialize)]
struct Details {
    int8_tensors: usize,
    f32_tensors: usize,
    /// The same tensors in f32.
    fp32_bytes: u64,
    /// `bytes / fp32_bytes`.
    ratio: f64,
}

pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let dir = crate::serve::model_dir(&args.model, "--model")?;
    let files =
        ClipFiles::read_dir(&dir).with_context(|| format!("cannot read a checkpoint from {}", dir.display()))?;
    // Same function, same arguments as the server's embedder: the artifact carries the server's model id.
    let (id, name, _) = crate::serve::model_queue::identify(&dir, &files, "clip");
    let bytes = quantize_clip(files, ArtifactSource { id, name })
        .with_context(|| format!("cannot quantize {} as CLIP", dir.display()))?;
    let artifact = Artifact::parse(bytes).context("the quantized artifact does not read back")?;
    let summary = summarize(&artifact);
    let details = Details {
        int8_tensors: summary.int8_tensors,
        f32_tensors: summary.f32_tensors,
        fp32_bytes: summary.fp32_bytes,
        ratio: artifact.len() as f64 / summary.fp32_bytes.max(1) as f64,
    };
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
pub(crate) fn write_and_report(out: &Path, artifact: &Artifact, details: impl Serialize) -> Result<()> {
    write_atomically(out, artifact.buffer())?;
    let report = Report {
        out: out.display().to_string(),
        bytes: artifact.len(),
        sha256: hex::encode(Sha256::digest(artifact.buffer().as_slice())),
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
