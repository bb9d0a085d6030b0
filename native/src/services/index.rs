//! What every request handler shares: settings, catalog, blob store, and — once loaded — the model
//! and the index.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use lens_index::{ExactIndex, Hit, HnswIndex, HnswParams, IndexError, VectorIndex};
use lens_store::{BlobStore, Catalog};
use metrics_exporter_prometheus::PrometheusHandle;

use super::captioner::{CaptionModelInfo, Captioner};
use super::config::{CaptionConfig, IndexKind, ServeConfig};
use super::embedder::{Embedder, ModelInfo};
use super::error::{ApiError, ApiResult};
use super::fetch::Fetcher;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub config: ServeConfig,
    pub catalog: Catalog,
    pub blobs: Arc<dyn BlobStore>,
    pub fetcher: Fetcher,
    pub metrics: PrometheusHandle,
    /// Set once the model is loaded and the index built; until then `/readyz` says 503.
    pub engine: OnceLock<Engine>,
    pub started: Instant,
    /// Wakes idle caption workers when a caption job is queued.
    pub caption_wake: tokio::sync::Notify,
    /// Rendered thumbnails, least recently used dropped first.
    pub thumbnails: super::thumbnail::ThumbnailCache,
}

pub struct Engine {
    pub embedder: Embedder,
    pub model: ModelInfo,
    pub index: SharedIndex,
    /// BLIP, when `--caption-model` is set.
    pub captioner: Option<(Captioner, CaptionModelInfo)>,
}

/// What captioning needs, once it is known to be configured and loaded.
pub struct Captioning<'a> {
    pub captioner: &'a Captioner,
    pub model: &'a CaptionModelInfo,
    pub config: &'a CaptionConfig,
}

impl AppState {
    pub fn engine(&self) -> ApiResult<&Engine> {
        self.engine.get().ok_or_else(ApiError::not_ready)
    }

    /// 503 `captioning_disabled` without `--caption-model`; `not_ready` while models load.
    pub fn captioning(&self) -> ApiResult<Captioning<'_>> {
        let Some(config) = &self.config.caption else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "captioning_disabled",
                "this server has no caption model (start it with --caption-model)",
            ));
        };
        let (captioner, model) = self.engine()?.captioner.as_ref().ok_or_else(ApiError::not_ready)?;
        Ok(Captioning { captioner, model, config })
    }

    /// The caption options ingest queues caption jobs with; `None` without captioning.
    pub fn caption_job_options(&self) -> Option<serde_json::Value> {
        self.config.caption.as_ref().map(|c| super::captions::options_json(&c.options))
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.config.data.join("index")
    }

    /// Runs blocking catalog work off the async threads.
    pub async fn catalog<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> lens_store::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || f(&catalog)).await.map_err(ApiError::internal)?.map_err(ApiError::from)
    }
}

/// The HNSW graph, or the exact scan.
pub enum AnyIndex {
    Hnsw(HnswIndex),
    Exact(ExactIndex),
}

impl AnyIndex {
    /// Builds from the catalog's stored embeddings (no model run).
    pub fn from_catalog(kind: IndexKind, dim: usize, catalog: &Catalog, model: &str) -> anyhow::Result<Self> {
        let mut items = Vec::new();
        catalog.for_each_embedding(model, &mut |key, vector| items.push((key as u64, vector)))?;
        Ok(match kind {
            IndexKind::Hnsw => AnyIndex::Hnsw(HnswIndex::rebuild(dim, HnswParams::default(), items)?),
            IndexKind::Exact => {
                let mut index = ExactIndex::new(dim);
                for (id, v) in items {
                    index.insert(id, &v)?;
                }
                AnyIndex::Exact(index)
            }
        })
    }

    fn as_dyn(&self) -> &dyn VectorIndex {
        match self {
            AnyIndex::Hnsw(i) => i,
            AnyIndex::Exact(i) => i,
        }
    }

    fn as_dyn_mut(&mut self) -> &mut dyn VectorIndex {
        match self {
            AnyIndex::Hnsw(i) => i,
            AnyIndex::Exact(i) => i,
        }
    }
}

enum Change {
    Insert(u64, Vec<f32>),
    Remove(u64),
}

struct IndexSlot {
    index: AnyIndex,
    /// While a rebuild runs, changes made to the live index are also recorded here and replayed onto
    /// the new index before it replaces the old one, so none is lost in the swap.
    pending: Option<Vec<Change>>,
}

/// The live index behind a lock; searches share it, writes are brief.
pub struct SharedIndex {
    slot: RwLock<IndexSlot>,
}

impl SharedIndex {
    pub fn new(index: AnyIndex) -> Self {
        let shared = Self { slot: RwLock::new(IndexSlot { index, pending: None }) };
        shared.report_size();
        shared
    }

    pub fn len(&self) -> usize {
        self.slot.read().unwrap().index.as_dyn().len()
    }

    pub fn kind(&self) -> &'static str {
        match self.slot.read().unwrap().index {
            AnyIndex::Hnsw(_) => "hnsw",
            AnyIndex::Exact(_) => "exact",
        }
    }

    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let mut slot = self.slot.write().unwrap();
        slot.index.as_dyn_mut().insert(id, vector)?;
        if let Some(pending) = &mut slot.pending {
            pending.push(Change::Insert(id, vector.to_vec()));
        }
        drop(slot);
        self.report_size();
        Ok(())
    }

    pub fn remove(&self, id: u64) {
        let mut slot = self.slot.write().unwrap();
        slot.index.as_dyn_mut().remove(id);
        if let Some(pending) = &mut slot.pending {
            pending.push(Change::Remove(id));
        }
        drop(slot);
        self.report_size();
    }

    pub fn contains(&self, id: u64) -> bool {
        self.slot.read().unwrap().index.as_dyn().contains(id)
    }

    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.slot.read().unwrap().index.as_dyn().search(query, k, filter)
    }

    /// Starts recording changes for [`finish_rebuild`](Self::finish_rebuild).
    pub fn begin_rebuild(&self) {
        self.slot.write().unwrap().pending = Some(Vec::new());
    }

    /// Replays the changes made since [`begin_rebuild`](Self::begin_rebuild) onto `fresh` and swaps it in.
    pub fn finish_rebuild(&self, mut fresh: AnyIndex) -> Result<(), IndexError> {
        let mut slot = self.slot.write().unwrap();
        for change in slot.pending.take().unwrap_or_default() {
            match change {
                Change::Insert(id, v) => fresh.as_dyn_mut().insert(id, &v)?,
                Change::Remove(id) => {
                    fresh.as_dyn_mut().remove(id);
                }
            }
        }
        slot.index = fresh;
        drop(slot);
        self.report_size();
        Ok(())
    }

    pub fn abandon_rebuild(&self) {
        self.slot.write().unwrap().pending = None;
    }

    /// Saves an HNSW snapshot tagged with `meta` (the exact index has none: it is rebuilt at start-up).
    pub fn save(&self, dir: &std::path::Path, meta: &str) -> Result<bool, IndexError> {
        match &self.slot.read().unwrap().index {
            AnyIndex::Hnsw(index) => index.save(dir, meta).map(|()| true),
            AnyIndex::Exact(_) => Ok(false),
        }
    }

    fn report_size(&self) {
        metrics::gauge!("lens_index_vectors").set(self.len() as f64);
    }
}
