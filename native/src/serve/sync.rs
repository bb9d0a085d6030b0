//! `GET /v1/sync`: the browser-sync change feed.

use std::sync::Arc;

use axum::extract::State;
use lens_core::api::{ErrorBody, SyncPage, SyncQuery};

use super::error::ApiResult;
use super::extract::Query;
use crate::services::Lens;
use crate::services::sync as service;

/// The change feed: the latest state of every image changed after `since` (added, captioned, tags
/// changed, embedded by the server's model, deleted), each once, ascending seq; an image without an
/// embedding by the server's model is left out until it has one. Pass `next_cursor` back as `since`;
/// pages stay consistent while ingest runs. A malformed cursor is 400 `invalid_cursor`; one ahead of
/// the log gives an empty page.
#[utoipa::path(get, path = "/v1/sync", operation_id = "sync_feed", tag = "sync", params(SyncQuery),
    responses((status = 200, description = "a page of changes", body = SyncPage), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn feed(State(lens): State<Arc<Lens>>, Query(query): Query<SyncQuery>) -> ApiResult<axum::Json<SyncPage>> {
    Ok(axum::Json(service::page(&lens, query).await?))
}
