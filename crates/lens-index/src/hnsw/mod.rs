//! Approximate search on an HNSW graph of our own (`graph.rs`), with tombstone deletes and snapshots
//! that hold the graph itself, so that loading one is reading, not rebuilding.

mod graph;
mod snapshot;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use crate::cosine::{clamp_score, prepare};
use crate::kernels::dot_f32;
use crate::params::HnswParams;
use crate::topk::sort_hits;
use crate::{Hit, IndexError, VectorIndex};
use graph::{Accept, Graph, Shape};

/// How many vectors one parallel linking pass takes (bounds what a streamed build holds at once).
const BATCH: usize = 8192;

/// Approximate cosine search on an HNSW graph (native targets only).
///
/// **Ids and deletes.** Every insert gets a fresh internal slot (0, 1, 2, …) and the index maps the
/// caller's id to its live slot. Removing an id, or inserting it again with a new vector, *tombstones*
/// the old slot: it stays in the graph (searches walk through it, so connectivity is kept) but is
/// filtered out of results. Tombstones cost memory and search time and are only reclaimed by
/// [`HnswIndex::compact`], which rebuilds the graph; `remove` never compacts on its own (a rebuild
/// would stall the caller). A reasonable policy is to compact when [`HnswIndex::tombstones`] exceeds
/// a fifth of [`VectorIndex::len`].
///
/// **Building.** [`HnswIndex::rebuild`] and [`HnswIndex::extend`] link vectors on every core (one
/// thread per core, `std::thread::scope`); [`VectorIndex::insert`] links one on the caller's thread.
///
/// **Scores** are the dot product of the unit vectors, computed by the same `f32` kernel as
/// [`ExactIndex`](crate::ExactIndex), so a hit found by both has the same score.
///
/// **Searches** use `ef = max(ef_search, k)`. When there are tombstones or a caller filter, the
/// search walks the rejected nodes too and keeps exploring until it holds `ef` accepted ones or its
/// candidates run out, so it degrades towards a scan of the graph when the filter rejects nearly
/// everything. Either way at most `k` hits come back, possibly fewer than `k` even when
/// `len() >= k` (the search is approximate).
pub struct HnswIndex {
    dim: usize,
    params: HnswParams,
    graph: Graph,
    /// Slot → caller id, for every slot ever inserted in `graph`.
    slot_ids: Vec<u64>,
    /// Slot → tombstoned.
    dead: Vec<bool>,
    /// Caller id → live slot.
    live: HashMap<u64, usize>,
    tombstones: usize,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("len", &self.live.len())
            .field("tombstones", &self.tombstones)
            .finish_non_exhaustive()
    }
}

impl HnswIndex {
    /// An empty index. Parameters out of range are clamped (see [`HnswParams`]);
    /// [`HnswIndex::params`] gives the ones in use.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(dim: usize, params: HnswParams) -> Self {
        assert!(dim > 0, "an index needs at least one dimension");
        let params = params.sanitized();
        let graph = Graph::new(Shape::of(dim, &params));
        Self { dim, params, graph, slot_ids: Vec::new(), dead: Vec::new(), live: HashMap::new(), tombstones: 0 }
    }

    /// Builds an index from a stream of `(id, vector)`, linking batches of 8192 on every core. A
    /// repeated id replaces the earlier vector, as [`VectorIndex::insert`] does.
    ///
    /// # Errors
    /// The first invalid vector (wrong length, NaN, zero) fails the whole build.
    pub fn rebuild(
        dim: usize,
        params: HnswParams,
        items: impl IntoIterator<Item = (u64, Vec<f32>)>,
    ) -> Result<Self, IndexError> {
        let mut index = Self::new(dim, params);
        index.extend(items)?;
        Ok(index)
    }

    /// Inserts many `(id, vector)` at once, linking them on every core: what [`VectorIndex::insert`]
    /// does for each, faster.
    ///
    /// # Errors
    /// The first invalid vector (wrong length, NaN, zero); the vectors of the batches before it
    /// (8192 each) are in the index then.
    pub fn extend(&mut self, items: impl IntoIterator<Item = (u64, Vec<f32>)>) -> Result<(), IndexError> {
        let dim = self.dim;
        self.extend_prepared(items.into_iter().map(|(id, v)| prepare(dim, &v).map(|v| (id, v))))
    }

    /// Inserts already normalised vectors, `BATCH` at a time in parallel. Within a batch only the last
    /// vector of a repeated id is inserted: a superseded vector would only be a tombstone.
    fn extend_prepared(
        &mut self,
        items: impl Iterator<Item = Result<(u64, Vec<f32>), IndexError>>,
    ) -> Result<(), IndexError> {
        let mut batch: Vec<(u64, Vec<f32>)> = Vec::with_capacity(BATCH);
        let mut in_batch: HashMap<u64, usize> = HashMap::with_capacity(BATCH);
        for item in items {
            let (id, v) = item?;
            debug_assert_eq!(v.len(), self.dim);
            match in_batch.entry(id) {
                Entry::Occupied(e) => batch[*e.get()].1 = v,
                Entry::Vacant(e) => {
                    e.insert(batch.len());
                    batch.push((id, v));
                }
            }
            if batch.len() == BATCH {
                self.insert_batch(&batch);
                batch.clear();
                in_batch.clear();
            }
        }
        self.insert_batch(&batch);
        Ok(())
    }

    fn insert_batch(&mut self, batch: &[(u64, Vec<f32>)]) {
        let first = self.graph.len() as u32;
        for (id, v) in batch {
            self.allocate_slot(*id, v);
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.graph.link(first..self.graph.len() as u32, threads);
    }

    /// Gives `id` a new slot holding `v` (unit length, not linked yet), tombstoning its previous one.
    fn allocate_slot(&mut self, id: u64, v: &[f32]) -> u32 {
        let slot = self.graph.allocate(v);
        self.slot_ids.push(id);
        self.dead.push(false);
        if let Some(old) = self.live.insert(id, slot as usize) {
            self.dead[old] = true;
            self.tombstones += 1;
        }
        slot
    }

    /// Slots deleted (or replaced) but still in the graph.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Rebuilds the graph from the live vectors only, dropping every tombstone. Costs a full build
    /// (parallel) and, for its duration, memory for both graphs.
    ///
    /// # Errors
    /// None today (the vectors were validated when inserted); the `Result` leaves room for I/O-backed
    /// storage.
    pub fn compact(&mut self) -> Result<(), IndexError> {
        let mut fresh = Self::new(self.dim, self.params.clone());
        fresh.extend_prepared(self.live_vectors().map(|(id, v)| Ok((id, v.to_vec()))))?;
        *self = fresh;
        Ok(())
    }

    /// `(id, normalised vector)` of every live entry, in slot order.
    pub fn live_vectors(&self) -> impl Iterator<Item = (u64, &[f32])> + '_ {
        (0..self.slot_ids.len()).filter(|&s| !self.dead[s]).map(|s| (self.slot_ids[s], self.graph.vector(s as u32)))
    }

    /// The normalised vector stored for `id`, if it is live.
    pub fn vector(&self, id: u64) -> Option<&[f32]> {
        self.live.get(&id).map(|&s| self.graph.vector(s as u32))
    }

    /// Whether `id` is live with `vector` (normalised as [`VectorIndex::insert`] would): what a caller
    /// bringing a loaded index up to date with its store checks before inserting again.
    pub fn holds(&self, id: u64, vector: &[f32]) -> bool {
        match (self.vector(id), prepare(self.dim, vector)) {
            (Some(stored), Ok(v)) => stored == v.as_slice(),
            _ => false,
        }
    }

    /// Writes a snapshot of the whole index (graph, tombstones included) into `dir` (created if
    /// missing) as the single file `hnsw.snapshot`, replaced atomically (written to a temporary file,
    /// synced, renamed, directory synced): after a crash `dir` holds either the previous snapshot or
    /// the new one. `meta` is stored verbatim and returned by [`HnswIndex::load`].
    ///
    /// # Errors
    /// [`IndexError::Io`] from the file system.
    pub fn save(&self, dir: &Path, meta: &str) -> Result<(), IndexError> {
        self.snapshot().write(dir, meta)
    }

    /// A copy of the index to save later: taking it is a memory copy (the vectors and links), so an
    /// index behind a lock is held only that long, not for the disk write.
    pub fn snapshot(&self) -> HnswSnapshot {
        let g = &self.graph;
        let words = |w: &[std::sync::atomic::AtomicU32]| -> Vec<u32> {
            w.iter().map(|x| x.load(std::sync::atomic::Ordering::Relaxed)).collect()
        };
        HnswSnapshot(snapshot::Parts {
            dim: self.dim,
            params: self.params.clone(),
            entry: g.entry().map(|(slot, _)| slot),
            ids: self.slot_ids.clone(),
            levels: g.levels.clone(),
            dead: self.dead.clone(),
            vectors: g.vectors.clone(),
            layer0: words(&g.layer0),
            upper: g.upper.iter().flat_map(|u| words(u)).collect(),
        })
    }

    /// Loads a snapshot written by [`HnswIndex::save`]: the same index (the graph is read, not
    /// rebuilt, so searches give the same results) and the meta string.
    ///
    /// # Errors
    /// [`IndexError::Io`] if the file cannot be read (a missing snapshot is `Io` with
    /// `ErrorKind::NotFound`); [`IndexError::Snapshot`] if it is truncated, fails its checksum or a
    /// structural check (a vector that is not finite and unit-length, a link out of range), or is of
    /// another format version.
    pub fn load(dir: &Path) -> Result<(Self, String), IndexError> {
        let (p, meta) = snapshot::read(dir)?;
        let shape = Shape::of(p.dim, &p.params);
        let graph = Graph::from_parts(shape, p.vectors, p.levels, p.layer0, p.upper, p.entry);
        let mut live = HashMap::with_capacity(p.ids.len());
        for (slot, (&id, &dead)) in p.ids.iter().zip(&p.dead).enumerate() {
            if !dead {
                live.insert(id, slot);
            }
        }
        let tombstones = p.ids.len() - live.len();
        let index = Self { dim: p.dim, params: p.params, graph, slot_ids: p.ids, dead: p.dead, live, tombstones };
        Ok((index, meta))
    }

    /// The parameters in use (after clamping).
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Changes the search-time candidate list size; nothing is rebuilt.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// Approximate heap bytes held: vectors, links and the id maps.
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes() + self.slot_ids.capacity() * 9 + self.live.capacity() * 24
    }
}

/// A copy of an [`HnswIndex`] taken by [`HnswIndex::snapshot`], to be written to disk.
pub struct HnswSnapshot(snapshot::Saving);

impl HnswSnapshot {
    /// Writes it as [`HnswIndex::save`] does.
    ///
    /// # Errors
    /// [`IndexError::Io`] from the file system.
    pub fn write(&self, dir: &Path, meta: &str) -> Result<(), IndexError> {
        snapshot::write(dir, &self.0, meta)
    }

    /// Live vectors in the copy.
    pub fn len(&self) -> usize {
        self.0.dead.iter().filter(|d| !**d).count()
    }

    /// No live vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.live.len()
    }

    fn contains(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let v = prepare(self.dim, vector)?;
        let slot = self.allocate_slot(id, &v);
        self.graph.link(slot..slot + 1, 1);
        Ok(())
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.live.remove(&id) else {
            return false;
        };
        self.dead[slot] = true;
        self.tombstones += 1;
        true
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<Hit>, IndexError> {
        let q = prepare(self.dim, query)?;
        if k == 0 || self.live.is_empty() {
            return Ok(Vec::new());
        }
        let ef = self.params.ef_search.max(k);
        let keep = |slot: u32| !self.dead[slot as usize] && filter.is_none_or(|f| f(self.slot_ids[slot as usize]));
        let found = if self.tombstones == 0 && filter.is_none() {
            self.graph.search(&q, ef, &graph::All)
        } else {
            self.graph.search(&q, ef, &keep as &dyn Accept)
        };
        let mut hits: Vec<Hit> = found
            .iter()
            // The score from the dot product itself, bit for bit the exact scan's (`1 - distance`
            // would round).
            .map(|n| Hit {
                id: self.slot_ids[n.slot as usize],
                score: clamp_score(dot_f32(&q, self.graph.vector(n.slot))),
            })
            .collect();
        sort_hits(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }
}
