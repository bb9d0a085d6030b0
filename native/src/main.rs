//! `lens`: the command-line contract other tools call.
//!
//! - `lens embed --model DIR --image PATH...` / `--text STR...`: one JSON line per input,
//!   `{"input", "embedding"}`, L2-normalised.
//! - `lens classify --model DIR --image PATH --labels "a,b"`: `{"labels", "probs"}`, zero-shot.
//! - `lens caption --model DIR [--prompt P] [--beams N] [--max-new-tokens N] IMAGE...`: BLIP captions,
//!   one `{"input", "caption"}` line per image (`{"input", "error"}` for an unreadable one).
//! - `lens models pull REPO_ID [--revision R] [--dir D]`: download a checkpoint from a HuggingFace hub.
//! - `lens models quantize --model DIR|ORG/NAME --out FILE`: write an int8 model artifact (browser, edge);
//!   `lens embed` and `lens classify` take such a file as `--model` too.
//! - `lens models pack --model DIR --out FILE`: an ONNX CLIP export (visual.onnx, textual.onnx, config,
//!   tokenizer, pre-processor) as one `onnx` artifact; `lens embed --model` runs it, or the directory.
//! - `lens serve --model DIR [--data DIR] [--listen ADDR] [--config FILE]`: the HTTP service.
//! - `lens ingest PATH|URL...`, `lens search TEXT`: clients of a running server.
//!
//! Errors are one line on stderr and a non-zero exit.

mod backend;
mod caption;
mod client;
mod embed;
mod pack;
mod pull;
mod quantize;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "lens", version, about = "Understand and search images with CLIP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the `serve` settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Print L2-normalised CLIP embeddings of images or texts, one JSON object per line.
    Embed(EmbedArgs),
    /// Zero-shot classify an image against comma-separated labels.
    Classify(ClassifyArgs),
    /// Caption images with BLIP, one JSON object per line.
    Caption(caption::CaptionArgs),
    /// Run the image service (HTTP JSON API under /v1).
    Serve(ServeArgs),
    /// Send files, folders or URLs to a running server (URLs run as a server-side job).
    Ingest(client::IngestArgs),
    /// Search a running server by text.
    Search(client::SearchArgs),
    /// Manage model checkpoints.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Args, Debug)]
struct ModelArgs {
    /// HuggingFace-format CLIP checkpoint directory (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json), a hub repository id (`org/name`, pulled once), or a model artifact
    /// written by `lens models quantize` (int8; computes on the CPU) or `lens models pack`, or an ONNX CLIP
    /// export directory (visual.onnx, textual.onnx; run by tract on the CPU).
    #[arg(long, value_name = "DIR|FILE")]
    model: PathBuf,
    /// Compute device: `cpu` (burn-ndarray), `wgpu` or `cuda` when built with those features.
    #[arg(long, default_value = "cpu", env = "LENS_DEVICE")]
    device: backend::DeviceKind,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["image", "text"])))]
struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files (JPEG, PNG, GIF, WebP).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    image: Vec<PathBuf>,
    /// Texts.
    #[arg(long, num_args = 1.., value_name = "STR")]
    text: Vec<String>,
}

#[derive(Args, Debug)]
struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image to classify.
    #[arg(long, value_name = "PATH")]
    image: PathBuf,
    /// Comma-separated candidate labels, e.g. "a photo of a cat,a photo of a dog".
    #[arg(long, value_name = "LIST")]
    labels: String,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML file with the same settings as the flags (snake_case keys); flags and LENS_* win over it.
    #[arg(long, env = "LENS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: serve::config::ServeSettings,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Download a checkpoint (config, safetensors, tokenizer, pre-processor) from the hub at
    /// $HF_ENDPOINT (default https://huggingface.co), resuming partial files and checking checksums.
    Pull(pull::PullArgs),
    /// Quantize a CLIP checkpoint to one int8 model artifact (weights int8 per output channel,
    /// activations int8 per row at run time); prints one JSON line.
    Quantize(quantize::QuantizeArgs),
    /// Pack an ONNX CLIP export (visual.onnx, textual.onnx, config, tokenizer, pre-processor) into one
    /// `onnx` model artifact, fp32 or int8 as the graphs are; prints one JSON line.
    Pack(pack::PackArgs),
}

fn serve_main(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.settings.resolve(args.config.as_deref())?;
    // JSON logs on stderr; LENS_LOG (e.g. `debug`, `lens=debug,tower_http=info`) sets the filter.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LENS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve::run(config))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => embed::embed(&args.model, &args.image, &args.text),
        Command::Classify(args) => embed::classify(&args.model, &args.image, &args.labels),
        Command::Caption(args) => caption::caption(&args),
        Command::Models { command: ModelsCommand::Pull(args) } => pull::pull(&args),
        Command::Models { command: ModelsCommand::Quantize(args) } => quantize::quantize(&args),
        Command::Models { command: ModelsCommand::Pack(args) } => pack::pack(&args),
        Command::Serve(args) => serve_main(args),
        Command::Ingest(args) => client::ingest(&args),
        Command::Search(args) => client::search(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
            if causes.is_empty() {
                eprintln!("error: {err}");
            } else {
                eprintln!("error: {err}: {}", causes.join(": "));
            }
            ExitCode::FAILURE
        }
    }
}
