//! Long work as job resources: batch URL ingest and index rebuilds run in the background and record
//! their progress in the catalog's job table (read with `GET /v1/jobs/{id}`). Caption jobs
//! ([`super::captions`]) live in the same table and are listed here too.

use std::sync::Arc;

use futures::StreamExt;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::limits::{check_id, clean_tags};
use lens_store::{JobFilter, JobState, StoreError, Visible};
use serde_json::{Value, json};

use super::caller::Caller;
use super::errors::{Coded, NotReady, coded_enum};
use super::fetch::MAX_URL_BYTES;
use super::index;
use super::ingest::ingest_url;
use super::lens::Lens;

/// The kind of index rebuild jobs (one at a time).
const REBUILD_JOB: &str = "index_rebuild";
/// URLs fetched and ingested at once by one job.
const INGEST_CONCURRENCY: usize = 4;
/// Per-item errors kept in a job's result.
const MAX_REPORTED_ERRORS: usize = 100;

/// Why a job could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error("no job `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

coded_enum!(JobError { wraps: [Invalid, NotReady, Store], own: [JobError::NotFound(_) => ErrorCode::NotFound] });

/// Queues a job that fetches and ingests `urls` (at most `--max-job-urls`) with `tags`.
/// The job and its images belong to the caller's tenant.
pub async fn create_ingest(
    lens: &Arc<Lens>,
    caller: &Caller,
    request: api::IngestJobRequest,
) -> Result<api::Job, JobError> {
    lens.ready()?;
    if request.urls.is_empty() || request.urls.len() > lens.config.max_job_urls {
        return Err(RequestError::invalid(format!("`urls` must have 1 to {} items", lens.config.max_job_urls)).into());
    }
    if let Some(bad) = request.urls.iter().find(|u| u.len() > MAX_URL_BYTES || url::Url::parse(u).is_err()) {
        return Err(RequestError::invalid(format!("not a URL: {}", bad.chars().take(200).collect::<String>())).into());
    }
    let tags = clean_tags(request.tags)?;
    let params = json!({"urls": request.urls.len(), "tags": tags});
    let total = request.urls.len() as u64;
    let owner = caller.owner().map(str::to_string);
    let job = lens.catalog(move |c| c.create_tenant_job("ingest", total, &params, owner.as_deref())).await?;
    let (worker, id, caller) = (Arc::clone(lens), job.id.clone(), caller.clone());
    tokio::spawn(async move { run_ingest(worker, caller, id, request.urls, tags).await });
    Ok(job)
}

async fn run_ingest(lens: Arc<Lens>, caller: Caller, job: String, urls: Vec<String>, tags: Vec<String>) {
    let id = job.clone();
    if let Err(e) = lens.catalog(move |c| c.start_job(&id)).await {
        tracing::error!(job, error = %e, "cannot start job");
        return;
    }
    let (mut done, mut failed) = (0u64, 0u64);
    let mut images = Vec::new();
    let mut errors = Vec::new();
    let mut results = futures::stream::iter(urls.into_iter().map(|url| {
        let lens = Arc::clone(&lens);
        let (tags, caller) = (tags.clone(), caller.clone());
        async move {
            let outcome = ingest_url(&lens, &caller, url.clone(), tags, None).await;
            (url, outcome)
        }
    }))
    .buffer_unordered(INGEST_CONCURRENCY);
    while let Some((url, outcome)) = results.next().await {
        match outcome {
            Ok(ingested) => {
                done += 1;
                images.push(ingested.record.id);
            }
            Err(e) => {
                failed += 1;
                if errors.len() < MAX_REPORTED_ERRORS {
                    errors.push(json!({"url": url, "code": e.code(), "message": e.client_message()}));
                }
            }
        }
        let id = job.clone();
        if let Err(e) = lens.catalog(move |c| c.job_progress(&id, done, failed)).await {
            tracing::warn!(job, error = %e, "cannot record job progress");
        }
    }
    let (state_after, error) = if done == 0 && failed > 0 {
        (JobState::Failed, Some(format!("all {failed} URLs failed")))
    } else {
        (JobState::Succeeded, None)
    };
    let result = json!({"images": images, "errors": errors});
    let id = job.clone();
    if let Err(e) = lens.catalog(move |c| c.finish_job(&id, state_after, error.as_deref(), &result)).await {
        tracing::error!(job, error = %e, "cannot finish job");
    }
}

/// Queues an index rebuild from the catalog's embeddings (no model run); writes made meanwhile are
/// replayed onto the new index before it replaces the old one. One at a time: while one is queued or
/// running, that one is returned (`false`).
pub async fn create_rebuild(lens: &Arc<Lens>) -> Result<(api::Job, bool), JobError> {
    let total = lens.ready()?.index.len() as u64;
    let (job, created) = lens.catalog(move |c| c.create_singleton_job(REBUILD_JOB, total, &json!({}))).await?;
    if created {
        let (worker, id) = (Arc::clone(lens), job.id.clone());
        tokio::spawn(async move { run_rebuild(worker, id).await });
    }
    Ok((job, created))
}

async fn run_rebuild(lens: Arc<Lens>, job: String) {
    let id = job.clone();
    let _ = lens.catalog(move |c| c.start_job(&id)).await;
    let worker = Arc::clone(&lens);
    let outcome = tokio::task::spawn_blocking(move || -> Result<(usize, f64), String> {
        let ready = worker.ready().map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let size = index::rebuild(
            &ready.index,
            worker.config.index,
            &worker.catalog,
            ready.models.embedding_model(),
            ready.models.dims(),
            &worker.snapshot_dir(),
        )
        .map_err(|e| e.to_string())?;
        Ok((size, started.elapsed().as_secs_f64()))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the rebuild task failed: {e}")));
    let id = job.clone();
    let recorded = lens
        .catalog(move |c| match outcome {
            Ok((size, seconds)) => {
                c.job_progress(&id, size as u64, 0)?;
                c.finish_job(&id, JobState::Succeeded, None, &json!({"vectors": size, "seconds": seconds}))
            }
            Err(e) => c.finish_job(&id, JobState::Failed, Some(&e), &Value::Null),
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(job, error = %e, "cannot finish the rebuild job");
    }
}

/// Recent jobs, newest first, by kind and state; `?kind=caption&state=dead` is the dead-letter queue.
/// Only the caller's tenant's jobs (an admin's: all).
pub async fn list(lens: &Lens, caller: &Caller, query: api::JobsQuery) -> Result<api::JobList, JobError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let state = match query.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            RequestError::invalid(format!(
                "unknown job state `{}` (one of {})",
                s.chars().take(32).collect::<String>(),
                all.join(", ")
            ))
        })?),
    };
    if query.kind.as_ref().is_some_and(|k| k.len() > 64) {
        return Err(RequestError::invalid("kind too long").into());
    }
    let who = caller.clone();
    let jobs = lens
        .catalog(move |c| {
            let tenant = match who.visible() {
                Visible::All => None,
                Visible::To(tenant) => Some(tenant),
            };
            c.list_jobs_where(limit, &JobFilter { kind: query.kind.as_deref(), state, tenant })
        })
        .await?;
    Ok(api::JobList { jobs: jobs.into_iter().collect() })
}

/// Job `id`.
pub async fn get(lens: &Lens, caller: &Caller, id: &str) -> Result<api::Job, JobError> {
    check_id(id, "job")?;
    let (key, who) = (id.to_string(), caller.clone());
    lens.catalog(move |c| c.visible_job(&key, who.visible())).await?.ok_or_else(|| JobError::NotFound(id.to_string()))
}
