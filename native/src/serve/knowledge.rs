//! `/v1/collections`: the knowledge base — upload documents (JSON, JSON Lines, CSV), list, search, delete.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use lens_core::api::{
    CollectionInfo, CollectionList, CollectionSearchRequest, CollectionSearchResponse, DocumentsAdded, ErrorBody,
    ErrorCode,
};
use lens_core::documents::DocumentFormat;

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path};
use crate::services::knowledge as service;
use crate::services::{Caller, Lens};

/// Add documents to a collection (created when new): `{"documents": [{"text", "id"?, "title"?, "metadata"?}]}` as
/// `application/json`, one such object per line as `application/x-ndjson`, or `text/csv` with a header naming
/// `text` (and `id`, `title`; other columns become metadata). A document with the id of a stored one replaces
/// it. Each is cut into overlapping chunks of words, embedded by the text model when there is one. All or nothing.
#[utoipa::path(post, path = "/v1/collections/{name}/documents", operation_id = "add_documents", tag = "knowledge",
    params(("name" = String, Path, description = "1 to 64 lowercase letters, digits, `-`, `_`")),
    request_body(content((String = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 201, description = "stored", body = DocumentsAdded),
        (status = 400, description = "a bad name, document or format (the message names the document or line)", body = ErrorBody),
        (status = 413, description = "over a size or count limit", body = ErrorBody), (status = 415, description = "another content type", body = ErrorBody),
        (status = 429, description = "the text model's queue is full", body = ErrorBody)))]
pub async fn add_documents(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<DocumentsAdded>)> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = DocumentFormat::from_content_type(content_type).ok_or_else(|| {
        ApiError::coded(
            ErrorCode::UnsupportedMediaType,
            "send application/json ({\"documents\": [...]}), application/x-ndjson (one document per line) or text/csv",
        )
    })?;
    let added = service::add_documents(&lens, &caller, &name, format, body).await?;
    Ok((StatusCode::CREATED, axum::Json(added)))
}

/// Every collection with its counts.
#[utoipa::path(get, path = "/v1/collections", operation_id = "list_collections", tag = "knowledge",
    responses((status = 200, description = "ok", body = CollectionList)))]
pub async fn list(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<axum::Json<CollectionList>> {
    Ok(axum::Json(service::list(&lens, &caller).await?))
}

/// One collection's counts.
#[utoipa::path(get, path = "/v1/collections/{name}", operation_id = "get_collection", tag = "knowledge",
    params(("name" = String, Path)), responses((status = 200, description = "ok", body = CollectionInfo), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn get(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<CollectionInfo>> {
    Ok(axum::Json(service::get(&lens, &caller, &name).await?))
}

/// Delete a collection and its documents.
#[utoipa::path(delete, path = "/v1/collections/{name}", operation_id = "delete_collection", tag = "knowledge",
    params(("name" = String, Path)), responses((status = 204, description = "deleted"), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn delete(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    service::delete(&lens, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete one document.
#[utoipa::path(delete, path = "/v1/collections/{name}/documents/{id}", operation_id = "delete_document", tag = "knowledge",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn delete_document(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    service::delete_document(&lens, &caller, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The passages that best match a query: bm25 of its words and, with a text model, the cosine of the
/// sentence embeddings, blended as image search blends caption scores.
#[utoipa::path(post, path = "/v1/collections/{name}/search", operation_id = "search_collection", tag = "knowledge",
    params(("name" = String, Path)), request_body = CollectionSearchRequest,
    responses((status = 200, description = "ok", body = CollectionSearchResponse), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such item", body = ErrorBody)))]
pub async fn search(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(request): Json<CollectionSearchRequest>,
) -> ApiResult<axum::Json<CollectionSearchResponse>> {
    Ok(axum::Json(service::search(&lens, &caller, &name, request).await?))
}
