//! Long work as job resources: batch URL ingest and index rebuilds run in the background, record
//! their progress in the catalog's job table, and are read with `GET /v1/jobs/{id}`. Caption jobs
//! (see `captions.rs`) live in the same table and are listed here too.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use futures::StreamExt;
use lens_store::{JobFilter, JobRecord, JobState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, check_id};
use super::images::{Upload, clean_tags, ingest};
use super::state::{AnyIndex, SharedState};

/// URLs fetched and ingested at once by one job.
const INGEST_CONCURRENCY: usize = 4;
/// Per-item errors kept in a job's result.
const MAX_REPORTED_ERRORS: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestJobRequest {
    urls: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /v1/ingest` `{"urls": [...], "tags": [...]}` -> 202 with the job.
pub async fn create_ingest(
    State(state): State<SharedState>,
    body: Result<Json<IngestJobRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<JobRecord>)> {
    let Json(req) = body?;
    state.engine()?;
    if req.urls.is_empty() || req.urls.len() > state.config.max_job_urls {
        return Err(ApiError::bad_request(format!("`urls` must have 1 to {} items", state.config.max_job_urls)));
    }
    if let Some(bad) = req.urls.iter().find(|u| u.len() > 4096 || reqwest::Url::parse(u).is_err()) {
        return Err(ApiError::bad_request(format!("not a URL: {}", bad.chars().take(200).collect::<String>())));
    }
    let tags = clean_tags(req.tags)?;
    let params = json!({"urls": req.urls.len(), "tags": tags});
    let total = req.urls.len() as u64;
    let job = state.catalog(move |c| c.create_job("ingest", total, &params)).await?;
    let id = job.id.clone();
    let worker = state.clone();
    tokio::spawn(async move { run_ingest(worker, id, req.urls, tags).await });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn run_ingest(state: SharedState, job: String, urls: Vec<String>, tags: Vec<String>) {
    let id = job.clone();
    if let Err(e) = state.catalog(move |c| c.start_job(&id)).await {
        tracing::error!(job, error = %e, "cannot start job");
        return;
    }
    let (mut done, mut failed) = (0u64, 0u64);
    let mut images = Vec::new();
    let mut errors = Vec::new();
    let mut results = futures::stream::iter(urls.into_iter().map(|url| {
        let state = Arc::clone(&state);
        let tags = tags.clone();
        async move {
            let outcome = async {
                let fetched = state.fetcher.fetch(&url).await?;
                ingest(&state, Upload { bytes: fetched.bytes, source_url: Some(url.clone()), tags }).await
            }
            .await;
            (url, outcome)
        }
    }))
    .buffer_unordered(INGEST_CONCURRENCY);
    while let Some((url, outcome)) = results.next().await {
        match outcome {
            Ok((record, _)) => {
                done += 1;
                images.push(record.id);
            }
            Err(e) => {
                failed += 1;
                if errors.len() < MAX_REPORTED_ERRORS {
                    errors.push(json!({"url": url, "code": e.code, "message": e.message}));
                }
            }
        }
        let id = job.clone();
        if let Err(e) = state.catalog(move |c| c.job_progress(&id, done, failed)).await {
            tracing::warn!(job, error = %e.message, "cannot record job progress");
        }
    }
    let (state_after, error) = if done == 0 && failed > 0 {
        (JobState::Failed, Some(format!("all {failed} URLs failed")))
    } else {
        (JobState::Succeeded, None)
    };
    let result = json!({"images": images, "errors": errors});
    let id = job.clone();
    if let Err(e) = state.catalog(move |c| c.finish_job(&id, state_after, error.as_deref(), &result)).await {
        tracing::error!(job, error = %e.message, "cannot finish job");
    }
}

/// `POST /v1/index/rebuild` -> 202 with the job: rebuilds the index from the catalog's embeddings
/// (no model run) and swaps it in; writes made meanwhile are replayed onto the new index.
pub async fn create_rebuild(State(state): State<SharedState>) -> ApiResult<(StatusCode, Json<JobRecord>)> {
    let engine = state.engine()?;
    let total = engine.index.len() as u64;
    let job = state.catalog(move |c| c.create_job("index_rebuild", total, &json!({}))).await?;
    let id = job.id.clone();
    let worker = state.clone();
    tokio::spawn(async move { run_rebuild(worker, id).await });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn run_rebuild(state: SharedState, job: String) {
    let id = job.clone();
    let _ = state.catalog(move |c| c.start_job(&id)).await;
    let worker = Arc::clone(&state);
    let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, f64)> {
        let engine = worker.engine.get().ok_or_else(|| anyhow::anyhow!("not ready"))?;
        let started = std::time::Instant::now();
        engine.index.begin_rebuild();
        let fresh =
            match AnyIndex::from_catalog(worker.config.index, engine.model.dims, &worker.catalog, &engine.model.id) {
                Ok(index) => index,
                Err(e) => {
                    engine.index.abandon_rebuild();
                    return Err(e);
                }
            };
        engine.index.finish_rebuild(fresh)?;
        let meta = snapshot_meta(&worker.catalog, &engine.model.id)?;
        engine.index.save(&worker.snapshot_dir(), &meta)?;
        Ok((engine.index.len(), started.elapsed().as_secs_f64()))
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let id = job.clone();
    let _ = state
        .catalog(move |c| match outcome {
            Ok((size, seconds)) => {
                c.job_progress(&id, size as u64, 0)?;
                c.finish_job(&id, JobState::Succeeded, None, &json!({"vectors": size, "seconds": seconds}))
            }
            Err(e) => c.finish_job(&id, JobState::Failed, Some(&format!("{e:#}")), &Value::Null),
        })
        .await;
}

/// What a snapshot must match to be loaded instead of rebuilt: the catalog generation and the model.
pub fn snapshot_meta(catalog: &lens_store::Catalog, model: &str) -> lens_store::Result<String> {
    Ok(json!({"generation": catalog.generation()?, "model": model}).to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    limit: Option<usize>,
    /// `ingest`, `index_rebuild`, `caption`
    kind: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `dead`, `cancelled`
    state: Option<String>,
}

/// `GET /v1/jobs?limit=&kind=&state=`: newest first; `?kind=caption&state=dead` is the dead-letter queue.
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let job_state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!(
                "unknown job state `{}` (one of {})",
                s.chars().take(32).collect::<String>(),
                all.join(", ")
            ))
        })?),
    };
    if q.kind.as_ref().is_some_and(|k| k.len() > 64) {
        return Err(ApiError::bad_request("kind too long"));
    }
    let jobs = state
        .catalog(move |c| c.list_jobs_where(limit, &JobFilter { kind: q.kind.as_deref(), state: job_state }))
        .await?;
    Ok(Json(json!({"jobs": jobs})))
}

/// `GET /v1/jobs/{id}`
pub async fn get(State(state): State<SharedState>, Path(id): Path<String>) -> ApiResult<Json<JobRecord>> {
    check_id(&id, "job")?;
    let shown = id.clone();
    state.catalog(move |c| c.job(&id)).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no job `{shown}`")))
}
