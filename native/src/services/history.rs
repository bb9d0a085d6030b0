//! The history of answered chats and analyses (`/v1/chats`): each answer is kept, before its last chunk or
//! its response leaves, with the request's `user` and the conversation — images as references, never their
//! bytes — unless the request says `"store": false` or the server runs with `--chat-history false`. Listed
//! newest first (one user's, one kind's), read, deleted one by one or a user's all at once; the oldest
//! entries go past `--chat-history-entries`.

use lens_core::api::{self, ErrorCode, RequestError};
use lens_store::{NewChat, StoreError};
use serde_json::{Value, json};

use super::caller::Caller;
use super::chat::truncated;
use super::errors::coded_enum;
use super::lens::Lens;
use crate::runtime::Finished;

/// Most chats in one page.
const MAX_LIMIT: usize = 200;
/// Longest chat id accepted in a path.
const MAX_ID_BYTES: usize = 64;

/// Why a history request failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("no chat `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

coded_enum!(HistoryError { wraps: [Invalid, Store], own: [HistoryError::NotFound(_) => ErrorCode::NotFound] });

/// A chat on its way, to keep once answered.
pub struct Pending {
    pub kind: &'static str,
    pub user: Option<String>,
    /// The asking key's tenant, whose history it joins.
    pub tenant: Option<String>,
    pub messages: Value,
}

/// What to keep of a chat completion request, or `None` when it is not kept.
pub fn pending_chat(lens: &Lens, caller: &Caller, request: &api::ChatCompletionRequest) -> Option<Pending> {
    if !history_on(lens) || request.store == Some(false) {
        return None;
    }
    let mut messages = serde_json::to_value(&request.messages).unwrap_or(Value::Null);
    for message in messages.as_array_mut().into_iter().flatten() {
        for part in message["content"].as_array_mut().into_iter().flatten() {
            if let Some(url) = part["image_url"]["url"].as_str() {
                part["image_url"]["url"] = json!(image_reference(url));
            }
        }
    }
    Some(Pending { kind: "chat", user: request.user.clone(), tenant: caller.tenant.clone(), messages })
}

/// What to keep of an analysis: the image (as a reference) and the prompt, as a user turn.
pub fn pending_analysis(
    lens: &Lens,
    caller: &Caller,
    user: Option<String>,
    image: &str,
    prompt: &str,
) -> Option<Pending> {
    history_on(lens).then(|| Pending {
        kind: "analysis",
        user,
        tenant: caller.tenant.clone(),
        messages: json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_reference(image)}},
            {"type": "text", "text": prompt}]}]),
    })
}

fn history_on(lens: &Lens) -> bool {
    lens.config.chat.as_ref().is_some_and(|c| c.history.is_some())
}

/// An image URL as the history keeps it: `data:` URLs lose their payload (kept: the type and its size).
fn image_reference(url: &str) -> String {
    match url.strip_prefix("data:").and_then(|rest| rest.split_once(',')) {
        Some((meta, data)) => format!("data:{meta},(omitted: {} base64 characters)", data.len()),
        None => url.to_string(),
    }
}

/// Keeps an answered chat. A failure is logged, not answered: the client has its answer.
pub async fn record(lens: &Lens, pending: Pending, id: &str, model: &str, finished: &Finished) {
    let Some(max) = lens.config.chat.as_ref().and_then(|c| c.history) else { return };
    let (id, model, finished) = (id.to_string(), model.to_string(), finished.clone());
    let stored = lens
        .catalog(move |c| {
            let chat = NewChat {
                id: &id,
                kind: pending.kind,
                user: pending.user.as_deref(),
                tenant: pending.tenant.as_deref(),
                model: &model,
                messages: &pending.messages,
                answer: &finished.text,
                finish_reason: &finished.finish_reason,
                prompt_tokens: finished.prompt_tokens,
                completion_tokens: finished.completion_tokens,
            };
            c.store_chat(&chat, max)
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot keep a chat in the history");
    }
}

/// `GET /v1/chats`
pub async fn list(lens: &Lens, caller: &Caller, query: api::ChatsQuery) -> Result<api::ChatList, HistoryError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(RequestError::invalid(format!("limit must be between 1 and {MAX_LIMIT}")).into());
    }
    check_kind(query.kind.as_deref())?;
    let who = caller.clone();
    let page = lens
        .catalog(move |c| {
            c.list_chats(query.user.as_deref(), query.kind.as_deref(), limit, query.cursor.as_deref(), who.visible())
        })
        .await?;
    Ok(api::ChatList { chats: page.chats, next_cursor: page.next_cursor })
}

/// `GET /v1/chats/{id}`
pub async fn get(lens: &Lens, caller: &Caller, id: &str) -> Result<api::StoredChat, HistoryError> {
    let id = checked_id(id)?;
    let (lookup, who) = (id.clone(), caller.clone());
    lens.catalog(move |c| c.chat(&lookup, who.visible())).await?.ok_or(HistoryError::NotFound(id))
}

/// `DELETE /v1/chats/{id}`
pub async fn delete(lens: &Lens, caller: &Caller, id: &str) -> Result<(), HistoryError> {
    let id = checked_id(id)?;
    let (lookup, who) = (id.clone(), caller.clone());
    if lens.catalog(move |c| c.delete_chat(&lookup, who.visible())).await? {
        Ok(())
    } else {
        Err(HistoryError::NotFound(id))
    }
}

/// `DELETE /v1/chats?user=…`: every chat of one user.
pub async fn delete_user(
    lens: &Lens,
    caller: &Caller,
    query: api::ChatsQuery,
) -> Result<api::DeletedChats, HistoryError> {
    let Some(user) = query.user else {
        return Err(
            RequestError::invalid("`user` is required: DELETE /v1/chats?user=NAME deletes that user's chats").into()
        );
    };
    if query.kind.is_some() || query.limit.is_some() || query.cursor.is_some() {
        return Err(RequestError::invalid("DELETE /v1/chats takes `user` only").into());
    }
    let who = caller.clone();
    let deleted = lens.catalog(move |c| c.delete_user_chats(&user, who.visible())).await?;
    Ok(api::DeletedChats { deleted })
}

fn check_kind(kind: Option<&str>) -> Result<(), RequestError> {
    match kind {
        None | Some("chat" | "analysis") => Ok(()),
        Some(other) => Err(RequestError::invalid(format!("kind `{}` is not chat or analysis", truncated(other)))),
    }
}

fn checked_id(id: &str) -> Result<String, RequestError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(RequestError::invalid(format!("`{}` is not a chat id", truncated(id))));
    }
    Ok(id.to_string())
}
