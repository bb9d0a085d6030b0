//! The model on its own thread, fed by a queue that batches concurrent requests: requests that queued
//! while the model was busy (and, with `batch_wait` > 0, those arriving within it) go through the model
//! together, up to `batch_size` inputs.
//! Compute-bound work never runs on the async runtime's threads.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lens_core::image::RgbImage;
use lens_models::clip::{ClipFiles, ClipPipeline};
use serde::Serialize;

use super::error::ApiError;
use super::model_queue::{ModelQueue, QUEUE_CAPACITY, Reply, backend_name, identify, next_batch, run_joint};
use crate::backend::{DeviceKind, with_backend};

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

struct Request {
    input: Input,
    reply: Reply<Vec<f32>>,
}

#[derive(Clone)]
pub struct Embedder {
    queue: ModelQueue<Request>,
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
        let (id, name, revision) = identify(model_dir, &files, "clip");
        let (queue, rx) = ModelQueue::new(QUEUE_CAPACITY);
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel::<Result<ModelInfo>>();
        let dir = model_dir.to_path_buf();
        with_backend!(device, |B, dev| {
            std::thread::Builder::new().name("lens-model".into()).spawn(move || {
                let pipeline = match ClipPipeline::<B>::load(files, &dev) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = loaded_tx.send(Err(
                            anyhow::Error::new(e).context(format!("cannot load model from {}", dir.display()))
                        ));
                        return;
                    }
                };
                let info = ModelInfo {
                    id,
                    name,
                    revision,
                    dims: pipeline.dim(),
                    image_size: pipeline.config.vision_config.image_size,
                    max_text_tokens: pipeline.config.text_config.max_position_embeddings,
                    backend: backend_name::<B>(),
                    device: format!("{dev:?}"),
                };
                let _ = loaded_tx.send(Ok(info));
                serve_queue(&pipeline, &rx, batch_size, batch_wait);
            })?;
            anyhow::Ok(())
        })?;
        let info = loaded_rx.recv().context("the model thread stopped while loading")??;
        Ok((Embedder { queue }, info))
    }

    pub async fn embed_images(&self, images: Vec<RgbImage>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.submit(Input::Images(images), false).await
    }

    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.submit(Input::Texts(texts), false).await
    }

    /// [`embed_texts`](Self::embed_texts) for background jobs: waits for room in the queue
    /// instead of answering `overloaded`.
    pub async fn embed_texts_waiting(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.submit(Input::Texts(texts), true).await
    }

    async fn submit(&self, input: Input, wait: bool) -> Result<Vec<Vec<f32>>, ApiError> {
        if input.len() == 0 {
            return Ok(vec![]);
        }
        self.queue.call(|reply| Request { input, reply }, wait).await
    }
}

fn serve_queue<B: burn::tensor::backend::Backend>(
    pipeline: &ClipPipeline<B>,
    rx: &Receiver<Request>,
    batch_size: usize,
    batch_wait: Duration,
) {
    while let Some(batch) = next_batch(rx, batch_size, batch_wait, |r| r.input.len()) {
        let mut images = Vec::new();
        let mut texts = Vec::new();
        for request in batch {
            match request.input {
                Input::Images(v) => images.push((v, request.reply)),
                Input::Texts(v) => texts.push((v, request.reply)),
            }
        }
        timed("image", || run_joint(images, |images| pipeline.embed_images(images)));
        timed("text", || {
            run_joint(texts, |texts| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                pipeline.embed_texts(&refs)
            })
        });
    }
}

/// Records the time and size of one model call (none when there was nothing to run).
fn timed(kind: &'static str, run: impl FnOnce() -> usize) {
    let started = Instant::now();
    let total = run();
    if total > 0 {
        metrics::histogram!("lens_inference_seconds", "input" => kind).record(started.elapsed().as_secs_f64());
        metrics::histogram!("lens_inference_batch_size", "input" => kind).record(total as f64);
    }
}
