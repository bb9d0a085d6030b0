//! What the model threads share (the CLIP [`Embedder`](super::embedder::Embedder) and the BLIP
//! [`Captioner`](super::captioner::Captioner)): a bounded queue in front of a model running on its
//! own thread, gathering the requests that queued while the model was busy into one batch, and
//! running a batch as one model call with a per-request fallback, so one bad input cannot fail its
//! neighbours and a panicking model call fails its requests instead of the thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use lens_models::files::CheckpointFiles;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::error::{ApiError, ApiResult};

/// Requests waiting for a model; past this, clients get 503 rather than unbounded latency.
pub const QUEUE_CAPACITY: usize = 1024;

/// Why a model call gave no rows.
#[derive(Debug)]
pub enum ModelError {
    /// The model refused the input or failed.
    Model(lens_models::Error),
    /// The model code panicked (a bug); the thread lives on.
    Panicked(String),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Model(e) => write!(f, "{e}"),
            ModelError::Panicked(message) => write!(f, "the model panicked: {message}"),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        match err {
            ModelError::Model(e) => e.into(),
            panicked => ApiError::internal(panicked),
        }
    }
}

/// Where a model thread sends one request's rows.
pub type Reply<O> = oneshot::Sender<Result<Vec<O>, ModelError>>;

/// The sending side of a model thread's queue.
pub struct ModelQueue<R> {
    tx: SyncSender<R>,
}

impl<R> Clone for ModelQueue<R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<R: Send + 'static> ModelQueue<R> {
    pub fn new(capacity: usize) -> (Self, Receiver<R>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues the request `make` builds around a reply channel and awaits its rows. With `wait`, waits
    /// for room in the queue (background jobs: a busy model is no reason to fail); without, 503
    /// `overloaded` when the queue is full (HTTP requests: fail fast).
    pub async fn call<O>(&self, make: impl FnOnce(Reply<O>) -> R, wait: bool) -> ApiResult<Vec<O>> {
        let (reply, rx) = oneshot::channel();
        let request = make(reply);
        if wait {
            self.submit_waiting(request).await?;
        } else {
            self.try_submit(request)?;
        }
        Ok(receive(rx).await?)
    }

    fn try_submit(&self, request: R) -> ApiResult<()> {
        match self.tx.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the model queue is full; retry later",
            )),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::internal("the model thread has stopped")),
        }
    }

    async fn submit_waiting(&self, request: R) -> ApiResult<()> {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(request))
            .await
            .map_err(ApiError::internal)?
            .map_err(|_| ApiError::internal("the model thread has stopped"))
    }
}

/// Awaits a reply.
async fn receive<O>(rx: oneshot::Receiver<Result<Vec<O>, ModelError>>) -> Result<Vec<O>, ModelError> {
    rx.await.unwrap_or_else(|_| Err(ModelError::Panicked("the model thread dropped a request".into())))
}

/// The next batch: blocks for a first request, then takes those already queued (and, with `wait`
/// > 0, those arriving within it) until `max_items` inputs. `None` when every sender is gone.
pub fn next_batch<R>(
    rx: &Receiver<R>,
    max_items: usize,
    wait: Duration,
    items: impl Fn(&R) -> usize,
) -> Option<Vec<R>> {
    let first = rx.recv().ok()?;
    let mut count = items(&first);
    let mut batch = vec![first];
    let deadline = Instant::now() + wait;
    while count < max_items {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(next) => {
                count += items(&next);
                batch.push(next);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// Runs the inputs of `requests` as one model call and hands each request its rows; if the joint
/// call fails, each request runs alone. Returns the number of inputs.
pub fn run_joint<I, O>(requests: Vec<(Vec<I>, Reply<O>)>, run: impl Fn(&[I]) -> lens_models::Result<Vec<O>>) -> usize {
    if requests.is_empty() {
        return 0;
    }
    let mut inputs = Vec::new();
    let mut parts = Vec::with_capacity(requests.len());
    for (items, reply) in requests {
        let start = inputs.len();
        inputs.extend(items);
        parts.push((reply, start, inputs.len()));
    }
    let call = |inputs: &[I]| -> Result<Vec<O>, ModelError> {
        let rows = catch_unwind(AssertUnwindSafe(|| run(inputs))).map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            ModelError::Panicked(message)
        })?;
        let rows = rows.map_err(ModelError::Model)?;
        if rows.len() != inputs.len() {
            return Err(ModelError::Panicked(format!("{} outputs for {} inputs", rows.len(), inputs.len())));
        }
        Ok(rows)
    };
    match call(&inputs) {
        Ok(mut rows) => {
            // Split from the back so each reply takes its rows without copying.
            for (reply, start, _) in parts.into_iter().rev() {
                let _ = reply.send(Ok(rows.split_off(start)));
            }
        }
        Err(_) if parts.len() > 1 => {
            for (reply, start, end) in parts {
                let _ = reply.send(call(&inputs[start..end]));
            }
        }
        Err(e) => {
            let (reply, ..) = parts.pop().expect("one request");
            let _ = reply.send(Err(e));
        }
    }
    inputs.len()
}

/// Identity of a checkpoint: `(id, name, revision)`. `repo@commit` from `lens-manifest.json` when
/// pulled with `lens models pull`, else the directory name and a hash of the weight files.
pub fn identify(dir: &Path, files: &CheckpointFiles, fallback: &str) -> (String, String, Option<String>) {
    let manifest: Option<serde_json::Value> =
        std::fs::read(dir.join("lens-manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(m) = manifest
        && let (Some(repo), Some(commit)) = (m["repo_id"].as_str(), m["commit"].as_str())
    {
        return (format!("{repo}@{commit}"), repo.to_string(), Some(commit.to_string()));
    }
    let mut hash = Sha256::new();
    for (name, bytes) in &files.weights {
        hash.update(name.as_bytes());
        hash.update(bytes);
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| fallback.into());
    let digest = hex::encode(hash.finalize());
    (format!("{name}@sha256:{}", &digest[..16]), name, None)
}

/// The burn backend's short name (`NdArray`, `Wgpu`, `Cuda`, ...).
pub fn backend_name<B>() -> &'static str {
    std::any::type_name::<B>().split('<').next().unwrap_or("burn").rsplit("::").next().unwrap_or("burn")
}
