//! [`Lens`]: the state every service works on — settings, catalog, blob store, URL fetcher and, once
//! loaded, the models and the index — and its life: open, load, save on shutdown.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};
use lens_store::{BlobStore, Catalog, LocalBlobStore, S3BlobStore, StoreError};

use super::errors::NotReady;
use super::fetch::Fetcher;
use super::index::{self, IndexOrigin, SharedIndex, snapshot_meta};
use super::pixels::PixelBudget;
use super::thumbnails::{CACHE_BYTES, ThumbnailCache};
use crate::config::{BlobBackend, ChatSource, RemoteChatConfig, ServeConfig};
use crate::runtime::{Captioner, ChatModel, Embedder, Loaded, Registry, RemoteChat, TextEmbedder};

/// The upstream of `--chat-provider openai`: its address checked (loopback and private addresses refused
/// unless allowed), the API key read from its variable once.
fn remote_chat(remote: &RemoteChatConfig, concurrency: usize) -> Result<RemoteChat> {
    let client = super::fetch::upstream_client(&remote.url, remote.allow_private, remote.timeout).map_err(|e| {
        anyhow::anyhow!("--chat-base-url: {e} (pass --chat-allow-private-upstream for a local provider)")
    })?;
    let key = match &remote.api_key_env {
        None => None,
        Some(var) => Some(std::env::var(var).with_context(|| format!("--chat-api-key-env: ${var} is not set"))?),
    };
    tracing::info!(url = %remote.url, model = remote.model, key = key.is_some(), "chat goes to an OpenAI-compatible upstream");
    Ok(RemoteChat::new(client, remote.url.clone(), remote.model.clone(), key, remote.timeout, concurrency))
}

/// The service's state. Shared by the HTTP handlers and the background workers as `Arc<Lens>`.
pub struct Lens {
    pub config: ServeConfig,
    pub catalog: Catalog,
    pub blobs: Arc<dyn BlobStore>,
    pub fetcher: Fetcher,
    /// Set once the models are loaded and the index built; until then services answer [`NotReady`].
    ready: OnceLock<Ready>,
    pub started: Instant,
    /// Wakes idle caption workers when a caption job is queued.
    pub caption_wake: tokio::sync::Notify,
    /// Wakes idle analysis workers when an analysis job is queued.
    pub analysis_wake: tokio::sync::Notify,
    /// Rendered thumbnails, least recently used dropped first.
    pub thumbnails: ThumbnailCache,
    /// Decoded pixels held at once by ingests and searches by image (`--decode-budget-mb`).
    pub pixels: PixelBudget,
    /// The moderation labels' embeddings (refused ones first), computed at the first check.
    pub moderation_labels: tokio::sync::OnceCell<Vec<Vec<f32>>>,
    /// Shared by an upload from its first blob write to its commit; exclusive while the orphan sweep
    /// judges blobs ([`super::orphans`]).
    pub blob_commits: tokio::sync::RwLock<()>,
    /// Set by [`stop`](Self::stop): background workers finish what they hold and end.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// What exists once loading is done.
pub struct Ready {
    pub models: Registry,
    pub index: SharedIndex,
    /// Whether the index was loaded from its snapshot or rebuilt at start-up.
    pub index_origin: IndexOrigin,
}

impl Lens {
    /// Opens the data directory, the catalog (re-queueing the jobs a stopped process left running) and
    /// the blob store. Models are not loaded yet: see [`load`](Self::load).
    pub async fn open(config: ServeConfig) -> Result<Lens> {
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
        let attempts = config
            .chat
            .as_ref()
            .map_or(lens_store::RetryPolicy::default().max_attempts, |c| c.analysis.retry.max_attempts);
        let (requeued, dead) = catalog.requeue_interrupted_jobs(lens_store::ANALYSIS_JOB, attempts)?;
        if requeued + dead > 0 {
            tracing::warn!(requeued, dead, "analysis jobs left running by the last stop were re-queued");
        }
        let blobs: Arc<dyn BlobStore> = match (&config.blob_store, &config.s3) {
            (BlobBackend::S3, Some(s3)) => Arc::new(S3BlobStore::connect(s3.clone()).await?),
            _ => Arc::new(LocalBlobStore::open(&config.data.join("blobs"))?),
        };
        let fetcher = Fetcher::new(config.fetch.clone())?;
        let pixels = PixelBudget::new(config.decode_budget_bytes);
        Ok(Lens {
            config,
            catalog,
            blobs,
            fetcher,
            ready: OnceLock::new(),
            started: Instant::now(),
            caption_wake: tokio::sync::Notify::new(),
            analysis_wake: tokio::sync::Notify::new(),
            thumbnails: ThumbnailCache::new(CACHE_BYTES),
            pixels,
            moderation_labels: tokio::sync::OnceCell::new(),
            blob_commits: tokio::sync::RwLock::new(()),
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Loads the models (pulling hub ids once) and opens the index. Blocking: minutes for big models.
    pub fn load(&self) -> Result<()> {
        let config = &self.config;
        let started = Instant::now();
        let model = crate::hub::resolve_model(&config.model, "--model")?;
        let (embedder, info) = Embedder::start(&model, config.device, config.batch_size, config.batch_wait)?;
        tracing::info!(
            model = info.id(),
            dims = info.dims,
            backend = info.backend,
            seconds = started.elapsed().as_secs_f64(),
            "model loaded"
        );
        if config.moderation.is_some() && embedder.logit_scale().is_none() {
            anyhow::bail!(
                "--moderation-label needs the model's logit scale, which ONNX exports do not carry: use the checkpoint or an int8 artifact"
            );
        }
        let embedder = Loaded { model: embedder, info };
        let captioner = match &config.caption {
            None => None,
            Some(caption) => {
                let started = Instant::now();
                let dir = crate::hub::resolve_model(&caption.model, "--caption-model")?;
                let (captioner, info) = Captioner::start(&dir, config.device, caption.batch_size)?;
                tracing::info!(
                    model = info.id(),
                    backend = info.backend,
                    seconds = started.elapsed().as_secs_f64(),
                    "caption model loaded"
                );
                Some(Loaded { model: captioner, info })
            }
        };
        let chat = match &config.chat {
            None => None,
            Some(chat) => {
                let started = Instant::now();
                let (model, info) = match &chat.source {
                    ChatSource::Local(path) => {
                        let path = crate::hub::resolve_model(path, "--chat-model")?;
                        ChatModel::start(&path, config.device, chat.queue, chat.parallel)?
                    }
                    ChatSource::Remote(remote) => ChatModel::remote(remote_chat(remote, chat.queue)?),
                };
                tracing::info!(
                    model = info.id(),
                    backend = info.backend,
                    images = model.limits.images,
                    context = model.limits.context,
                    seconds = started.elapsed().as_secs_f64(),
                    "chat model loaded"
                );
                Some(Loaded { model, info })
            }
        };
        let text_embedder = match &config.knowledge.text_model {
            None => None,
            Some(dir) => {
                let started = Instant::now();
                let dir = crate::hub::resolve_model(dir, "--text-model")?;
                let (model, info) = TextEmbedder::start(&dir, config.device, config.batch_size)?;
                tracing::info!(
                    model = info.id(),
                    dims = info.dims,
                    seconds = started.elapsed().as_secs_f64(),
                    "text model loaded"
                );
                Some(Loaded { model, info })
            }
        };
        let models = Registry::new(embedder, captioner, chat, text_embedder);
        let started = Instant::now();
        let (index, index_origin) =
            index::open(config.index, &self.catalog, models.embedding_model(), models.dims(), &self.snapshot_dir())?;
        tracing::info!(kind = ?config.index, vectors = index.len(), seconds = started.elapsed().as_secs_f64(), "index ready");
        let _ = self.ready.set(Ready { models, index, index_origin });
        Ok(())
    }

    /// Tells the background workers to end (on shutdown).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Changes to `true` when the service stops.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The models and the index, once loaded.
    pub fn ready(&self) -> Result<&Ready, NotReady> {
        self.ready.get().ok_or(NotReady)
    }

    /// Saves the HNSW snapshot (periodically and on shutdown): the vectors saved, `None` when there is
    /// nothing to save.
    pub fn save_index(&self) -> Result<Option<usize>> {
        let Some(ready) = self.ready.get() else { return Ok(None) };
        Ok(ready.index.save(&self.snapshot_dir(), &snapshot_meta(ready.models.embedding_model()))?)
    }

    /// Where the HNSW snapshot lives.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.config.data.join("index")
    }

    /// The caption options ingest queues caption jobs with; `None` without captioning.
    pub fn caption_job_options(&self) -> Option<serde_json::Value> {
        self.config.caption.as_ref().map(|c| super::caption_options::options_json(&c.options))
    }

    /// Runs blocking catalog work off the async threads. A panic there is a bug: it goes on as a panic
    /// of the caller (the HTTP layer answers it with a 500).
    pub async fn catalog<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> lens_store::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let catalog = self.catalog.clone();
        match tokio::task::spawn_blocking(move || f(&catalog)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Config("the server is stopping".into())),
        }
    }
}
