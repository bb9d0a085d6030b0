//! `lens generate`: text from a LLaMA checkpoint, streamed to stdout as it is produced, or one JSON object
//! at the end with `--json`.
//!
//! The prompt (and `--system`) go through the checkpoint's chat template, as `apply_chat_template(messages,
//! add_generation_prompt=True)` does; `--raw` skips it (base models have none). Greedy unless a temperature
//! is given; sampling is seeded (`--seed`), so a run can be repeated.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lens_models::chat_template::ChatMessage;
use lens_models::generation::{GenerationConfig, MAX_NEW_TOKENS, Sampling};
use lens_models::llama::{Completion, LlamaPipeline};
use serde::Serialize;

use crate::backend::{DeviceKind, with_backend};

/// Longest prompt (and system text), in bytes.
pub const MAX_PROMPT_BYTES: usize = lens_models::tokenizer::MAX_TEXT_BYTES;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// LLaMA checkpoint: a HuggingFace model directory (config.json, safetensors, tokenizer.json), a llama.cpp
    /// GGUF file (F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K tensors, dequantized at load), or a hub repository id
    /// (`org/name`, pulled once).
    #[arg(long, value_name = "DIR|FILE.gguf|REPO")]
    pub model: PathBuf,
    /// The user's message.
    #[arg(long)]
    pub prompt: String,
    /// A system message before it (when the chat template takes one).
    #[arg(long)]
    pub system: Option<String>,
    /// Use the prompt as it is, without the chat template (base models; the tokenizer adds BOS).
    #[arg(long, conflicts_with = "system")]
    pub raw: bool,
    /// Most tokens generated.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sample with this temperature (> 0) instead of greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens up to this probability (with --temperature).
    #[arg(long, requires = "temperature")]
    pub top_p: Option<f32>,
    /// Keep only this many most likely tokens, 0 for all (with --temperature).
    #[arg(long, requires = "temperature")]
    pub top_k: Option<usize>,
    /// Seed of sampling: the same seed and inputs give the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Penalise tokens already in the text (> 1 discourages repetition).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// End the text where this string appears (left out); may be given several times.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Print one JSON object at the end instead of streaming text:
    /// `{"text", "token_ids", "prompt_tokens", "finish_reason"}`.
    #[arg(long)]
    pub json: bool,
    /// Compute device: `cpu` (burn-ndarray), `wgpu` or `cuda` when built with those features.
    #[arg(long, default_value = "cpu", env = "LENS_DEVICE")]
    pub device: DeviceKind,
}

#[derive(Serialize)]
struct CompletionJson<'a> {
    text: &'a str,
    token_ids: &'a [u32],
    prompt_tokens: usize,
    finish_reason: &'a str,
}

impl GenerateArgs {
    /// The generation settings, checked against their limits.
    fn config(&self) -> Result<GenerationConfig> {
        if self.max_new_tokens == 0 || self.max_new_tokens > MAX_NEW_TOKENS {
            bail!("--max-new-tokens must be between 1 and {MAX_NEW_TOKENS}, not {}", self.max_new_tokens);
        }
        let sampling = self.temperature.map(|temperature| Sampling {
            temperature,
            top_p: self.top_p.unwrap_or(1.0),
            top_k: self.top_k.unwrap_or(0),
            seed: self.seed,
        });
        let config = GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            repetition_penalty: self.repetition_penalty,
            sampling,
            ..Default::default()
        };
        config.validate()?;
        Ok(config)
    }

    fn messages(&self) -> Result<Vec<ChatMessage>> {
        let total = self.prompt.len() + self.system.as_ref().map_or(0, String::len);
        if total > MAX_PROMPT_BYTES {
            bail!("the prompt and system text are {total} bytes, more than the limit of {MAX_PROMPT_BYTES}");
        }
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(ChatMessage::text("system", system.clone()));
        }
        messages.push(ChatMessage::text("user", self.prompt.clone()));
        Ok(messages)
    }
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let config = args.config()?;
    let messages = args.messages()?;
    let model = crate::hub::resolve_model(&args.model, "--model")?;
    let completion = with_backend!(args.device, |B, device| {
        let pipeline = if model.is_file() {
            LlamaPipeline::<B>::from_gguf_file(&model, &device)
        } else {
            LlamaPipeline::<B>::from_dir(&model, &device)
        }
        .with_context(|| format!("cannot load a LLaMA model from {}", model.display()))?;
        run(&pipeline, args, &messages, &config)
    })?;
    if args.json {
        let line = CompletionJson {
            text: &completion.text,
            token_ids: &completion.token_ids,
            prompt_tokens: completion.prompt_tokens,
            finish_reason: completion.finish_reason.as_str(),
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}

fn run<B: burn::tensor::backend::Backend>(
    pipeline: &LlamaPipeline<B>,
    args: &GenerateArgs,
    messages: &[ChatMessage],
    config: &GenerationConfig,
) -> Result<Completion> {
    let prompt = if args.raw { pipeline.encode(&args.prompt)? } else { pipeline.encode_chat(messages)? };
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let completion = pipeline.generate_stream(&prompt, config, &args.stop, &mut |piece| {
        if args.json {
            return ControlFlow::Continue(());
        }
        // A closed stdout (`lens generate ... | head -c 10`) ends generation rather than computing on.
        match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(completion);
        }
        return Err(e).context("cannot write to stdout");
    }
    if !args.json {
        writeln!(out)?;
    }
    Ok(completion)
}
