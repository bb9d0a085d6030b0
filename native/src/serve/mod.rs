//! `lens serve`: the image service on one machine. Ingest, store, search, list, delete, over JSON
//! under `/v1`; catalog in SQLite (the source of truth), blobs in a directory or S3, vectors in an
//! HNSW index rebuilt from the catalog (or loaded from a snapshot that matches it). With
//! `--caption-model`, BLIP captions every ingested image through a persistent job queue, and text
//! search blends caption matches into the vector score. For browser sync, a change feed
//! (`/v1/sync`), thumbnails, and CORS for the origins `--cors-origin` names.

pub mod captioner;
mod captions;
pub mod config;
pub mod embedder;
pub mod error;
pub mod fetch;
mod images;
mod jobs;
pub mod model_queue;
mod openapi;
mod search;
pub mod state;
mod sync;
mod thumbnail;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lens_index::VectorIndex as _;
use lens_store::{BlobStore, Catalog, LocalBlobStore, S3BlobStore};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use config::{BlobBackend, CorsOrigins, IndexKind, ServeConfig};
use embedder::Embedder;
use error::ApiError;
use state::{AnyIndex, AppState, Engine, SharedIndex, SharedState};

/// Starts the service and runs until SIGINT/SIGTERM; then drains requests and saves the index snapshot.
pub async fn run(config: ServeConfig) -> Result<()> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("cannot create data directory {}", config.data.display()))?;
    let catalog_path = config.data.join("catalog.sqlite3");
    let catalog =
        Catalog::open(&catalog_path).with_context(|| format!("cannot open catalog {}", catalog_path.display()))?;
    let interrupted = catalog.fail_interrupted_jobs()?;
    if interrupted > 0 {
        tracing::warn!(jobs = interrupted, "jobs interrupted by the last stop were marked failed");
    }
    let (requeued, dead) =
        catalog.requeue_interrupted_jobs(lens_store::CAPTION_JOB, config.caption_retry.max_attempts)?;
    if requeued + dead > 0 {
        tracing::warn!(requeued, dead, "caption jobs left running by the last stop were re-queued");
    }
    let blobs: Arc<dyn BlobStore> = match (&config.blob_store, &config.s3) {
        (BlobBackend::S3, Some(s3)) => Arc::new(S3BlobStore::connect(s3.clone()).await?),
        _ => Arc::new(LocalBlobStore::open(&config.data.join("blobs"))?),
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("seconds".into()),
            &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("lens_caption_seconds".into()),
            &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full("lens_inference_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        )?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let fetcher = fetch::Fetcher::new(config.fetch.clone())?;
    let state = Arc::new(AppState {
        config: config.clone(),
        catalog,
        blobs,
        fetcher,
        metrics,
        engine: OnceLock::new(),
        started: Instant::now(),
        caption_wake: tokio::sync::Notify::new(),
        thumbnails: thumbnail::ThumbnailCache::new(thumbnail::CACHE_BYTES),
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, blob_store = state.blobs.describe(), data = %config.data.display(), "listening");

    // The models and the index load in the background; /healthz answers now, /readyz once they are
    // up; then the caption workers start.
    let loader = Arc::clone(&state);
    tokio::spawn(async move {
        let loading = Arc::clone(&loader);
        let loaded = tokio::task::spawn_blocking(move || load_engine(&loading)).await;
        match loaded.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(()) => captions::spawn_workers(&loader),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot start");
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
    });

    let app = router(Arc::clone(&state));
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopped accepting requests");
    if let Some(engine) = state.engine.get() {
        let meta = jobs::snapshot_meta(&state.catalog, &engine.model.id)?;
        if engine.index.save(&state.snapshot_dir(), &meta)? {
            tracing::info!(vectors = engine.index.len(), "index snapshot saved");
        }
    }
    Ok(())
}

fn load_engine(state: &AppState) -> Result<()> {
    let config = &state.config;
    let started = Instant::now();
    let clip_dir = model_dir(&config.model, "--model")?;
    let (embedder, model) = Embedder::start(&clip_dir, config.device, config.batch_size, config.batch_wait)?;
    tracing::info!(
        model = model.id,
        dims = model.dims,
        backend = model.backend,
        seconds = started.elapsed().as_secs_f64(),
        "model loaded"
    );
    let captioner = match &config.caption {
        None => None,
        Some(caption) => {
            let started = Instant::now();
            let dir = model_dir(&caption.model, "--caption-model")?;
            let (captioner, info) = captioner::Captioner::start(&dir, config.device, caption.batch_size)?;
            tracing::info!(
                model = info.id,
                backend = info.backend,
                seconds = started.elapsed().as_secs_f64(),
                "caption model loaded"
            );
            Some((captioner, info))
        }
    };
    let started = Instant::now();
    let index = open_index(state, &model.id, model.dims)?;
    tracing::info!(kind = ?config.index, vectors = index.len(), seconds = started.elapsed().as_secs_f64(), "index ready");
    let _ = state.engine.set(Engine { embedder, model, index, captioner });
    Ok(())
}

/// `--model` (and `--caption-model`, named by `flag`) is a checkpoint directory, or a hub repository id
/// (`org/name`) that is pulled once into `lens models pull`'s default directory and reused from there on
/// later starts (offline too).
pub(crate) fn model_dir(model: &std::path::Path, flag: &str) -> Result<std::path::PathBuf> {
    if model.is_dir() {
        return Ok(model.to_path_buf());
    }
    let repo = model
        .to_str()
        .filter(|r| !r.starts_with('.') && !r.starts_with('/') && crate::pull::validate_repo_id(r).is_ok());
    let Some(repo) = repo else {
        anyhow::bail!("{flag} {}: no such directory (nor a hub repository id like `org/name`)", model.display());
    };
    let dir = crate::pull::default_dir(repo)?;
    let manifest = std::fs::read(dir.join("lens-manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if manifest.is_some_and(|m| m["repo_id"] == repo) {
        tracing::info!(repo, dir = %dir.display(), "model already pulled");
        return Ok(dir);
    }
    tracing::info!(repo, dir = %dir.display(), "pulling the model from the hub");
    crate::pull::pull(&crate::pull::PullArgs {
        repo_id: repo.to_string(),
        revision: "main".into(),
        dir: Some(dir.clone()),
    })?;
    Ok(dir)
}

/// The snapshot when it matches the catalog's generation and the model; otherwise a rebuild from the catalog.
fn open_index(state: &AppState, model: &str, dims: usize) -> Result<SharedIndex> {
    let kind = state.config.index;
    let expected = jobs::snapshot_meta(&state.catalog, model)?;
    if kind == IndexKind::Hnsw && state.snapshot_dir().exists() {
        match lens_index::HnswIndex::load(&state.snapshot_dir()) {
            Ok((index, meta)) if meta == expected && index.dim() == dims => {
                tracing::info!("index loaded from its snapshot");
                return Ok(SharedIndex::new(AnyIndex::Hnsw(index)));
            }
            Ok(_) => tracing::info!("index snapshot is older than the catalog; rebuilding"),
            Err(e) => tracing::warn!(error = %e, "index snapshot unreadable; rebuilding"),
        }
    }
    let index = AnyIndex::from_catalog(kind, dims, &state.catalog, model)?;
    let shared = SharedIndex::new(index);
    if kind == IndexKind::Hnsw {
        shared.save(&state.snapshot_dir(), &expected)?;
    }
    Ok(shared)
}

pub fn router(state: SharedState) -> Router {
    let timeout = state.config.request_timeout;
    let v1 = Router::new()
        .route("/images", post(images::create).get(images::list))
        .route("/images/{id}", get(images::get).delete(images::delete))
        .route("/images/{id}/blob", get(images::blob))
        .route("/images/{id}/thumbnail", get(thumbnail::get))
        .route("/images/{id}/duplicates", get(search::duplicates))
        .route("/search", post(search::search))
        .route("/search/image", post(search::search_image))
        .route("/embeddings", post(search::embeddings))
        .route("/captions", post(captions::create))
        .route("/ingest", post(jobs::create_ingest))
        .route("/index/rebuild", post(jobs::create_rebuild))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get))
        .route("/models", get(models))
        .route("/sync", get(sync::feed))
        .route("/openapi.json", get(openapi::document));
    let cors = cors_layer(&state.config.cors);
    let app = Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn(track))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| with_timeout(timeout, req, next)))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    // Outside the timeout and the routes: preflights are answered here, and every answer (errors too)
    // carries the headers.
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
    )
    .with_state(state)
}

/// CORS for the browser app on another origin (`--cors-origin`): the methods and headers it uses
/// (GET of the feed, thumbnails with `If-None-Match`, models and images; multipart POST of new images;
/// DELETE), `ETag` readable by scripts, preflights cached for an hour. `None` without origins: no headers.
fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| header::HeaderValue::from_str(o).ok()).collect::<Vec<_>>())
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE, header::IF_NONE_MATCH, header::AUTHORIZATION])
            .expose_headers([header::ETAG])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Request counts and latency per route (the matched pattern, so ids do not explode the label set).
async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("lens_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("lens_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn with_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

async fn healthz(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "uptime_s": state.started.elapsed().as_secs()}))
}

async fn readyz(State(state): State<SharedState>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = state.engine()?;
    Ok(Json(json!({
        "status": "ready",
        "model": engine.model.id,
        "caption_model": engine.captioner.as_ref().map(|(_, info)| &info.id),
        "index": {"kind": engine.index.kind(), "vectors": engine.index.len()}
    })))
}

async fn models(State(state): State<SharedState>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = state.engine()?;
    let mut model = serde_json::to_value(&engine.model).map_err(ApiError::internal)?;
    model["object"] = json!("model");
    model["index"] = json!({"kind": engine.index.kind(), "vectors": engine.index.len()});
    model["blob_store"] = json!(state.blobs.describe());
    model["task"] = json!("embedding");
    let mut data = vec![model];
    if let Some((_, info)) = &engine.captioner {
        let mut caption = serde_json::to_value(info).map_err(ApiError::internal)?;
        caption["object"] = json!("model");
        caption["task"] = json!("captioning");
        caption["defaults"] = state.caption_job_options().unwrap_or_default();
        data.push(caption);
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn metrics_text(State(state): State<SharedState>) -> Response {
    if let Ok(n) = state.catalog(|c| c.count_images()).await {
        metrics::gauge!("lens_catalog_images").set(n as f64);
    }
    if let Ok(counts) = state.catalog(|c| c.count_jobs(lens_store::CAPTION_JOB)).await {
        for (job_state, n) in counts {
            metrics::gauge!("lens_caption_jobs", "state" => job_state.as_str()).set(n as f64);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}
