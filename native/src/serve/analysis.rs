//! `POST /v1/analyze`: the chat model's answer to a prompt about one image — an upload (multipart), a URL
//! or a stored image (JSON) — whole, or streamed as `/v1/chat/completions` streams (`chat.completion.chunk`s
//! ended by `data: [DONE]`). With `store`, the answer becomes the stored image's analysis.

use std::sync::Arc;

use axum::extract::{Extension, FromRequest, Multipart, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lens_core::api::{AnalyzeRequest, AnalyzeResponse, ChatCompletionChunk, ErrorBody, ErrorCode};

use super::chat::{started, stream, usage};
use super::error::{ApiError, ApiResult};
use super::extract::Json;
use super::forms::read_field;
use crate::config::MAX_ANALYZE_PROMPT_BYTES;
use crate::services::analysis as service;
use crate::services::chat::ChatError;
use crate::services::history;
use crate::services::{Caller, Lens};

/// The multipart form of `POST /v1/analyze` (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AnalyzeForm {
    /// The image file (JPEG, PNG, GIF, WebP).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    prompt: Option<String>,
    max_tokens: Option<u32>,
    /// `true` to stream.
    stream: Option<bool>,
    user: Option<String>,
}

/// Analyse one image: the chat model (a LLaVA) answers `prompt` (default: the server's `--analyze-prompt`)
/// about it, greedily. JSON with `image` (a `data:`, `http(s)` or `lens://images/{id}` URL) or `image_id`, or a
/// multipart form with a `file`.
#[utoipa::path(post, path = "/v1/analyze", operation_id = "analyze_image", tag = "chat",
    request_body(content((AnalyzeRequest = "application/json"), (AnalyzeForm = "multipart/form-data"))),
    responses((status = 200, description = "the analysis; with `stream`, server-sent `chat.completion.chunk`s ended by `data: [DONE]`",
            content((AnalyzeResponse = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        (status = 400, description = "invalid request: no image or two, a bad prompt or max_tokens, `store` without a stored image, a chat model that takes no images", body = ErrorBody),
        (status = 404, description = "a stored image that does not exist", body = ErrorBody), (status = 413, description = "an image over the size limit", body = ErrorBody),
        (status = 415, description = "neither JSON nor a multipart form", body = ErrorBody),
        (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody),
        (status = 429, description = "the chat model's queue is full (see Retry-After)", body = ErrorBody),
        (status = 503, description = "models loading, or no chat model (chat_disabled)", body = ErrorBody), (status = 504, description = "an image URL fetch timed out", body = ErrorBody)))]
pub async fn create(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (body, upload) = if content_type.starts_with("multipart/form-data") {
        read_form(&lens, Multipart::from_request(request, &()).await?).await?
    } else if content_type.starts_with("application/json") {
        let Json(body): Json<AnalyzeRequest> = Json::from_request(request, &()).await?;
        (body, None)
    } else {
        return Err(ApiError::coded(
            ErrorCode::UnsupportedMediaType,
            "send application/json with `image` or `image_id`, or multipart/form-data with a `file`",
        ));
    };
    let mut analysis = service::analyze(&lens, &caller, &body, upload).await?;
    let prompt_tokens = started(&mut analysis.answer).await?;
    let pending = history::pending_analysis(&lens, &caller, body.user.clone(), &analysis.image_ref, &analysis.prompt);
    if body.stream {
        return Ok(stream(&lens, analysis.answer, prompt_tokens, false, pending));
    }
    let finished = analysis.answer.finish().await.map_err(ChatError::Model)?;
    if let Some(pending) = pending {
        history::record(&lens, pending, &analysis.answer.id, &analysis.answer.model, &finished).await;
    }
    let model = analysis.answer.model;
    let stored = match (&analysis.image_id, body.store) {
        (Some(id), true) => {
            service::store(&lens, id, &finished.text, &analysis.prompt, &model).await?;
            true
        }
        _ => false,
    };
    Ok(axum::Json(AnalyzeResponse {
        usage: usage(prompt_tokens, &finished),
        analysis: finished.text,
        prompt: analysis.prompt,
        model,
        finish_reason: finished.finish_reason,
        image_id: analysis.image_id,
        stored,
    })
    .into_response())
}

/// The form's `file` and fields.
async fn read_form(lens: &Lens, mut multipart: Multipart) -> ApiResult<(AnalyzeRequest, Option<Bytes>)> {
    let mut body = AnalyzeRequest::default();
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::bad_request("one `file` per analysis"));
            }
            file = Some(read_field(&mut field, lens.config.max_file_bytes).await?);
            continue;
        }
        let text = field.text().await?;
        if text.len() > MAX_ANALYZE_PROMPT_BYTES {
            return Err(ApiError::bad_request(format!("the `{name}` field is over {MAX_ANALYZE_PROMPT_BYTES} bytes")));
        }
        let invalid = |what: &str| ApiError::bad_request(format!("`{name}` must be {what}"));
        match name.as_str() {
            "prompt" => body.prompt = Some(text),
            "max_tokens" => body.max_tokens = Some(text.trim().parse().map_err(|_| invalid("a whole number"))?),
            "stream" => body.stream = text.trim().parse().map_err(|_| invalid("true or false"))?,
            "user" => body.user = Some(text),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field `{}` (expected `file`, `prompt`, `max_tokens`, `stream`, `user`)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    if file.is_none() {
        return Err(ApiError::bad_request("no `file` field in the form"));
    }
    Ok((body, file))
}
