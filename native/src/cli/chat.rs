//! `lens chat`: a client of a running `lens serve --chat-model`, its answers streamed to the terminal as
//! the server produces them (`POST /v1/chat/completions` with `stream`).
//!
//! With a prompt, one turn. Without one, a conversation read from stdin, one message per line: each answer
//! joins the history sent with the next message; `/reset` starts over, `/exit` or the end of input ends.
//! Images (`--image`) go with the first message: a file (sent as a `data:` URL), an http(s) URL (fetched by
//! the server) or a stored image as `lens://images/{id}`. Greedy unless `--temperature` is given.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Args;
use lens_core::api::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessageIn, ContentPart, ErrorBody, ImageUrl,
    MessageContent, ModelList, ModelTask, StopSequences,
};
use lens_core::image::ImageFormat;

use super::client::{ServerArgs, check, client};

/// Largest image file sent (the server applies its own, usually smaller, limit).
const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The chat model's id or name (default: the server's chat model, from `GET /v1/models`).
    #[arg(long)]
    model: Option<String>,
    /// A system message first.
    #[arg(long)]
    system: Option<String>,
    /// An image for the first message: a file, an http(s) URL (fetched by the server) or
    /// `lens://images/ID` (a stored image); may be given several times.
    #[arg(long, value_name = "FILE|URL")]
    image: Vec<String>,
    /// Most tokens in each answer (default: the server's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature; 0 (the default here, unlike OpenAI's API) decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling (with --temperature).
    #[arg(long)]
    top_p: Option<f32>,
    /// Seed of sampling: the same conversation and seed give the same answer.
    #[arg(long)]
    seed: Option<u64>,
    /// End the answer where this string appears (left out); up to 4.
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
    /// Print the server's whole `chat.completion` object (JSON, not streamed) instead of the text.
    #[arg(long, requires = "prompt")]
    json: bool,
    /// The message; without it, messages are read from stdin, one per line.
    prompt: Option<String>,
}

/// One answer: its text and why it ended.
struct Answer {
    text: String,
    finish_reason: String,
}

pub fn chat(args: &ChatArgs) -> Result<()> {
    let base = args.server.url();
    let http = client()?;
    let model = match &args.model {
        Some(model) => model.clone(),
        None => chat_model(&http, base)?,
    };
    let mut history = Vec::new();
    if let Some(system) = &args.system {
        history.push(message("system", MessageContent::Text(system.clone())));
    }
    let images = args.image.iter().map(|i| image_part(i)).collect::<Result<Vec<_>>>()?;
    let first = |text: String| {
        if images.is_empty() {
            return message("user", MessageContent::Text(text));
        }
        let mut parts = images.clone();
        parts.push(ContentPart::Text { text });
        message("user", MessageContent::Parts(parts))
    };

    if let Some(prompt) = &args.prompt {
        history.push(first(prompt.clone()));
        if args.json {
            let request = request(args, &model, history, false);
            let completion: ChatCompletion = check(http.post(endpoint(base)).json(&request).send()?)?;
            println!("{}", serde_json::to_string(&completion)?);
        } else {
            stream(&http, base, request(args, &model, history, true))?;
        }
        return Ok(());
    }

    let system_turns = history.len();
    let interactive = std::io::stdin().is_terminal();
    let prompt = || {
        if interactive {
            eprint!("> ");
        }
    };
    prompt();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        match line.trim() {
            "/exit" => break,
            "/reset" => history.truncate(system_turns),
            "" => {}
            _ => {
                let turn = if history.len() == system_turns {
                    first(line)
                } else {
                    message("user", MessageContent::Text(line))
                };
                history.push(turn);
                match stream(&http, base, request(args, &model, history.clone(), true)) {
                    Ok(answer) => history.push(message("assistant", MessageContent::Text(answer.text))),
                    Err(e) => {
                        // The message that failed leaves the history; the conversation goes on.
                        history.pop();
                        eprintln!("error: {e:#}");
                    }
                }
            }
        }
        prompt();
    }
    Ok(())
}

fn endpoint(base: &str) -> String {
    format!("{base}/v1/chat/completions")
}

fn message(role: &str, content: MessageContent) -> ChatMessageIn {
    ChatMessageIn { role: role.into(), content: Some(content), name: None }
}

fn request(args: &ChatArgs, model: &str, messages: Vec<ChatMessageIn>, stream: bool) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.into(),
        messages,
        max_completion_tokens: args.max_tokens,
        temperature: Some(args.temperature),
        top_p: args.top_p,
        seed: args.seed,
        stop: (!args.stop.is_empty()).then(|| StopSequences::Many(args.stop.clone())),
        stream,
        ..Default::default()
    }
}

/// The id of the server's chat model.
fn chat_model(http: &reqwest::blocking::Client, base: &str) -> Result<String> {
    let models: ModelList = check(http.get(format!("{base}/v1/models")).send()?)?;
    match models.data.into_iter().find(|m| m.task == ModelTask::Chat) {
        Some(card) => Ok(card.id),
        None => bail!("the server at {base} has no chat model (start it with --chat-model)"),
    }
}

/// `--image`: a URL the server resolves, or a file's bytes as a `data:` URL.
fn image_part(image: &str) -> Result<ContentPart> {
    let url = if ["http://", "https://", "lens://", "data:"].iter().any(|p| image.starts_with(p)) {
        image.to_string()
    } else {
        let file = std::fs::File::open(image).with_context(|| format!("cannot read {image}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_IMAGE_FILE_BYTES + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {image}"))?;
        if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
            bail!("{image} is larger than {} MiB", MAX_IMAGE_FILE_BYTES >> 20);
        }
        let Some(format) = ImageFormat::from_signature(&bytes) else {
            bail!("{image} is not a JPEG, PNG, GIF or WebP image");
        };
        format!("data:{};base64,{}", format.mime_type(), base64::engine::general_purpose::STANDARD.encode(&bytes))
    };
    Ok(ContentPart::ImageUrl { image_url: ImageUrl { url, detail: None } })
}

/// Sends a streamed request and writes the answer's text to stdout as its chunks arrive.
fn stream(http: &reqwest::blocking::Client, base: &str, request: ChatCompletionRequest) -> Result<Answer> {
    let response = http.post(endpoint(base)).json(&request).send()?;
    if !response.status().is_success() {
        // Refused before generation started: the error body, as for any other route.
        check::<serde_json::Value>(response)?;
        unreachable!("check fails on an error status");
    }
    let mut out = std::io::stdout().lock();
    let mut answer = Answer { text: String::new(), finish_reason: String::new() };
    for line in BufReader::new(response).lines() {
        let line = line.context("the answer's stream broke off")?;
        let Some(data) = line.strip_prefix("data:").map(str::trim_start) else {
            continue; // blank separators, comments, other fields
        };
        if data == "[DONE]" {
            if !answer.text.ends_with('\n') {
                writeln!(out)?;
            }
            if answer.finish_reason == "length" {
                eprintln!("(the answer reached the token limit)");
            }
            return Ok(answer);
        }
        if let Ok(error) = serde_json::from_str::<ErrorBody>(data) {
            bail!("the server stopped the answer: {} ({})", error.error.message, error.error.code);
        }
        let chunk: ChatCompletionChunk =
            serde_json::from_str(data).with_context(|| format!("unexpected event from the server: {data}"))?;
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                answer.text.push_str(&text);
            }
            if let Some(reason) = choice.finish_reason {
                answer.finish_reason = reason;
            }
        }
    }
    bail!("the server closed the stream before its end")
}
