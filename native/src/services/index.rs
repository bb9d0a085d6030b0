//! The index lifecycle: the live vector index behind a lock (searches share it, writes are brief),
//! opened at start-up from its snapshot (the HNSW graph as saved: read, not rebuilt) brought up to date
//! with the catalog (after a crash, what came after the snapshot), or else built from the catalog's
//! stored embeddings (no model run); rebuilt on demand with the writes made meanwhile replayed; saved
//! periodically while serving and on shutdown. The catalog is the source of truth; the index is a cache
//! of it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use lens_index::{ExactIndex, Hit, HnswIndex, HnswParams, HnswSnapshot, IndexError, VectorIndex};
use lens_store::{Catalog, StoreError};
use serde_json::json;

use crate::config::IndexKind;

/// Why the index could not be built, rebuilt or saved.
#[derive(Debug, thiserror::Error)]
pub enum IndexServiceError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a snapshot records: the model whose embeddings it holds.
pub fn snapshot_meta(model: &str) -> String {
    json!({"model": model}).to_string()
}

fn snapshot_model(meta: &str) -> Option<String> {
    let meta: serde_json::Value = serde_json::from_str(meta).ok()?;
    meta["model"].as_str().map(str::to_owned)
}

/// Where an opened index came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexOrigin {
    /// The latest snapshot of this model (graceful stop, periodic, or before a rebuild), its graph
    /// read as saved and then brought up to date with the catalog: `inserted` vectors it lacked,
    /// `removed` ones the catalog no longer has (both 0 after a graceful stop).
    Snapshot { inserted: usize, removed: usize },
    /// Built from the catalog's embeddings.
    Catalog,
}

/// The index for the embeddings of `model` (`dims` long): the snapshot in `snapshot_dir` when it is of
/// this model, checked against the catalog (always: a snapshot taken while serving may have raced a
/// write, an index insert may have failed), otherwise a build from the catalog. Saved when it changed.
pub fn open(
    kind: IndexKind,
    catalog: &Catalog,
    model: &str,
    dims: usize,
    snapshot_dir: &Path,
) -> Result<(SharedIndex, IndexOrigin), IndexServiceError> {
    let meta = snapshot_meta(model);
    if kind == IndexKind::Hnsw && snapshot_dir.exists() {
        match HnswIndex::load(snapshot_dir) {
            Ok((mut index, saved)) if snapshot_model(&saved).as_deref() == Some(model) && index.dim() == dims => {
                let (inserted, removed) = catch_up(&mut index, catalog, model)?;
                tracing::info!(vectors = index.len(), inserted, removed, "index loaded from its snapshot");
                let shared = SharedIndex::new(AnyIndex::Hnsw(index));
                if inserted + removed > 0 {
                    shared.save(snapshot_dir, &meta)?;
                }
                return Ok((shared, IndexOrigin::Snapshot { inserted, removed }));
            }
            Ok(_) => tracing::info!("index snapshot is of another model; rebuilding"),
            Err(e) => tracing::warn!(error = %e, "index snapshot unreadable; rebuilding"),
        }
    }
    let shared = SharedIndex::new(AnyIndex::from_catalog(kind, dims, catalog, model)?);
    shared.save(snapshot_dir, &meta)?;
    Ok((shared, IndexOrigin::Catalog))
}

/// Makes `index` hold exactly the catalog's embeddings of `model`: inserts those it lacks or holds
/// with another vector (on every core), removes those the catalog no longer has. Reads every stored
/// embedding once; nothing else may write meanwhile (start-up). Returns (inserted, removed).
fn catch_up(index: &mut HnswIndex, catalog: &Catalog, model: &str) -> Result<(usize, usize), IndexServiceError> {
    let mut stored = HashSet::new();
    let mut missing = Vec::new();
    catalog.for_each_embedding(model, &mut |key, vector| {
        let id = key as u64;
        stored.insert(id);
        if !index.holds(id, &vector) {
            missing.push((id, vector));
        }
    })?;
    let gone: Vec<u64> = index.live_vectors().map(|(id, _)| id).filter(|id| !stored.contains(id)).collect();
    for &id in &gone {
        index.remove(id);
    }
    let inserted = missing.len();
    index.extend(missing)?;
    Ok((inserted, gone.len()))
}

/// Rebuilds `index` from the catalog's embeddings of `model` and swaps it in; changes made meanwhile
/// are replayed onto the new index. Saves the snapshot. Returns the number of vectors.
pub fn rebuild(
    index: &SharedIndex,
    kind: IndexKind,
    catalog: &Catalog,
    model: &str,
    dims: usize,
    snapshot_dir: &Path,
) -> Result<usize, IndexServiceError> {
    index.begin_rebuild();
    let fresh = match AnyIndex::from_catalog(kind, dims, catalog, model) {
        Ok(fresh) => fresh,
        Err(e) => {
            index.abandon_rebuild();
            return Err(e);
        }
    };
    index.finish_rebuild(fresh)?;
    index.save(snapshot_dir, &snapshot_meta(model))?;
    Ok(index.len())
}

/// The HNSW graph, or the exact scan.
pub enum AnyIndex {
    Hnsw(HnswIndex),
    Exact(ExactIndex),
}

impl AnyIndex {
    /// Builds from the catalog's stored embeddings (no model run).
    pub fn from_catalog(
        kind: IndexKind,
        dim: usize,
        catalog: &Catalog,
        model: &str,
    ) -> Result<Self, IndexServiceError> {
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
    /// One snapshot write at a time (periodic, rebuild and shutdown saves share one temporary file).
    saving: Mutex<()>,
}

impl SharedIndex {
    pub fn new(index: AnyIndex) -> Self {
        let shared = Self { slot: RwLock::new(IndexSlot { index, pending: None }), saving: Mutex::new(()) };
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

    /// Deleted or replaced vectors still in the HNSW graph (0 for the exact index).
    pub fn tombstones(&self) -> usize {
        match &self.slot.read().unwrap().index {
            AnyIndex::Hnsw(index) => index.tombstones(),
            AnyIndex::Exact(_) => 0,
        }
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
    /// The lock is held while the graph is copied, not while it is written. Returns the vectors saved.
    pub fn save(&self, dir: &Path, meta: &str) -> Result<Option<usize>, IndexError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        match self.snapshot() {
            Some(copy) => copy.write(dir, meta).map(|()| Some(copy.len())),
            None => Ok(None),
        }
    }

    /// A copy of the HNSW graph to save (`None` for the exact index).
    fn snapshot(&self) -> Option<HnswSnapshot> {
        match &self.slot.read().unwrap().index {
            AnyIndex::Hnsw(index) => Some(index.snapshot()),
            AnyIndex::Exact(_) => None,
        }
    }

    fn report_size(&self) {
        metrics::gauge!("lens_index_vectors").set(self.len() as f64);
    }
}
