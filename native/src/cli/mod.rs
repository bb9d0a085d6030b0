//! The `lens` command line: the contract other tools call.
//!
//! - `lens embed --model DIR --image PATH...` / `--text STR...`: one JSON line per input,
//!   `{"input", "embedding"}`, L2-normalised.
//! - `lens classify --model DIR --image PATH --labels "a,b"`: `{"labels", "probs"}`, zero-shot.
//! - `lens caption --model DIR [--prompt P] [--beams N] [--max-new-tokens N] IMAGE...`: BLIP captions,
//!   one `{"input", "caption"}` line per image (`{"input", "error"}` for an unreadable one).
//! - `lens generate --model DIR|ORG/NAME --prompt TEXT [--system TEXT] [--max-new-tokens N] [--temperature T]
//!   [--top-p P] [--seed S] [--stop TEXT]... [--json]`: LLaMA text through the checkpoint's chat template,
//!   streamed to stdout; `--json` prints `{"text", "token_ids", "prompt_tokens", "finish_reason"}` at the end.
//! - `lens models pull REPO_ID [--revision R] [--dir D]`: download a checkpoint from a HuggingFace hub.
//! - `lens models quantize --model DIR|ORG/NAME --out FILE [--text-only]`: write an int8 model artifact
//!   (browser; `--text-only`: the text half, for the edge); `lens embed` and `lens classify` take a full
//!   one as `--model` too.
//! - `lens models pack --model DIR --out FILE`: an ONNX CLIP export (visual.onnx, textual.onnx, config,
//!   tokenizer, pre-processor) as one `onnx` artifact; `lens embed --model` runs it, or the directory.
//! - `lens serve --model DIR [--data DIR] [--listen ADDR] [--config FILE]`: the HTTP service.
//! - `lens keys create --data DIR --name NAME --scope read|write|admin [--tenant T] [--rate R]`, `lens keys
//!   list`, `lens keys revoke ID`: API keys (the secret printed once, its sha256 kept in the catalog).
//! - `lens openapi`: the HTTP API's OpenAPI document.
//! - `lens ingest PATH|URL...`, `lens search TEXT`, `lens chat [PROMPT]`: clients of a running server
//!   (`lens chat` streams the chat model's answer; without a prompt, a conversation from stdin).
//!
//! Errors are one line on stderr and a non-zero exit.

mod caption;
mod chat;
mod client;
mod embed;
mod generate;
mod keys;
mod models;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::ServeSettings;

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
    Embed(embed::EmbedArgs),
    /// Zero-shot classify an image against comma-separated labels.
    Classify(embed::ClassifyArgs),
    /// Caption images with BLIP, one JSON object per line.
    Caption(caption::CaptionArgs),
    /// Generate text with a LLaMA model, streamed to stdout as it is produced.
    Generate(generate::GenerateArgs),
    /// Run the image service (HTTP JSON API under /v1).
    Serve(ServeArgs),
    /// Print the HTTP API's OpenAPI 3.1 document.
    Openapi,
    /// Send files, folders or URLs to a running server (URLs run as a server-side job).
    Ingest(client::IngestArgs),
    /// Search a running server by text or by an image file.
    Search(client::SearchArgs),
    /// Chat with a running server's chat model (and about images), the answer streamed as it comes.
    Chat(chat::ChatArgs),
    /// Manage model checkpoints.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Manage the API keys of a data directory (create, list, revoke).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML file with the same settings as the flags, in sections ([server], [models], [storage],
    /// [s3], [index], [limits], [fetch], [captions], [search]); flags and LENS_* win over it.
    #[arg(long, env = "LENS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: ServeSettings,
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.settings.resolve(args.config.as_deref())?;
    crate::telemetry::init_logs();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(crate::serve::run(config))
}

fn openapi() -> anyhow::Result<()> {
    println!("{}", crate::serve::openapi::document().to_pretty_json()?);
    Ok(())
}

/// Parses the command line, runs the command, and turns an error into one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => embed::embed(&args),
        Command::Classify(args) => embed::classify(&args),
        Command::Caption(args) => caption::caption(&args),
        Command::Generate(args) => generate::generate(&args),
        Command::Models { command } => models::run(command),
        Command::Keys { command } => keys::run(command),
        Command::Serve(args) => serve(args),
        Command::Openapi => openapi(),
        Command::Ingest(args) => client::ingest(&args),
        Command::Search(args) => client::search(&args),
        Command::Chat(args) => chat::chat(&args),
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
