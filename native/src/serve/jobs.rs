//! `/v1/ingest` (URL batches), `/v1/index/rebuild`, `/v1/jobs`: long work as job resources.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use lens_core::api::{ErrorBody, IngestJobRequest, Job, JobList, JobsQuery};

use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use crate::services::Lens;
use crate::services::jobs as service;

/// Batch-ingest URLs as a job (202); its progress is `GET /v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/ingest", operation_id = "create_ingest_job", tag = "jobs", request_body = IngestJobRequest,
    responses((status = 202, description = "accepted: the job", body = Job), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn create_ingest(
    State(lens): State<Arc<Lens>>,
    Json(request): Json<IngestJobRequest>,
) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    Ok((StatusCode::ACCEPTED, axum::Json(service::create_ingest(&lens, request).await?)))
}

/// Rebuild the index from the catalog's embeddings (no model run), as a job (202).
#[utoipa::path(post, path = "/v1/index/rebuild", operation_id = "create_index_rebuild_job", tag = "jobs",
    responses((status = 202, description = "accepted: the job", body = Job), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn create_rebuild(State(lens): State<Arc<Lens>>) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    Ok((StatusCode::ACCEPTED, axum::Json(service::create_rebuild(&lens).await?)))
}

/// Recent jobs, newest first; `?kind=caption&state=dead` is the dead-letter queue.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, description = "recent jobs, newest first", body = JobList), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody)))]
pub async fn list(State(lens): State<Arc<Lens>>, Query(query): Query<JobsQuery>) -> ApiResult<axum::Json<JobList>> {
    Ok(axum::Json(service::list(&lens, query).await?))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "the job", body = Job), (status = 404, description = "not found", body = ErrorBody)))]
pub async fn get(State(lens): State<Arc<Lens>>, Path(id): Path<String>) -> ApiResult<axum::Json<Job>> {
    Ok(axum::Json(service::get(&lens, &id).await?))
}
