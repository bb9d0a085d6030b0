//! `/v1/ingest` (URL batches), `/v1/index/rebuild`, `/v1/jobs`: long work as job resources.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use lens_core::api::{ErrorBody, IngestJobRequest, Job, JobList, JobsQuery};

use super::error::ApiResult;
use super::extract::{Json, Path, Query};
use crate::services::jobs as service;
use crate::services::{Caller, Lens};

/// Batch-ingest URLs as a job (202); its progress is `GET /v1/jobs/{id}`.
#[utoipa::path(post, path = "/v1/ingest", operation_id = "create_ingest_job", tag = "jobs", request_body = IngestJobRequest,
    responses((status = 202, description = "accepted: the job", body = Job), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn create_ingest(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<IngestJobRequest>,
) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    Ok((StatusCode::ACCEPTED, axum::Json(service::create_ingest(&lens, &caller, request).await?)))
}

/// Rebuild the index from the catalog's embeddings (no model run), as a job (202). One at a time: while a
/// rebuild is queued or running, that job is answered (200). Admin scope.
#[utoipa::path(post, path = "/v1/index/rebuild", operation_id = "create_index_rebuild_job", tag = "jobs",
    responses((status = 202, description = "accepted: the job", body = Job), (status = 200, description = "a rebuild is already queued or running: that job", body = Job), (status = 503, description = "models loading", body = ErrorBody)))]
pub async fn create_rebuild(State(lens): State<Arc<Lens>>) -> ApiResult<(StatusCode, axum::Json<Job>)> {
    let (job, created) = service::create_rebuild(&lens).await?;
    Ok((if created { StatusCode::ACCEPTED } else { StatusCode::OK }, axum::Json(job)))
}

/// Recent jobs, newest first; `?kind=caption&state=dead` is the dead-letter queue.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(JobsQuery),
    responses((status = 200, description = "recent jobs, newest first", body = JobList), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody)))]
pub async fn list(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<JobsQuery>,
) -> ApiResult<axum::Json<JobList>> {
    Ok(axum::Json(service::list(&lens, &caller, query).await?))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "the job", body = Job), (status = 404, description = "not found", body = ErrorBody)))]
pub async fn get(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Job>> {
    Ok(axum::Json(service::get(&lens, &caller, &id).await?))
}
