//! `/v1/chats`: the history of answered chats and analyses — listed (a user's, a kind's), read, deleted.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use lens_core::api::{ChatList, ChatsQuery, DeletedChats, ErrorBody, StoredChat};

use super::error::ApiResult;
use super::extract::{Path, Query};
use crate::services::history as service;
use crate::services::{Caller, Lens};

/// Answered chats and analyses, newest first, a page at a time; `user` and `kind` filter.
#[utoipa::path(get, path = "/v1/chats", operation_id = "list_chats", tag = "chat", params(ChatsQuery),
    responses((status = 200, description = "ok", body = ChatList), (status = 400, description = "a bad limit, kind or cursor", body = ErrorBody)))]
pub async fn list(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ChatsQuery>,
) -> ApiResult<axum::Json<ChatList>> {
    Ok(axum::Json(service::list(&lens, &caller, query).await?))
}

/// One answered chat or analysis.
#[utoipa::path(get, path = "/v1/chats/{id}", operation_id = "get_chat", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, description = "ok", body = StoredChat), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn get(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<StoredChat>> {
    Ok(axum::Json(service::get(&lens, &caller, &id).await?))
}

/// Delete one chat from the history.
#[utoipa::path(delete, path = "/v1/chats/{id}", operation_id = "delete_chat", tag = "chat", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn delete(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service::delete(&lens, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete every chat of one user (`?user=NAME`, required).
#[utoipa::path(delete, path = "/v1/chats", operation_id = "delete_user_chats", tag = "chat", params(ChatsQuery),
    responses((status = 200, description = "ok", body = DeletedChats), (status = 400, description = "no `user`", body = ErrorBody)))]
pub async fn delete_user(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ChatsQuery>,
) -> ApiResult<axum::Json<DeletedChats>> {
    Ok(axum::Json(service::delete_user(&lens, &caller, query).await?))
}
