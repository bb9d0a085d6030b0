//! BLIP captioning on its own thread, behind a bounded queue like the [`Embedder`](super::embedder)'s:
//! requests that queued while the model was busy are gathered (up to `batch_size` images) and those
//! with equal options are captioned as one batch. HTTP requests get 503 `overloaded` when the queue
//! is full; caption jobs wait for room.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lens_core::image::RgbImage;
use lens_models::blip::{BlipFiles, BlipPipeline, CaptionOptions};
use serde::Serialize;

use super::error::ApiResult;
use super::model_queue::{ModelQueue, QUEUE_CAPACITY, Reply, backend_name, identify, next_batch, run_joint};
use crate::backend::{DeviceKind, with_backend};

/// What `/v1/models` reports about the caption model; `id` is part of the caption cache key.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionModelInfo {
    /// `repo@commit` when pulled, else the directory name and a hash of the weights.
    pub id: String,
    pub name: String,
    pub revision: Option<String>,
    pub image_size: usize,
    pub backend: &'static str,
    pub device: String,
}

/// One request's images and where their captions go.
type Part = (Vec<RgbImage>, Reply<String>);

struct Request {
    images: Vec<RgbImage>,
    options: CaptionOptions,
    reply: Reply<String>,
}

#[derive(Clone)]
pub struct Captioner {
    queue: ModelQueue<Request>,
}

impl Captioner {
    /// Loads the model on a new thread and starts serving the queue. Blocks until the model is loaded.
    pub fn start(model_dir: &Path, device: DeviceKind, batch_size: usize) -> Result<(Captioner, CaptionModelInfo)> {
        let files = BlipFiles::read_dir(model_dir)
            .with_context(|| format!("cannot load caption model from {}", model_dir.display()))?;
        let (id, name, revision) = identify(model_dir, &files, "blip");
        let (queue, rx) = ModelQueue::new(QUEUE_CAPACITY);
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel::<Result<CaptionModelInfo>>();
        let dir = model_dir.to_path_buf();
        with_backend!(device, |B, dev| {
            std::thread::Builder::new().name("lens-caption".into()).spawn(move || {
                let pipeline = match BlipPipeline::<B>::load(files, &dev) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = loaded_tx
                            .send(Err(anyhow::Error::new(e)
                                .context(format!("cannot load caption model from {}", dir.display()))));
                        return;
                    }
                };
                let info = CaptionModelInfo {
                    id,
                    name,
                    revision,
                    image_size: pipeline.image_size(),
                    backend: backend_name::<B>(),
                    device: format!("{dev:?}"),
                };
                let _ = loaded_tx.send(Ok(info));
                serve_queue(&pipeline, &rx, batch_size);
            })?;
            anyhow::Ok(())
        })?;
        let info = loaded_rx.recv().context("the caption model thread stopped while loading")??;
        Ok((Captioner { queue }, info))
    }

    /// One caption per image; 503 `overloaded` when the queue is full.
    pub async fn caption(&self, images: Vec<RgbImage>, options: CaptionOptions) -> ApiResult<Vec<String>> {
        self.submit(images, options, false).await
    }

    /// [`caption`](Self::caption) for caption jobs: waits for room in the queue.
    pub async fn caption_waiting(&self, images: Vec<RgbImage>, options: CaptionOptions) -> ApiResult<Vec<String>> {
        self.submit(images, options, true).await
    }

    async fn submit(&self, images: Vec<RgbImage>, options: CaptionOptions, wait: bool) -> ApiResult<Vec<String>> {
        if images.is_empty() {
            return Ok(vec![]);
        }
        self.queue.call(|reply| Request { images, options, reply }, wait).await
    }
}

fn serve_queue<B: burn::tensor::backend::Backend>(
    pipeline: &BlipPipeline<B>,
    rx: &Receiver<Request>,
    batch_size: usize,
) {
    while let Some(batch) = next_batch(rx, batch_size, Duration::ZERO, |r| r.images.len()) {
        // Requests with equal options share one model call, in arrival order.
        let mut groups: Vec<(CaptionOptions, Vec<Part>)> = Vec::new();
        for request in batch {
            match groups.iter_mut().find(|(options, _)| *options == request.options) {
                Some((_, requests)) => requests.push((request.images, request.reply)),
                None => groups.push((request.options, vec![(request.images, request.reply)])),
            }
        }
        for (options, requests) in groups {
            let started = Instant::now();
            let images = run_joint(requests, |images| pipeline.caption(images, &options));
            metrics::histogram!("lens_caption_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("lens_inference_batch_size", "input" => "caption").record(images as f64);
        }
    }
}
