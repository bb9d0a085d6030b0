//! The knowledge base's sentence embedder (a BERT-family sentence-transformers model) on its own
//! [`Worker`]: texts that queued while the model was busy go through it together, up to `batch_size`.

use std::path::Path;
use std::time::Instant;

use lens_models::bert::SentenceEmbedder;
use lens_models::identity::identify_files;

use super::info::{ModelInfo, Role, backend_name};
use super::worker::{ModelError, Once, QUEUE_CAPACITY, Queue, Worker, run_joint};
use crate::backend::{DeviceKind, with_backend};

struct Request {
    texts: Vec<String>,
    reply: Once<Vec<Vec<f32>>>,
}

/// Embeds texts; cheap to clone.
#[derive(Clone)]
pub struct TextEmbedder {
    worker: Worker<Request>,
}

impl TextEmbedder {
    /// Loads the sentence-transformers directory `dir` on a new thread. Blocks until loaded.
    pub fn start(dir: &Path, device: DeviceKind, batch_size: usize) -> anyhow::Result<(Self, ModelInfo)> {
        let dir = dir.to_path_buf();
        let (worker, info) = with_backend!(device, |B, dev| {
            Worker::spawn(
                "lens-text-embedder",
                QUEUE_CAPACITY,
                move || {
                    let context = || format!("cannot load the text model from {}", dir.display());
                    let identity = identify_files(&dir, &lens_models::files::safetensors_files(&dir)?, "text")
                        .map_err(|e| anyhow::Error::new(e).context(context()))?;
                    let model = SentenceEmbedder::<B>::from_dir(&dir, &dev)
                        .map_err(|e| anyhow::Error::new(e).context(context()))?;
                    let info = ModelInfo {
                        role: Role::TextEmbedder,
                        identity,
                        backend: backend_name::<B>(),
                        device: format!("{dev:?}"),
                        image_size: 0,
                        dims: Some(model.dims()),
                        max_text_tokens: Some(model.max_seq_length),
                    };
                    Ok((model, info))
                },
                move |model, queue| serve(&model, &queue, batch_size),
            )
        })?;
        Ok((Self { worker }, info))
    }

    /// One normalised embedding per text; `Overloaded` when the queue is full (or, with `wait`, a wait).
    pub async fn embed(&self, texts: Vec<String>, wait: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        self.worker.call(|reply| Request { texts, reply }, wait).await
    }
}

fn serve<B: burn::tensor::backend::Backend>(model: &SentenceEmbedder<B>, queue: &Queue<Request>, batch_size: usize) {
    while let Some(batch) = queue.next_batch(batch_size, std::time::Duration::ZERO, |r| r.texts.len()) {
        let started = Instant::now();
        let requests: Vec<_> = batch.into_iter().map(|r| (r.texts, r.reply)).collect();
        let total = run_joint(requests, |texts| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        });
        if total > 0 {
            metrics::histogram!("lens_inference_seconds", "input" => "passage").record(started.elapsed().as_secs_f64());
        }
    }
}
