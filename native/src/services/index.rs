//! The index lifecycle: the live vector index behind a lock (searches share it, writes are brief), built
//! at start-up from its snapshot when that matches the catalog or else from the catalog's stored
//! embeddings (no model run), rebuilt on demand with the writes made meanwhile replayed, and saved as a
//! snapshot on shutdown. The catalog is the source of truth; the index is a cache of it.

use std::path::Path;
use std::sync::RwLock;

use lens_index::{ExactIndex, Hit, HnswIndex, HnswParams, IndexError, VectorIndex};
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

/// What a snapshot must match to be loaded instead of rebuilt: the catalog generation and the model.
pub fn snapshot_meta(catalog: &Catalog, model: &str) -> lens_store::Result<String> {
    Ok(json!({"generation": catalog.generation()?, "model": model}).to_string())
}

/// Where an opened index came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexOrigin {
    /// The snapshot saved by the last graceful stop.
    Snapshot,
    /// Rebuilt from the catalog's embeddings.
    Catalog,
}

/// The index for the embeddings of `model` (`dims` long): the snapshot in `snapshot_dir` when it
/// matches the catalog's generation and the model, otherwise a rebuild from the catalog (then saved).
pub fn open(
    kind: IndexKind,
    catalog: &Catalog,
    model: &str,
    dims: usize,
    snapshot_dir: &Path,
) -> Result<(SharedIndex, IndexOrigin), IndexServiceError> {
    let expected = snapshot_meta(catalog, model)?;
    if kind == IndexKind::Hnsw && snapshot_dir.exists() {
        match HnswIndex::load(snapshot_dir) {
            Ok((index, meta)) if meta == expected && index.dim() == dims => {
                tracing::info!("index loaded from its snapshot");
                return Ok((SharedIndex::new(AnyIndex::Hnsw(index)), IndexOrigin::Snapshot));
            }
            Ok(_) => tracing::info!("index snapshot is older than the catalog; rebuilding"),
            Err(e) => tracing::warn!(error = %e, "index snapshot unreadable; rebuilding"),
        }
    }
    let shared = SharedIndex::new(AnyIndex::from_catalog(kind, dims, catalog, model)?);
    shared.save(snapshot_dir, &expected)?;
    Ok((shared, IndexOrigin::Catalog))
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
    index.save(snapshot_dir, &snapshot_meta(catalog, model)?)?;
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
    pub fn save(&self, dir: &Path, meta: &str) -> Result<bool, IndexError> {
        match &self.slot.read().unwrap().index {
            AnyIndex::Hnsw(index) => index.save(dir, meta).map(|()| true),
            AnyIndex::Exact(_) => Ok(false),
        }
    }

    fn report_size(&self) {
        metrics::gauge!("lens_index_vectors").set(self.len() as f64);
    }
}
