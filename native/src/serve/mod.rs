//! The HTTP API: [`app`] is the router (every route under `/v1`, health, metrics, layers), tested in
//! process; [`run`] is `lens serve` (listen, load the models in the background, serve until a signal,
//! save the index). Handlers parse, call a service and map its error — nothing more.

mod analysis;
mod captions;
mod chat;
pub mod error;
mod extract;
mod forms;
pub mod guard;
mod history;
mod images;
mod jobs;
mod knowledge;
mod listen;
pub mod openapi;
mod search;
mod shed;
mod sync;
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lens_core::api::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::config::{ConnectionLimits, CorsOrigins, ServeConfig};
use crate::services::Lens;
use error::ApiError;

/// Starts the service and runs until SIGINT/SIGTERM; then drains requests (for at most the shutdown
/// deadline: `serve/listen.rs` holds the connection limits) and saves the index snapshot.
pub async fn run(config: ServeConfig) -> Result<()> {
    let listen = config.listen;
    let lens = Arc::new(Lens::open(config).await?);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, blob_store = lens.blobs.describe(), data = %lens.config.data.display(), "listening");
    if !lens.config.security.auth_required {
        tracing::warn!(
            %addr,
            "AUTHENTICATION IS OFF: anyone who reaches this address may read, change and delete everything \
             (--auth required, and lens keys create, to turn it on)"
        );
    }

    // Blobs a crash left without rows go now and then periodically (they need no model).
    crate::services::orphans::spawn_sweeper(&lens);

    // The models and the index load in the background; /healthz answers now, /readyz once they are
    // up; then the caption workers start.
    let loader = Arc::clone(&lens);
    tokio::spawn(async move {
        let loading = Arc::clone(&loader);
        let loaded = tokio::task::spawn_blocking(move || loading.load()).await;
        match loaded.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(()) => crate::services::spawn_workers(&loader),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot start");
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
    });

    let fd_limit = listen::raise_fd_limit();
    let wanted = lens.config.connections;
    let limits =
        ConnectionLimits { max_connections: listen::connection_cap(wanted.max_connections, fd_limit), ..wanted };
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        shutdown_deadline_s = limits.shutdown_deadline.as_secs(),
        "connection limits"
    );
    match listen::serve(listener, app(Arc::clone(&lens)), limits, shutdown_signal()).await {
        listen::Drained::All => tracing::info!("every request finished"),
        listen::Drained::DeadlinePassed(open) => tracing::warn!(
            open,
            deadline_s = limits.shutdown_deadline.as_secs(),
            "the shutdown deadline passed with connections still open: they are dropped"
        ),
    }
    lens.stop();
    if let Some(vectors) = lens.save_index()? {
        tracing::info!(vectors, "index snapshot saved");
    }
    Ok(())
}

/// The router: every route, with request metrics, the [`guard`]s (host and cross-site checks, API keys,
/// scopes, rate limits), the request time limit, the body limit, CORS for the configured origins, panics
/// answered as 500s, and a trace span per request.
pub fn app(lens: Arc<Lens>) -> Router {
    // The recorder is installed before the first request records anything.
    crate::telemetry::prometheus();
    let gate = Arc::new(guard::Gate { lens: Arc::clone(&lens), limits: guard::RateLimits::default() });
    let config = &lens.config;
    let timeout = config.request_timeout;
    let v1 = Router::new()
        .route("/images", post(images::create).get(images::list))
        .route("/images/{id}", get(images::get).delete(images::delete))
        .route("/images/{id}/blob", get(images::blob))
        .route("/images/{id}/thumbnail", get(images::thumbnail))
        .route("/images/{id}/duplicates", get(images::duplicates))
        .route("/search", post(search::search))
        .route("/search/image", post(search::search_image))
        .route("/embeddings", post(search::embeddings))
        .route("/captions", post(captions::create))
        .route("/chat/completions", post(chat::create))
        .route("/analyze", post(analysis::create))
        .route("/chats", get(history::list).delete(history::delete_user))
        .route("/chats/{id}", get(history::get).delete(history::delete))
        .route("/collections", get(knowledge::list))
        .route("/collections/{name}", get(knowledge::get).delete(knowledge::delete))
        .route("/collections/{name}/documents", post(knowledge::add_documents))
        .route("/collections/{name}/documents/{id}", axum::routing::delete(knowledge::delete_document))
        .route("/collections/{name}/search", post(knowledge::search))
        .route("/ingest", post(jobs::create_ingest))
        .route("/index/rebuild", post(jobs::create_rebuild))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get))
        .route("/models", get(system::models))
        .route("/sync", get(sync::feed))
        .route("/openapi.json", get(openapi::serve));
    let mut app = Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&gate), guard::authenticate))
        .route_layer(middleware::from_fn_with_state(Arc::new(shed::InFlight::new(config.in_flight)), shed::shed))
        .route_layer(middleware::from_fn(track));
    app = match &config.web_dir {
        Some(dir) => app.fallback_service(
            tower_http::services::ServeDir::new(dir).fallback(axum::routing::any(|| async { not_found() })),
        ),
        None => app.fallback(|| async { not_found() }),
    };
    let app = app
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| with_timeout(timeout, req, next)))
        .layer(middleware::from_fn_with_state(gate, guard::check_site))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::coded(ErrorCode::Internal, "internal error (see the server log)").into_response()
        }));
    // Outside the timeout and the routes: preflights are answered here, and every answer (errors too)
    // carries the headers.
    let app = match cors_layer(&config.cors) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
    )
    .with_state(lens)
}

fn not_found() -> ApiError {
    ApiError::coded(ErrorCode::NotFound, "no such route")
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
            .allow_headers([
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::AUTHORIZATION,
                header::HeaderName::from_static("x-api-key"),
            ])
            .expose_headers([
                header::ETAG,
                header::RETRY_AFTER,
                header::HeaderName::from_static("ratelimit-limit"),
                header::HeaderName::from_static("ratelimit-remaining"),
                header::HeaderName::from_static("ratelimit-reset"),
            ])
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
        Err(_) => ApiError::coded(ErrorCode::Timeout, format!("the request took longer than {} s", limit.as_secs()))
            .into_response(),
    }
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
