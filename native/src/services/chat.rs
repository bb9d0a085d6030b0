//! Chat completions (`POST /v1/chat/completions`): an OpenAI-shaped request checked against the server's
//! limits, its images resolved (`data:` URLs, `http(s)` URLs through the SSRF-safe fetcher, stored images as
//! `lens://images/{id}`) and decoded, then queued for the chat model, whose answer streams back.
//!
//! Sampling follows OpenAI's defaults: `temperature` absent is 1, 0 is greedy decoding; without a `seed` each
//! request draws its own. Everything is checked before the model queue sees the request.

use base64::Engine;
use bytes::Bytes;
use lens_core::api::{self, ContentPart, ErrorCode, MessageContent, RequestError};
use lens_core::image::RgbImage;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::{GenerationConfig, Sampling};
use lens_models::llava::MAX_IMAGES;
use tokio::sync::mpsc;

use super::caller::Caller;
use super::errors::{Coded, NotReady};
use super::fetch::FetchError;
use super::images::{ImageError, decode_checked, find, stored_image};
use super::knowledge::{self, KnowledgeError};
use super::lens::Lens;
use crate::config::ChatConfig;
use crate::runtime::{ChatEvent, ChatModel, ChatPrompt, Finished, Loaded, ModelError};

/// Most messages in one conversation.
pub const MAX_MESSAGES: usize = 256;
/// Most stop strings, as OpenAI allows.
pub const MAX_STOP: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Longest `model` and `user` fields.
pub const MAX_NAME_BYTES: usize = 256;
/// The scheme of stored images in `image_url`.
pub const STORED_PREFIX: &str = "lens://images/";

/// Why a chat request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("this server has no chat model (start it with --chat-model)")]
    Disabled,
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    Input(#[from] ImageError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// One image of several failed.
    #[error("image {number}: {source}")]
    InImage { number: usize, source: Box<ChatError> },
    /// The `lens` field's retrieval failed.
    #[error("lens: {0}")]
    Knowledge(Box<KnowledgeError>),
}

impl Coded for ChatError {
    fn code(&self) -> ErrorCode {
        match self {
            ChatError::Disabled => ErrorCode::ChatDisabled,
            ChatError::NotReady(e) => e.code(),
            ChatError::Invalid(e) => e.code(),
            ChatError::Input(e) => e.code(),
            ChatError::Fetch(e) => e.code(),
            ChatError::Model(e) => e.code(),
            ChatError::InImage { source, .. } => source.code(),
            ChatError::Knowledge(e) => e.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            ChatError::Input(e) => e.public_message(),
            ChatError::Fetch(e) => e.public_message(),
            ChatError::Model(e) => e.public_message(),
            ChatError::InImage { number, source } => format!("image {number}: {}", source.public_message()),
            ChatError::Knowledge(e) => format!("lens: {}", e.public_message()),
            other => other.to_string(),
        }
    }
}

/// A queued conversation: what the answer is labelled with, and its events.
pub struct ChatAnswer {
    /// `chatcmpl-` and 24 hex digits.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The chat model's id.
    pub model: String,
    pub events: mpsc::Receiver<Result<ChatEvent, ModelError>>,
    /// The passages retrieved for the request's `lens` field.
    pub sources: Option<Vec<api::Passage>>,
}

impl ChatAnswer {
    /// Reads the events to the end: how the answer ended.
    pub async fn finish(&mut self) -> Result<Finished, ModelError> {
        loop {
            match self.events.recv().await {
                Some(Ok(ChatEvent::Started { .. } | ChatEvent::Text(_))) => {}
                Some(Ok(ChatEvent::Done(finished))) => return Ok(finished),
                Some(Err(e)) => return Err(e),
                None => return Err(ModelError::Stopped),
            }
        }
    }
}

/// The chat settings and the loaded chat model: [`ChatError::Disabled`] without `--chat-model`,
/// `NotReady` while models load.
pub fn chat_model(lens: &Lens) -> Result<(&ChatConfig, &Loaded<ChatModel>), ChatError> {
    let config = lens.config.chat.as_ref().ok_or(ChatError::Disabled)?;
    let chat = lens.ready()?.models.chat().ok_or(NotReady)?;
    Ok((config, chat))
}

/// Checks `request`, resolves its images and queues it for the chat model.
pub async fn answer(
    lens: &Lens,
    caller: &Caller,
    request: &api::ChatCompletionRequest,
) -> Result<ChatAnswer, ChatError> {
    let (chat_config, chat) = chat_model(lens)?;
    let served = &chat.info.identity;
    if request.model.len() > MAX_NAME_BYTES || (request.model != served.id && request.model != served.name) {
        return Err(RequestError::invalid(format!(
            "model `{}` is not served here: this server's chat model is `{}` (GET /v1/models)",
            truncated(&request.model),
            served.id
        ))
        .into());
    }
    if request.user.as_ref().is_some_and(|u| u.len() > MAX_NAME_BYTES) {
        return Err(RequestError::invalid(format!("`user` is longer than {MAX_NAME_BYTES} bytes")).into());
    }
    let config = generation_config(request, chat_config.max_tokens)?;
    let stop = stop_strings(request)?;
    let (mut messages, image_urls) = conversation(request)?;
    let sources = match &request.lens {
        None => None,
        Some(retrieval) => {
            let query = last_user_text(request).ok_or_else(|| {
                RequestError::invalid("`lens` retrieves for the last user message: there is none with text")
            })?;
            let passages = knowledge::chat_sources(lens, caller, retrieval, &query)
                .await
                .map_err(|e| ChatError::Knowledge(Box::new(e)))?;
            give_passages(&mut messages, &passages);
            Some(passages)
        }
    };
    if !image_urls.is_empty() && !chat.model.limits.images {
        return Err(RequestError::invalid(format!("the chat model `{}` takes no images", served.id)).into());
    }
    if image_urls.len() > MAX_IMAGES {
        return Err(RequestError::invalid(format!(
            "{} images in the conversation; at most {MAX_IMAGES}",
            image_urls.len()
        ))
        .into());
    }
    let mut images = Vec::with_capacity(image_urls.len());
    for (i, url) in image_urls.iter().enumerate() {
        let image = resolve_image(lens, caller, url).await.map_err(|e| {
            if image_urls.len() > 1 { ChatError::InImage { number: i + 1, source: Box::new(e) } } else { e }
        })?;
        images.push(image);
    }
    let mut answer = queue(chat, ChatPrompt { messages, images }, config, stop, false).await?;
    answer.sources = sources;
    Ok(answer)
}

/// The text of the last user message (its text parts, joined by spaces).
fn last_user_text(request: &api::ChatCompletionRequest) -> Option<String> {
    let message = request.messages.iter().rev().find(|m| m.role == "user")?;
    let text = match message.content.as_ref()? {
        MessageContent::Text(text) => text.clone(),
        MessageContent::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                ContentPart::ImageUrl { .. } => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    (!text.trim().is_empty()).then_some(text)
}

/// Puts the passages in the system turn: appended to the conversation's own, or a new one first.
fn give_passages(messages: &mut Vec<ChatMessage>, passages: &[api::Passage]) {
    let prompt = knowledge::passages_prompt(passages);
    match messages.first_mut() {
        Some(first) if first.role == "system" => match &mut first.content {
            Content::Text(text) => {
                text.push_str("\n\n");
                text.push_str(&prompt);
            }
            Content::Parts(parts) => parts.push(Part::Text { text: format!("\n\n{prompt}") }),
        },
        _ => messages.insert(0, ChatMessage { role: "system".into(), content: Content::Text(prompt) }),
    }
}

/// Queues a checked prompt for the chat model (with `wait`, waits for room in a full queue).
pub async fn queue(
    chat: &Loaded<ChatModel>,
    prompt: ChatPrompt,
    config: GenerationConfig,
    stop: Vec<String>,
    wait: bool,
) -> Result<ChatAnswer, ChatError> {
    let events = chat.model.answer(prompt, config, stop, wait).await?;
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(ChatAnswer {
        id: format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32),
        created,
        model: chat.info.identity.id.clone(),
        events,
        sources: None,
    })
}

/// At most 64 characters of a client's string, for messages that quote it.
pub fn truncated(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// `max_completion_tokens` (or `max_tokens`, else the server's limit), `min_tokens`, `temperature`, `top_p`,
/// `seed`.
fn generation_config(request: &api::ChatCompletionRequest, max_tokens: usize) -> Result<GenerationConfig, ChatError> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(RequestError::invalid("`n` must be 1: one choice per request").into());
    }
    let asked = request.max_completion_tokens.or(request.max_tokens).map(|n| n as usize);
    let max_new_tokens = match asked {
        None => max_tokens,
        Some(n) if (1..=max_tokens).contains(&n) => n,
        Some(n) => {
            return Err(RequestError::invalid(format!(
                "`max_tokens` is {n}; this server allows 1 to {max_tokens} (--chat-max-tokens)"
            ))
            .into());
        }
    };
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(RequestError::invalid(format!("`temperature` is {temperature}; it must be 0 to 2")).into());
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(RequestError::invalid(format!("`top_p` is {top_p}; it must be above 0 and at most 1")).into());
    }
    let sampling = (temperature > 0.0).then(|| Sampling {
        temperature,
        top_p,
        top_k: 0,
        seed: request.seed.unwrap_or_else(rand::random),
    });
    let min_new_tokens = request.min_tokens.unwrap_or(0) as usize;
    if min_new_tokens > max_new_tokens {
        return Err(RequestError::invalid(format!(
            "`min_tokens` is {min_new_tokens}, more than the {max_new_tokens} tokens asked for"
        ))
        .into());
    }
    let config = GenerationConfig { max_new_tokens, min_new_tokens, sampling, ..Default::default() };
    config.validate().map_err(|e| RequestError::invalid(e.to_string()))?;
    Ok(config)
}

fn stop_strings(request: &api::ChatCompletionRequest) -> Result<Vec<String>, ChatError> {
    let stop = request.stop.clone().map(api::StopSequences::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(RequestError::invalid(format!("{} stop strings; at most {MAX_STOP}", stop.len())).into());
    }
    if stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
        return Err(RequestError::invalid(format!("each stop string must be 1 to {MAX_STOP_BYTES} bytes")).into());
    }
    Ok(stop)
}

/// The messages as the chat template takes them, and the image URLs in the order their parts appear.
fn conversation(request: &api::ChatCompletionRequest) -> Result<(Vec<ChatMessage>, Vec<String>), ChatError> {
    if request.messages.is_empty() {
        return Err(RequestError::invalid("`messages` is empty").into());
    }
    if request.messages.len() > MAX_MESSAGES {
        return Err(
            RequestError::invalid(format!("{} messages; at most {MAX_MESSAGES}", request.messages.len())).into()
        );
    }
    let mut images = Vec::new();
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let role = match message.role.as_str() {
            // OpenAI's newer name for the system turn.
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(RequestError::invalid(format!(
                    "messages[{i}]: role `{}` is not one of system, developer, user, assistant",
                    truncated(other)
                ))
                .into());
            }
        };
        let content = match &message.content {
            None if role == "assistant" => Content::Text(String::new()),
            None => return Err(RequestError::invalid(format!("messages[{i}]: `content` is missing")).into()),
            Some(MessageContent::Text(text)) => Content::Text(text.clone()),
            Some(MessageContent::Parts(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    match part {
                        ContentPart::Text { text } => out.push(Part::Text { text: text.clone() }),
                        ContentPart::ImageUrl { image_url } if role == "user" => {
                            images.push(image_url.url.clone());
                            out.push(Part::Image);
                        }
                        ContentPart::ImageUrl { .. } => {
                            return Err(RequestError::invalid(format!(
                                "messages[{i}]: only user messages may hold images"
                            ))
                            .into());
                        }
                    }
                }
                Content::Parts(out)
            }
        };
        messages.push(ChatMessage { role: role.to_string(), content });
    }
    Ok((messages, images))
}

/// The decoded image an `image_url` names.
/// A stored image must be one the caller sees.
pub async fn resolve_image(lens: &Lens, caller: &Caller, url: &str) -> Result<RgbImage, ChatError> {
    if let Some(id) = url.strip_prefix(STORED_PREFIX) {
        let record = find(lens, caller, id).await?;
        return Ok(stored_image(lens, &record).await?);
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let bytes = data_url_bytes(rest, lens.config.max_file_bytes)?;
        return Ok(decode_checked(lens, bytes).await?.1);
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let fetched = lens.fetcher.fetch(url).await?;
        lens_core::limits::check_file_size(fetched.bytes.len(), lens.config.max_file_bytes)?;
        return Ok(decode_checked(lens, fetched.bytes).await?.1);
    }
    Err(RequestError::new(
        ErrorCode::InvalidUrl,
        format!(
            "image_url `{}`: use a data:image/...;base64, URL, an http(s) URL or {STORED_PREFIX}{{id}}",
            truncated(url)
        ),
    )
    .into())
}

/// The bytes of a `data:[<type>];base64,<data>` URL (after `data:`), at most `max_bytes` of them.
fn data_url_bytes(rest: &str, max_bytes: usize) -> Result<Bytes, ChatError> {
    let (meta, data) = rest.split_once(',').ok_or_else(|| RequestError::invalid("data URL without a comma"))?;
    if !meta.ends_with(";base64") {
        return Err(RequestError::invalid("data URL images must be base64 (`data:image/png;base64,...`)").into());
    }
    // Base64 takes 4 characters for 3 bytes: refuse an oversized image before decoding it.
    if data.len() / 4 * 3 > max_bytes + 3 {
        return Err(RequestError::too_large(format!("data URL image larger than {max_bytes} bytes")).into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim_end())
        .map_err(|e| RequestError::invalid(format!("data URL: invalid base64 ({e})")))?;
    lens_core::limits::check_file_size(bytes.len(), max_bytes)?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_decode_and_bad_ones_are_refused() {
        assert_eq!(&data_url_bytes("image/png;base64,AAEC", 100).unwrap()[..], &[0, 1, 2]);
        for (bad, needle) in [
            ("image/png;base64,@@@@", "invalid base64"),
            ("image/png,AAEC", "must be base64"),
            ("image/png;base64", "without a comma"),
            ("image/png;base64,AAECAwQF", "over the limit"),
            ("image/png;base64,AAECAwQFBgcICQ==", "larger than"),
        ] {
            let err = data_url_bytes(bad, 4).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn sampling_follows_openai_defaults() {
        let request =
            |t: Option<f32>| api::ChatCompletionRequest { temperature: t, seed: Some(3), ..Default::default() };
        assert!(generation_config(&request(Some(0.0)), 8).unwrap().sampling.is_none(), "0 is greedy");
        let sampled = generation_config(&request(None), 8).unwrap();
        assert_eq!(sampled.sampling.unwrap().temperature, 1.0);
        assert_eq!(sampled.max_new_tokens, 8, "the server's limit when none is asked");
        let floor = api::ChatCompletionRequest { max_tokens: Some(6), min_tokens: Some(6), ..Default::default() };
        assert_eq!(generation_config(&floor, 8).unwrap().min_new_tokens, 6);
        for bad in [
            api::ChatCompletionRequest { max_tokens: Some(9), ..Default::default() },
            api::ChatCompletionRequest { max_tokens: Some(0), ..Default::default() },
            api::ChatCompletionRequest { temperature: Some(2.5), ..Default::default() },
            api::ChatCompletionRequest { top_p: Some(0.0), ..Default::default() },
            api::ChatCompletionRequest { n: Some(2), ..Default::default() },
            api::ChatCompletionRequest { max_tokens: Some(4), min_tokens: Some(5), ..Default::default() },
        ] {
            assert!(generation_config(&bad, 8).is_err(), "{bad:?}");
        }
    }
}
