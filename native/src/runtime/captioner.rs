//! The caption model (BLIP) on its own [`Worker`], like the embedder's: requests that queued while the
//! model was busy are gathered (up to `batch_size` images) and those with equal options are captioned
//! as one batch. HTTP requests get `Overloaded` when the queue is full; caption jobs wait for room.

use std::path::Path;
use std::time::{Duration, Instant};

use lens_core::image::RgbImage;
use lens_models::blip::{BlipFiles, BlipPipeline, CaptionOptions};
use lens_models::identity::identify;

use super::info::{ModelInfo, Role, backend_name};
use super::worker::{ModelError, Once, QUEUE_CAPACITY, Queue, Worker, run_joint};
use crate::backend::{DeviceKind, with_backend};

/// One request's images and where their captions go.
type Part = (Vec<RgbImage>, Once<Vec<String>>);

struct Request {
    images: Vec<RgbImage>,
    options: CaptionOptions,
    reply: Once<Vec<String>>,
}

/// Captions images; cheap to clone.
#[derive(Clone)]
pub struct Captioner {
    worker: Worker<Request>,
}

impl Captioner {
    /// Loads the BLIP checkpoint in `dir` on a new thread and starts serving. Blocks until loaded.
    pub fn start(dir: &Path, device: DeviceKind, batch_size: usize) -> anyhow::Result<(Self, ModelInfo)> {
        let dir = dir.to_path_buf();
        let (worker, info) = with_backend!(device, |B, dev| {
            Worker::spawn(
                "lens-captioner",
                QUEUE_CAPACITY,
                move || {
                    let context = || format!("cannot load caption model from {}", dir.display());
                    let files = BlipFiles::read_dir(&dir).map_err(|e| anyhow::Error::new(e).context(context()))?;
                    let identity = identify(&dir, &files.weights, "blip");
                    let model =
                        BlipPipeline::<B>::load(files, &dev).map_err(|e| anyhow::Error::new(e).context(context()))?;
                    let info = ModelInfo {
                        role: Role::Captioner,
                        identity,
                        backend: backend_name::<B>(),
                        device: format!("{dev:?}"),
                        image_size: model.image_size(),
                        dims: None,
                        max_text_tokens: None,
                    };
                    Ok((model, info))
                },
                move |model, queue| serve(&model, &queue, batch_size),
            )
        })?;
        Ok((Self { worker }, info))
    }

    /// One caption per image; `Overloaded` when the queue is full.
    pub async fn caption(&self, images: Vec<RgbImage>, options: CaptionOptions) -> Result<Vec<String>, ModelError> {
        self.submit(images, options, false).await
    }

    /// [`caption`](Self::caption) for caption jobs: waits for room in the queue.
    pub async fn caption_waiting(
        &self,
        images: Vec<RgbImage>,
        options: CaptionOptions,
    ) -> Result<Vec<String>, ModelError> {
        self.submit(images, options, true).await
    }

    async fn submit(
        &self,
        images: Vec<RgbImage>,
        options: CaptionOptions,
        wait: bool,
    ) -> Result<Vec<String>, ModelError> {
        if images.is_empty() {
            return Ok(vec![]);
        }
        self.worker.call(|reply| Request { images, options, reply }, wait).await
    }
}

fn serve<B: burn::tensor::backend::Backend>(model: &BlipPipeline<B>, queue: &Queue<Request>, batch_size: usize) {
    while let Some(batch) = queue.next_batch(batch_size, Duration::ZERO, |r| r.images.len()) {
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
            let images = run_joint(requests, |images| model.caption(images, &options));
            if images > 0 {
                metrics::histogram!("lens_caption_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("lens_inference_batch_size", "input" => "caption").record(images as f64);
            }
        }
    }
}
