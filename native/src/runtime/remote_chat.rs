//! A chat model behind an OpenAI-compatible API (`--chat-provider openai`): each conversation becomes one
//! streamed `POST {base}/chat/completions` with the images as PNG data URLs, and the upstream's chunks come
//! back as the same [`ChatEvent`]s a local model streams — one text piece per upstream delta, as it arrives.
//!
//! At most `--chat-queue` conversations are upstream at once (a full house answers `Overloaded`, or waits for
//! background jobs). The upstream's refusals keep its message: 429 stays 429, other failures are
//! [`ModelError::Upstream`] (502); no answer, or a silence between chunks, past the timeout is
//! [`ModelError::UpstreamTimeout`] (504). A client that goes away closes the upstream connection, which ends
//! the upstream's generation. The API key is sent as a bearer token and never logged or shown.

use std::fmt;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::ImageEncoder;
use lens_core::image::RgbImage;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::GenerationConfig;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::conversation::{ChatEvent, ChatPrompt, Finished};
use super::worker::ModelError;
use crate::telemetry::error_chain;

/// Pieces a client has not read yet before the relay stops reading the upstream.
const STREAM_BUFFER: usize = 64;
/// Longest line of the upstream's event stream, and most bytes of an error body read.
const MAX_LINE_BYTES: usize = 1 << 20;

/// A secret that prints as `***`.
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// The upstream and how to reach it.
#[derive(Debug)]
pub struct RemoteChat {
    client: reqwest::Client,
    url: url::Url,
    model: String,
    key: Option<ApiKey>,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl RemoteChat {
    /// `client` is built by the caller with its address policy; at most `concurrency` answers at once.
    pub fn new(
        client: reqwest::Client,
        url: url::Url,
        model: String,
        key: Option<String>,
        timeout: Duration,
        concurrency: usize,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        Self { client, url, model, key: key.map(ApiKey), timeout, slots }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends the conversation upstream; once the upstream has accepted it (a 2xx), its answer streams on the
    /// receiver. Dropping the receiver closes the upstream connection.
    pub async fn answer(
        &self,
        prompt: ChatPrompt,
        config: GenerationConfig,
        stop: Vec<String>,
        wait: bool,
    ) -> Result<mpsc::Receiver<Result<ChatEvent, ModelError>>, ModelError> {
        let permit = if wait {
            Arc::clone(&self.slots).acquire_owned().await.map_err(|_| ModelError::Stopped)?
        } else {
            Arc::clone(&self.slots).try_acquire_owned().map_err(|_| ModelError::Overloaded)?
        };
        let messages = tokio::task::spawn_blocking(move || openai_messages(prompt))
            .await
            .map_err(|e| ModelError::Panicked(e.to_string()))??;
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        match &config.sampling {
            None => body["temperature"] = json!(0),
            Some(s) => {
                body["temperature"] = json!(s.temperature);
                body["top_p"] = json!(s.top_p);
                body["seed"] = json!(s.seed);
            }
        }
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        if config.min_new_tokens > 0 {
            // Only when asked for: vLLM and Lens know it, OpenAI's own API does not.
            body["min_tokens"] = json!(config.min_new_tokens);
        }
        let mut request = self.client.post(self.url.clone()).json(&body);
        if let Some(ApiKey(key)) = &self.key {
            request = request.bearer_auth(key);
        }
        let started = Instant::now();
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => return Err(ModelError::UpstreamTimeout(self.timeout.as_secs())),
            Ok(Err(e)) if e.is_timeout() => return Err(ModelError::UpstreamTimeout(self.timeout.as_secs())),
            Ok(Err(e)) => return Err(ModelError::Upstream(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            let message = error_message(response, self.timeout).await;
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(ModelError::Overloaded);
            }
            return Err(ModelError::Upstream(format!("{} answered {status}: {message}", self.url)));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let _ = tx.send(Ok(ChatEvent::Started { prompt_tokens: 0 })).await;
        let (timeout, model) = (self.timeout, self.model.clone());
        tokio::spawn(async move { relay(response, tx, timeout, started, model, permit).await });
        Ok(rx)
    }
}

/// The conversation in OpenAI's shape: image parts as `image_url`s with PNG data URLs, in order.
fn openai_messages(prompt: ChatPrompt) -> Result<Vec<Value>, ModelError> {
    let mut images = prompt.images.into_iter();
    let mut out = Vec::with_capacity(prompt.messages.len());
    for ChatMessage { role, content } in prompt.messages {
        let content = match content {
            Content::Text(text) => json!(text),
            Content::Parts(parts) => {
                let mut items = Vec::with_capacity(parts.len());
                for part in parts {
                    items.push(match part {
                        Part::Text { text } => json!({"type": "text", "text": text}),
                        Part::Image => {
                            let image = images
                                .next()
                                .ok_or_else(|| ModelError::Panicked("an image part without its image".into()))?;
                            json!({"type": "image_url", "image_url": {"url": png_data_url(&image)?}})
                        }
                    });
                }
                Value::Array(items)
            }
        };
        out.push(json!({"role": role, "content": content}));
    }
    Ok(out)
}

/// The decoded pixels as a PNG `data:` URL: lossless, so the upstream sees what a local model would.
fn png_data_url(image: &RgbImage) -> Result<String, ModelError> {
    use base64::Engine;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(Cursor::new(&mut png))
        .write_image(&image.data, image.width, image.height, image::ExtendedColorType::Rgb8)
        .map_err(|e| ModelError::Panicked(format!("cannot encode an image as PNG: {e}")))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

/// Reads the upstream's event stream and passes each delta on; ends with `Done` (or the error).
async fn relay(
    mut response: reqwest::Response,
    tx: mpsc::Sender<Result<ChatEvent, ModelError>>,
    timeout: Duration,
    started: Instant,
    // The `model` label of the metrics.
    model: String,
    _permit: OwnedSemaphorePermit,
) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut answer = Answer::default();
    let outcome = loop {
        let chunk = match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_) => break Err(ModelError::UpstreamTimeout(timeout.as_secs())),
            Ok(Err(e)) => break Err(ModelError::Upstream(error_chain(&e))),
            Ok(Ok(None)) => break Err(ModelError::Upstream("the upstream's stream ended before its answer".into())),
            Ok(Ok(Some(chunk))) => chunk,
        };
        buffer.extend_from_slice(&chunk);
        let mut step = Step::More;
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            step = answer.line(String::from_utf8_lossy(&line).trim_end());
            if !matches!(step, Step::More) {
                break;
            }
            for piece in answer.pieces.drain(..) {
                if answer.first_piece.is_none() {
                    answer.first_piece = Some(started.elapsed());
                }
                if tx.send(Ok(ChatEvent::Text(piece))).await.is_err() {
                    // The client went away: dropping the response closes the upstream connection.
                    metrics::counter!("lens_chat_cancelled_total", "model" => model.clone()).increment(1);
                    return;
                }
            }
        }
        match step {
            Step::More if buffer.len() > MAX_LINE_BYTES => {
                break Err(ModelError::Upstream("a line of the upstream's stream is over 1 MiB".into()));
            }
            Step::More => {}
            Step::Failed(e) => break Err(e),
            Step::Done => break answer.finished(),
        }
    };
    match outcome {
        Ok(finished) => {
            if let Some(ttft) = answer.first_piece {
                metrics::histogram!("lens_chat_time_to_first_token_seconds", "model" => model.clone())
                    .record(ttft.as_secs_f64());
            }
            metrics::counter!("lens_chat_completion_tokens_total", "model" => model)
                .increment(finished.completion_tokens as u64);
            let _ = tx.send(Ok(ChatEvent::Done(finished))).await;
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// What a line of the stream leads to.
enum Step {
    More,
    Done,
    Failed(ModelError),
}

/// The answer as the stream has told it so far.
#[derive(Default)]
struct Answer {
    text: String,
    /// Pieces read but not passed on yet.
    pieces: Vec<String>,
    deltas: usize,
    finish_reason: Option<String>,
    usage: Option<(usize, usize)>,
    first_piece: Option<Duration>,
}

impl Answer {
    /// One line of the event stream: `data: {chunk}`, `data: [DONE]`; comments, `event:`/`id:` lines and
    /// blank lines are passed over.
    fn line(&mut self, line: &str) -> Step {
        let Some(data) = line.strip_prefix("data:") else { return Step::More };
        let data = data.trim_start();
        if data == "[DONE]" {
            return Step::Done;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return Step::Failed(ModelError::Upstream(format!("the upstream sent a chunk that is not JSON: {e}")));
            }
        };
        if let Some(error) = chunk.get("error") {
            return Step::Failed(ModelError::Upstream(upstream_error_text(error)));
        }
        let choice = &chunk["choices"][0];
        if let Some(piece) = choice["delta"]["content"].as_str()
            && !piece.is_empty()
        {
            self.text.push_str(piece);
            self.pieces.push(piece.to_string());
            self.deltas += 1;
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        if let (Some(prompt), Some(completion)) =
            (chunk["usage"]["prompt_tokens"].as_u64(), chunk["usage"]["completion_tokens"].as_u64())
        {
            self.usage = Some((prompt as usize, completion as usize));
        }
        Step::More
    }

    /// The end, once `[DONE]` came: an answer without a finish reason was cut short.
    fn finished(&mut self) -> Result<Finished, ModelError> {
        let finish_reason = self
            .finish_reason
            .take()
            .ok_or_else(|| ModelError::Upstream("the upstream's stream ended without a finish_reason".into()))?;
        // Without usage (a provider that ignores `include_usage`), each delta counts as one token.
        let (prompt_tokens, completion_tokens) = self.usage.unwrap_or((0, self.deltas));
        Ok(Finished { text: std::mem::take(&mut self.text), finish_reason, prompt_tokens, completion_tokens })
    }
}

/// The message of an upstream's error body (OpenAI's `{"error": {"message"}}`, or its text), at most 1 MiB read.
async fn error_message(mut response: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_LINE_BYTES {
        match tokio::time::timeout(timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.get("error").is_some() => upstream_error_text(&v["error"]),
        _ => String::from_utf8_lossy(&body).chars().take(500).collect(),
    }
}

fn upstream_error_text(error: &Value) -> String {
    match error["message"].as_str() {
        Some(message) => message.chars().take(2000).collect(),
        None => error.to_string().chars().take(2000).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_becomes_pieces_and_its_end() {
        let mut answer = Answer::default();
        for line in [
            ": keep-alive",
            r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"content":"A red"}}]}"#,
            "",
            r#"data:{"choices":[{"index":0,"delta":{"content":" rocket."},"finish_reason":null}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
        ] {
            assert!(matches!(answer.line(line), Step::More), "{line}");
        }
        assert_eq!(answer.pieces, ["A red", " rocket."]);
        assert!(matches!(answer.line("data: [DONE]"), Step::Done));
        let finished = answer.finished().unwrap();
        assert_eq!(
            finished,
            Finished {
                text: "A red rocket.".into(),
                finish_reason: "stop".into(),
                prompt_tokens: 7,
                completion_tokens: 3
            }
        );
    }

    #[test]
    fn upstream_errors_and_cut_streams_are_failures() {
        let mut answer = Answer::default();
        match answer.line(r#"data: {"error":{"message":"model overloaded","type":"server_error"}}"#) {
            Step::Failed(ModelError::Upstream(m)) => assert_eq!(m, "model overloaded"),
            _ => panic!("an error event fails the answer"),
        }
        assert!(matches!(answer.line("data: {not json"), Step::Failed(_)));
        let mut cut = Answer::default();
        cut.line(r#"data: {"choices":[{"delta":{"content":"A"}}]}"#);
        assert!(cut.finished().is_err(), "no finish_reason: cut short");
        assert_eq!(format!("{:?}", ApiKey("sk-secret".into())), "ApiKey(***)");
    }
}
