//! The embedding model (CLIP) on its own [`Worker`]: requests that queued while the model was busy
//! (and, with `batch_wait` > 0, those arriving within it) go through the model together, up to
//! `batch_size` inputs; images and texts in separate calls. Images come decoded, or already through the
//! model's image processor ([`Embedder::processor`]: then the caller keeps 600 KB per image, not the
//! decoded pixels).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;
use lens_models::clip::LoadedClip;

use super::info::{ModelInfo, Role, backend_name};
use super::worker::{ModelError, Once, QUEUE_CAPACITY, Queue, Worker, run_joint};
use crate::backend::{DeviceKind, with_backend};

enum Input {
    Images(Vec<RgbImage>),
    /// Each image's `[3, size, size]` values from the model's processor.
    Pixels(Vec<Vec<f32>>),
    Texts(Vec<String>),
}

impl Input {
    fn len(&self) -> usize {
        match self {
            Input::Images(v) => v.len(),
            Input::Pixels(v) => v.len(),
            Input::Texts(v) => v.len(),
        }
    }
}

struct Request {
    input: Input,
    reply: Once<Vec<Vec<f32>>>,
}

/// Embeds images and texts; cheap to clone.
#[derive(Clone)]
pub struct Embedder {
    worker: Worker<Request>,
    processor: Arc<ClipImageProcessor>,
    logit_scale: Option<f32>,
}

impl Embedder {
    /// Loads the model at `path` (a checkpoint directory, an int8 or ONNX artifact, an ONNX export) on
    /// a new thread and starts serving. Blocks until the model is loaded.
    pub fn start(
        path: &Path,
        device: DeviceKind,
        batch_size: usize,
        batch_wait: Duration,
    ) -> anyhow::Result<(Self, ModelInfo)> {
        let path = path.to_path_buf();
        let (worker, (info, processor, logit_scale)) = with_backend!(device, |B, dev| {
            Worker::spawn(
                "lens-embedder",
                QUEUE_CAPACITY,
                move || {
                    let (model, identity) = LoadedClip::<B>::open(&path, &dev).map_err(|e| {
                        anyhow::Error::new(e).context(format!("cannot load model from {}", path.display()))
                    })?;
                    let config = model.config();
                    let info = ModelInfo {
                        role: Role::Embedder,
                        identity,
                        backend: backend_name::<B>(),
                        device: format!("{dev:?}"),
                        image_size: config.vision_config.image_size,
                        dims: Some(model.dim()),
                        max_text_tokens: Some(config.text_config.max_position_embeddings),
                    };
                    let (processor, logit_scale) = (model.processor().clone(), model.logit_scale_exp());
                    Ok((model, (info, processor, logit_scale)))
                },
                move |model, queue| serve(&model, &queue, batch_size, batch_wait),
            )
        })?;
        Ok((Self { worker, processor: Arc::new(processor), logit_scale }, info))
    }

    /// `exp(logit_scale)`: zero-shot logits are this times the cosine; `None` for ONNX exports.
    pub fn logit_scale(&self) -> Option<f32> {
        self.logit_scale
    }

    /// The model's image processor: what [`embed_pixels`](Self::embed_pixels) takes is its output.
    pub fn processor(&self) -> Arc<ClipImageProcessor> {
        Arc::clone(&self.processor)
    }

    /// One embedding per image, L2-normalised; `Overloaded` when the queue is full.
    pub async fn embed_images(&self, images: Vec<RgbImage>) -> Result<Vec<Vec<f32>>, ModelError> {
        self.submit(Input::Images(images), false).await
    }

    /// One embedding per pre-processed image ([`processor`](Self::processor)), L2-normalised; the same
    /// numbers as [`embed_images`](Self::embed_images) of the decoded images.
    pub async fn embed_pixels(&self, pixels: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, ModelError> {
        self.submit(Input::Pixels(pixels), false).await
    }

    /// One embedding per text, L2-normalised; `Overloaded` when the queue is full.
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
        self.submit(Input::Texts(texts), false).await
    }

    /// [`embed_texts`](Self::embed_texts) for background jobs: waits for room in the queue.
    pub async fn embed_texts_waiting(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ModelError> {
        self.submit(Input::Texts(texts), true).await
    }

    async fn submit(&self, input: Input, wait: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        if input.len() == 0 {
            return Ok(vec![]);
        }
        self.worker.call(|reply| Request { input, reply }, wait).await
    }
}

fn serve<B: burn::tensor::backend::Backend>(
    model: &LoadedClip<B>,
    queue: &Queue<Request>,
    batch_size: usize,
    batch_wait: Duration,
) {
    while let Some(batch) = queue.next_batch(batch_size, batch_wait, |r| r.input.len()) {
        let mut images = Vec::new();
        let mut pixels = Vec::new();
        let mut texts = Vec::new();
        for request in batch {
            match request.input {
                Input::Images(v) => images.push((v, request.reply)),
                Input::Pixels(v) => pixels.push((v, request.reply)),
                Input::Texts(v) => texts.push((v, request.reply)),
            }
        }
        timed("image", || run_joint(images, |images| model.embed_images(images)));
        timed("image", || run_joint(pixels, |pixels| model.embed_pixels(pixels.concat(), pixels.len())));
        timed("text", || {
            run_joint(texts, |texts| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                model.embed_texts(&refs)
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
