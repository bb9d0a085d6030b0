//! `lens generate`: text from a LLaMA checkpoint, or from a LLaVA one about images (`--image`), streamed to
//! stdout as it is produced, or one JSON object at the end with `--json`.
//!
//! The prompt (and `--system`) go through the checkpoint's chat template, as `apply_chat_template(messages,
//! add_generation_prompt=True)` does, images first in the user's turn; `--raw` skips it (base models have
//! none; a raw LLaVA prompt holds one `<image>` per image itself). Greedy unless a temperature is given;
//! sampling is seeded (`--seed`), so a run can be repeated.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lens_core::image::{DecodeLimits, RgbImage};
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::{GenerationConfig, MAX_NEW_TOKENS, Sampling};
use lens_models::llama::{Completion, LlamaPipeline};
use lens_models::llava::{LlavaPipeline, MAX_IMAGES};
use serde::{Deserialize, Serialize};

use super::embed::read_image;
use crate::backend::{DeviceKind, with_backend};

/// Longest prompt (and system text), in bytes.
pub const MAX_PROMPT_BYTES: usize = lens_models::tokenizer::MAX_TEXT_BYTES;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// LLaMA or LLaVA checkpoint: a HuggingFace model directory (config.json, safetensors, tokenizer.json), a
    /// llama.cpp GGUF file of a LLaMA (F32/F16/BF16/Q8_0/Q4_K/Q5_K/Q6_K tensors, dequantized at load), or a hub
    /// repository id (`org/name`, pulled once).
    #[arg(long, value_name = "DIR|FILE.gguf|REPO")]
    pub model: PathBuf,
    /// An image the prompt is about (JPEG, PNG, GIF, WebP; LLaVA checkpoints); may be given several times.
    #[arg(long, value_name = "FILE")]
    pub image: Vec<PathBuf>,
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

    /// The conversation: text content for LLaMA's templates, content parts (images first) for LLaVA's, which
    /// select the parts by type as the processor's templates do.
    fn messages(&self, parts: bool) -> Result<Vec<ChatMessage>> {
        let total = self.prompt.len() + self.system.as_ref().map_or(0, String::len);
        if total > MAX_PROMPT_BYTES {
            bail!("the prompt and system text are {total} bytes, more than the limit of {MAX_PROMPT_BYTES}");
        }
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(if parts {
                ChatMessage {
                    role: "system".into(),
                    content: Content::Parts(vec![Part::Text { text: system.clone() }]),
                }
            } else {
                ChatMessage::text("system", system.clone())
            });
        }
        messages.push(if parts {
            ChatMessage::user_with_images(self.image.len(), self.prompt.clone())
        } else {
            ChatMessage::text("user", self.prompt.clone())
        });
        Ok(messages)
    }
}

/// What `config.json` says the checkpoint is.
#[derive(Deserialize)]
struct ModelType {
    #[serde(default)]
    model_type: Option<String>,
}

/// Whether the model directory holds a LLaVA checkpoint (`model_type: "llava"`).
fn is_llava(dir: &std::path::Path) -> Result<bool> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: ModelType =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))?;
    Ok(config.model_type.as_deref() == Some("llava"))
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let config = args.config()?;
    if args.image.len() > MAX_IMAGES {
        bail!("{} images given; at most {MAX_IMAGES} per prompt", args.image.len());
    }
    let model = crate::hub::resolve_model(&args.model, "--model")?;
    let llava = model.is_dir() && is_llava(&model)?;
    if !llava && !args.image.is_empty() {
        bail!("{} is a text-only LLaMA checkpoint: --image needs a LLaVA one", model.display());
    }
    let messages = args.messages(llava)?;
    // Decoded before the model loads, so a bad file fails fast.
    let limits = DecodeLimits::default();
    let images: Vec<RgbImage> = args.image.iter().map(|p| read_image(p, &limits)).collect::<Result<_>>()?;
    let completion = with_backend!(args.device, |B, device| {
        let cannot_load =
            || format!("cannot load a {} model from {}", if llava { "LLaVA" } else { "LLaMA" }, model.display());
        if llava {
            let pipeline = LlavaPipeline::<B>::from_dir(&model, &device).with_context(cannot_load)?;
            let prompt = if args.raw {
                pipeline.processor.encode(&args.prompt, images.len())?
            } else {
                pipeline.encode_chat(&messages, images.len())?
            };
            stream(args, |on_text| pipeline.generate_stream(&prompt, &images, &config, &args.stop, on_text))
        } else {
            let pipeline = if model.is_file() {
                LlamaPipeline::<B>::from_gguf_file(&model, &device)
            } else {
                LlamaPipeline::<B>::from_dir(&model, &device)
            }
            .with_context(cannot_load)?;
            let prompt = if args.raw { pipeline.encode(&args.prompt)? } else { pipeline.encode_chat(&messages)? };
            stream(args, |on_text| pipeline.generate_stream(&prompt, &config, &args.stop, on_text))
        }
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

/// Run `generate`, writing the text it hands out to stdout as it comes (not with `--json`).
fn stream(
    args: &GenerateArgs,
    generate: impl FnOnce(&mut dyn FnMut(&str) -> ControlFlow<()>) -> lens_models::Result<Completion>,
) -> Result<Completion> {
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let completion = generate(&mut |piece| {
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
