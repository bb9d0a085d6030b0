//! `POST /v1/chat/completions`: one `chat.completion`, or with `stream` server-sent `chat.completion.chunk`s
//! as the tokens are produced (the role first, the text, the `finish_reason`, the usage when asked for,
//! `data: [DONE]`). Errors found before generation starts are answered with their status; one during a
//! stream ends it with an `{"error": …}` event, as OpenAI's API does. A client that goes away stops its
//! generation: the stream's receiver is dropped with the response.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use lens_core::api::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatSources, ChunkChoice,
    Delta, ErrorBody, ErrorCode, Usage,
};

use super::error::{ApiError, ApiResult};
use super::extract::Json;
use crate::runtime::{ChatEvent, Finished, ModelError};
use crate::services::chat::{self as service, ChatAnswer, ChatError};
use crate::services::errors::Coded;
use crate::services::history::{self, Pending};
use crate::services::{Caller, Lens};

/// Answer a conversation (OpenAI's chat completions): text, and images as `image_url` parts (`data:` URLs,
/// `http(s)` URLs, stored images as `lens://images/{id}`) when the chat model sees images.
#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "create_chat_completion", tag = "chat",
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses((status = 200, description = "the answer; with `stream`, server-sent `chat.completion.chunk`s ended by `data: [DONE]`",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        (status = 400, description = "invalid request: unknown model, bad image, over a limit, prompt longer than the context", body = ErrorBody),
        (status = 404, description = "a stored image that does not exist", body = ErrorBody), (status = 413, description = "an image over the size limit", body = ErrorBody),
        (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody),
        (status = 429, description = "the chat model's queue is full (see Retry-After)", body = ErrorBody),
        (status = 503, description = "models loading, or no chat model (chat_disabled)", body = ErrorBody), (status = 504, description = "an image URL fetch timed out", body = ErrorBody)))]
pub async fn create(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let mut answer = service::answer(&lens, &caller, &request).await?;
    let prompt_tokens = started(&mut answer).await?;
    let pending = history::pending_chat(&lens, &caller, &request);
    if request.stream {
        let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
        return Ok(stream(&lens, answer, prompt_tokens, include_usage, pending));
    }
    let finished = answer.finish().await.map_err(ChatError::Model)?;
    if let Some(pending) = pending {
        history::record(&lens, pending, &answer.id, &answer.model, &finished).await;
    }
    let body = ChatCompletion {
        id: answer.id,
        object: "chat.completion".into(),
        created: answer.created,
        model: answer.model,
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage { role: "assistant".into(), content: finished.text.clone() },
            finish_reason: finished.finish_reason.clone(),
            logprobs: None,
        }],
        usage: usage(prompt_tokens, &finished),
        lens: answer.sources.map(|sources| ChatSources { sources }),
    };
    Ok(axum::Json(body).into_response())
}

/// Waits for generation to start: until then a failure (a prompt too long for the context) is the
/// request's status. The prompt's tokens.
pub(super) async fn started(answer: &mut ChatAnswer) -> Result<usize, ApiError> {
    match answer.events.recv().await {
        Some(Ok(ChatEvent::Started { prompt_tokens })) => Ok(prompt_tokens),
        Some(Err(e)) => Err(ChatError::Model(e).into()),
        Some(Ok(_)) | None => Err(ChatError::Model(ModelError::Stopped).into()),
    }
}

/// The answer as server-sent `chat.completion.chunk`s, each sent as its tokens are produced; kept in the
/// history (`pending`) before its last chunk leaves.
pub(super) fn stream(
    lens: &Arc<Lens>,
    answer: ChatAnswer,
    prompt_tokens: usize,
    include_usage: bool,
    pending: Option<Pending>,
) -> Response {
    let history = pending.map(|p| (Arc::clone(lens), p));
    let sse = Sse::new(chunks(answer, prompt_tokens, include_usage, history)).keep_alive(KeepAlive::default());
    let mut response = sse.into_response();
    // Proxies must pass each chunk on as it comes.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The usage of a finished answer (the prompt's tokens as `Started` counted them, unless the end knows:
/// a remote provider tells them only there).
pub(super) fn usage(prompt_tokens: usize, finished: &Finished) -> Usage {
    Usage::new(
        if finished.prompt_tokens > 0 { finished.prompt_tokens } else { prompt_tokens },
        finished.completion_tokens,
    )
}

/// The events of a streamed answer.
fn chunks(
    answer: ChatAnswer,
    prompt_tokens: usize,
    include_usage: bool,
    history: Option<(Arc<Lens>, Pending)>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let ChatAnswer { id, created, model, events, sources } = answer;
    let (answer_id, answer_model) = (id.clone(), model.clone());
    let chunk = move |delta: Delta, finish_reason: Option<String>, usage: Option<Usage>, lens: Option<ChatSources>| {
        let choices = if usage.is_some() {
            Vec::new()
        } else {
            vec![ChunkChoice { index: 0, delta, finish_reason, logprobs: None }]
        };
        let chunk = ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            choices,
            usage,
            lens,
        };
        Event::default().data(serde_json::to_string(&chunk).expect("a chunk serializes"))
    };
    let first = chunk(
        Delta { role: Some("assistant".into()), content: Some(String::new()) },
        None,
        None,
        sources.map(|sources| ChatSources { sources }),
    );
    let state = (events, Some(chunk), false, history);
    let rest = futures::stream::unfold(state, move |(mut events, chunk, done, mut history)| {
        let (answer_id, answer_model) = (answer_id.clone(), answer_model.clone());
        async move {
            let chunk = chunk?;
            if done {
                return None;
            }
            let (items, finished) = match events.recv().await {
                Some(Ok(ChatEvent::Text(text))) => {
                    (vec![chunk(Delta { role: None, content: Some(text) }, None, None, None)], false)
                }
                Some(Ok(ChatEvent::Started { .. })) => (Vec::new(), false),
                Some(Ok(ChatEvent::Done(finished))) => {
                    if let Some((lens, pending)) = history.take() {
                        history::record(&lens, pending, &answer_id, &answer_model, &finished).await;
                    }
                    let mut items = vec![chunk(Delta::default(), Some(finished.finish_reason.clone()), None, None)];
                    if include_usage {
                        items.push(chunk(Delta::default(), None, Some(usage(prompt_tokens, &finished)), None));
                    }
                    items.push(Event::default().data("[DONE]"));
                    (items, true)
                }
                Some(Err(e)) => (vec![error_event(&ChatError::Model(e))], true),
                None => (vec![error_event(&ChatError::Model(ModelError::Stopped))], true),
            };
            Some((futures::stream::iter(items.into_iter().map(Ok)), (events, Some(chunk), finished, history)))
        }
    });
    futures::StreamExt::chain(futures::stream::once(async move { Ok(first) }), futures::StreamExt::flatten(rest))
}

/// The event that ends a stream that failed after its first chunk.
fn error_event(error: &ChatError) -> Event {
    let code = error.code();
    if code == ErrorCode::Internal {
        tracing::error!(error = error.describe(), "chat stream failed");
    }
    let body = ErrorBody::new(code, error.client_message());
    Event::default().data(serde_json::to_string(&body).expect("an error body serializes"))
}
