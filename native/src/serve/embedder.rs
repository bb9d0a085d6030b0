//! The model on its own thread, fed by a queue that batches concurrent requests: requests that queued
//! while the model was busy (and, with `batch_wait` > 0, those arriving within it) go through the model
//! together, up to `batch_size` inputs.
//! Compute-bound work never runs on the async runtime's threads.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lens_core::image::RgbImage;
use lens_models::clip::{ClipFiles, ClipPipeline};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::error::ApiError;
use crate::backend::{DeviceKind, with_backend};

/// Requests waiting for the model; past this, clients get 503 rather than unbounded latency.
const QUEUE_CAPACITY: usize = 1024;

/// What `/v1/models` reports, and the key embeddings are stored under in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Stable identity of the weights: `repo@commit` when pulled with `lens models pull`, else a hash
    /// of the weight files. Embeddings from different models are never mixed.
    pub id: String,
    pub name: String,
    pub revision: Option<String>,
    pub dims: usize,
    pub image_size: usize,
    pub max_text_tokens: usize,
    pub backend: &'static str,
    pub device: String,
}

enum Input {
    Images(Vec<RgbImage>),
    Texts(Vec<String>),
}

impl Input {
    fn len(&self) -> usize {
        match self {
            Input::Images(v) => v.len(),
            Input::Texts(v) => v.len(),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, lens_models::Error>>;

struct Request {
    input: Input,
    reply: Reply,
}

#[derive(Clone)]
pub struct Embedder {
    tx: SyncSender<Request>,
}

impl Embedder {
    /// Loads the model on a new thread and starts serving the queue. Blocks until the model is loaded.
    pub fn start(
        model_dir: &Path,
        device: DeviceKind,
        batch_size: usize,
        batch_wait: Duration,
    ) -> Result<(Embedder, ModelInfo)> {
        let files = ClipFiles::read_dir(model_dir)
            .with_context(|| format!("cannot load model from {}", model_dir.display()))?;
        let (id, name, revision) = identify(model_dir, &files);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Request>(QUEUE_CAPACITY);
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel::<Result<ModelInfo>>();
        let dir = model_dir.to_path_buf();
        with_backend!(device, |B, dev| {
            std::thread::Builder::new().name("lens-model".into()).spawn(move || {
                let pipeline = match ClipPipeline::<B>::load(&files, &dev) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = loaded_tx.send(Err(
                            anyhow::Error::new(e).context(format!("cannot load model from {}", dir.display()))
                        ));
                        return;
                    }
                };
                drop(files);
                let info = ModelInfo {
                    id,
                    name,
                    revision,
                    dims: pipeline.dim(),
                    image_size: pipeline.config.vision_config.image_size,
                    max_text_tokens: pipeline.config.text_config.max_position_embeddings,
                    backend: std::any::type_name::<B>()
                        .split('<')
                        .next()
                        .unwrap_or("burn")
                        .rsplit("::")
                        .next()
                        .unwrap_or("burn"),
                    device: format!("{dev:?}"),
                };
                let _ = loaded_tx.send(Ok(info));
                serve_queue(&pipeline, &rx, batch_size, batch_wait);
            })?;
            anyhow::Ok(())
        })?;
        let info = loaded_rx.recv().context("the model thread stopped while loading")??;
        Ok((Embedder { tx }, info))
    }

    pub async fn embed_images(&self, images: Vec<RgbImage>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.submit(Input::Images(images)).await
    }

    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.submit(Input::Texts(texts)).await
    }

    async fn submit(&self, input: Input) -> Result<Vec<Vec<f32>>, ApiError> {
        if input.len() == 0 {
            return Ok(vec![]);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Request { input, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the model queue is full; retry later",
                ));
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::internal("the model thread has stopped")),
        }
        let result = rx.await.map_err(|_| ApiError::internal("the model thread dropped a request"))?;
        result.map_err(ApiError::from)
    }
}

/// `repo@commit` from `lens-manifest.json`, else the directory name and a hash of the weights.
fn identify(dir: &Path, files: &ClipFiles) -> (String, String, Option<String>) {
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
        .unwrap_or_else(|| "clip".into());
    let digest = hex::encode(hash.finalize());
    (format!("{name}@sha256:{}", &digest[..16]), name, None)
}

fn serve_queue<B: burn::tensor::backend::Backend>(
    pipeline: &ClipPipeline<B>,
    rx: &Receiver<Request>,
    batch_size: usize,
    batch_wait: Duration,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut items = batch[0].input.len();
        let deadline = Instant::now() + batch_wait;
        while items < batch_size {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(next) => {
                    items += next.input.len();
                    batch.push(next);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let (images, texts): (Vec<Request>, Vec<Request>) =
            batch.into_iter().partition(|r| matches!(r.input, Input::Images(_)));
        run_batch(pipeline, images, "image");
        run_batch(pipeline, texts, "text");
    }
}

/// Runs requests of one kind as one model call and hands each its rows; if the joint call fails,
/// each request runs alone so one bad input cannot fail its neighbours.
fn run_batch<B: burn::tensor::backend::Backend>(
    pipeline: &ClipPipeline<B>,
    requests: Vec<Request>,
    kind: &'static str,
) {
    if requests.is_empty() {
        return;
    }
    let started = Instant::now();
    let total: usize = requests.iter().map(|r| r.input.len()).sum();
    let mut images = Vec::new();
    let mut texts = Vec::new();
    let mut parts = Vec::with_capacity(requests.len());
    for request in requests {
        match request.input {
            Input::Images(v) => images.extend(v),
            Input::Texts(v) => texts.extend(v),
        }
        parts.push((request.reply, images.len() + texts.len()));
    }
    let run = |images: &[RgbImage], texts: &[String]| {
        if !images.is_empty() {
            pipeline.embed_images(images)
        } else {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            pipeline.embed_texts(&refs)
        }
    };
    match run(&images, &texts) {
        Ok(mut rows) => {
            let mut start = 0;
            // Split from the back so each reply takes its rows without copying.
            let mut replies = Vec::with_capacity(parts.len());
            for (reply, end) in parts {
                replies.push((reply, start, end));
                start = end;
            }
            for (reply, start, _) in replies.into_iter().rev() {
                let mine = rows.split_off(start);
                let _ = reply.send(Ok(mine));
            }
        }
        Err(_) if parts.len() > 1 => {
            let mut start = 0;
            for (reply, end) in parts {
                let result =
                    if images.is_empty() { run(&[], &texts[start..end]) } else { run(&images[start..end], &[]) };
                let _ = reply.send(result);
                start = end;
            }
        }
        Err(e) => {
            let (reply, _) = parts.pop().expect("one request");
            let _ = reply.send(Err(e));
        }
    }
    metrics::histogram!("lens_inference_seconds", "input" => kind).record(started.elapsed().as_secs_f64());
    metrics::histogram!("lens_inference_batch_size", "input" => kind).record(total as f64);
}
