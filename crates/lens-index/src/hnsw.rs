//! Approximate search on an HNSW graph (hnsw_rs 0.3.5), with tombstone deletes and snapshots.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use hnsw_rs::hnsw::{FilterT, Hnsw};
use hnsw_rs::prelude::{DataId, Distance};

use crate::cosine::{clamp_score, prepare};
use crate::kernels::dot_f32;
use crate::params::HnswParams;
use crate::snapshot;
use crate::topk::sort_hits;
use crate::{Hit, IndexError, VectorIndex};

/// Cosine distance of unit vectors, `1 - a·b`, kept in `[0, 2]`.
///
/// Not hnsw_rs's `DistDot`: that one asserts `1 - a·b >= 0` and so panics when rounding makes two
/// (nearly) identical unit vectors' dot product exceed 1. `DistCosine` is safe but recomputes both
/// norms in `f64` on every call.
#[derive(Debug, Clone, Copy, Default)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot_f32(va, vb)).clamp(0.0, 2.0)
    }
}

type Graph = Hnsw<'static, f32, UnitCosine>;

/// How many vectors go to one `parallel_insert` call (hnsw_rs suggests ~1000 per thread).
const BATCH: usize = 8192;

/// Approximate cosine search on an HNSW graph (native targets only).
///
/// **Ids and deletes.** hnsw_rs cannot delete, so every insert gets a fresh internal slot (the graph's
/// `DataId`, allocated 0, 1, 2, …) and the index maps the caller's id to its live slot. Removing an id,
/// or inserting it again with a new vector, *tombstones* the old slot: it stays in the graph (searches
/// walk through it, so connectivity is kept) but is filtered out of results. Tombstones cost memory and
/// search time and are only reclaimed by [`HnswIndex::compact`], which rebuilds the graph; `remove`
/// never compacts on its own (a rebuild would stall the caller). A reasonable policy is to compact
/// when [`HnswIndex::tombstones`] exceeds a fifth of [`VectorIndex::len`].
///
/// **Vectors** are kept only inside the graph (hnsw_rs stores its own copy of each one), and read back
/// from it for compaction and snapshots.
///
/// **Scores** are `1 - distance`, with the distance computed by the same `f32` dot product as
/// [`ExactIndex`](crate::ExactIndex), so a hit found by both has the same score.
///
/// **Searches** ask hnsw_rs for `k` neighbours with `ef = max(ef_search, k)`. When there are tombstones
/// or a caller filter, hnsw_rs's filtered search is used: it walks filtered-out nodes too, keeps
/// exploring until its candidate list is exhausted, and degrades towards a full scan of the graph
/// when the filter rejects nearly everything. Either way at most `k` hits come back, possibly fewer
/// than `k` even when `len() >= k` (the search is approximate).
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
    /// An empty index. Parameters out of hnsw_rs's range are clamped (see [`HnswParams`]);
    /// [`HnswIndex::params`] gives the ones in use.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(dim: usize, params: HnswParams) -> Self {
        assert!(dim > 0, "an index needs at least one dimension");
        let params = params.sanitized();
        let graph = Graph::new(
            params.max_nb_connection,
            params.capacity_hint,
            params.max_layer,
            params.ef_construction,
            UnitCosine,
        );
        Self { dim, params, graph, slot_ids: Vec::new(), dead: Vec::new(), live: HashMap::new(), tombstones: 0 }
    }

    /// Builds an index from a stream of `(id, vector)`, inserting batches of 8192 in parallel (rayon's
    /// global pool). A repeated id replaces the earlier vector, as [`VectorIndex::insert`] does.
    ///
    /// # Errors
    /// The first invalid vector (wrong length, NaN, zero) fails the whole build.
    pub fn rebuild(
        dim: usize,
        params: HnswParams,
        items: impl IntoIterator<Item = (u64, Vec<f32>)>,
    ) -> Result<Self, IndexError> {
        let mut index = Self::new(dim, params);
        index.extend_prepared(items.into_iter().map(|(id, v)| prepare(dim, &v).map(|v| (id, v))))?;
        Ok(index)
    }

    /// Inserts already normalised vectors, `BATCH` at a time in parallel. Within a batch only the last
    /// vector of a repeated id is inserted: a superseded vector would only be a tombstone (and a run of
    /// identical vectors early in a build degrades hnsw_rs's graph badly).
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
        let empty = self.slot_ids.is_empty();
        let mut slots: Vec<(&[f32], usize)> =
            batch.iter().map(|(id, v)| (v.as_slice(), self.allocate_slot(*id))).collect();
        if empty && !slots.is_empty() {
            // The first point of an empty graph must be in before any other starts: hnsw_rs makes a
            // point that finds no entry point the entry point, unlinked, so two racing first inserts
            // leave one of them unreachable for good (a rebuilt 4-image index lost one from search).
            self.graph.insert_slice(slots.remove(0));
        }
        self.graph.parallel_insert_slice(&slots);
    }

    /// Gives `id` a new slot, tombstoning its previous one.
    fn allocate_slot(&mut self, id: u64) -> usize {
        let slot = self.slot_ids.len();
        self.slot_ids.push(id);
        self.dead.push(false);
        if let Some(old) = self.live.insert(id, slot) {
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
        fresh.extend_prepared(self.live_vectors().map(Ok))?;
        *self = fresh;
        Ok(())
    }

    /// `(id, normalised vector)` of every live entry, in graph order (copies, read from the graph).
    pub fn live_vectors(&self) -> impl Iterator<Item = (u64, Vec<f32>)> + '_ {
        // hnsw_rs's point iterator unwraps the entry point, so it panics on an empty graph.
        let points = (!self.slot_ids.is_empty()).then(|| self.graph.get_point_indexation().into_iter());
        points.into_iter().flatten().filter_map(|p| {
            let slot = p.get_origin_id();
            (!self.dead[slot]).then(|| (self.slot_ids[slot], p.get_v().to_vec()))
        })
    }

    /// Writes a snapshot of the live entries into `dir` (created if missing) as the single file
    /// `hnsw.snapshot`, replaced atomically (written to a temporary file, synced, renamed, directory
    /// synced): after a crash `dir` holds either the previous snapshot or the new one. `meta` is stored
    /// verbatim and returned by [`HnswIndex::load`].
    ///
    /// The format is Lens's own (header, params, meta, `(id, vector)` records, CRC-32), not hnsw_rs's
    /// `file_dump`: its reload (`HnswIo`) returns a graph that borrows the loader, which an owned,
    /// reloadable index cannot hold without leaking or self-referential `unsafe`. The price is that
    /// loading rebuilds the graph (tombstones are not saved, so a loaded index is compact).
    ///
    /// # Errors
    /// [`IndexError::Io`] from the file system.
    pub fn save(&self, dir: &Path, meta: &str) -> Result<(), IndexError> {
        let header = snapshot::Header {
            dim: self.dim,
            params: self.params.clone(),
            meta: meta.to_owned(),
            count: self.live.len() as u64,
        };
        snapshot::write(dir, &header, self.live_vectors())
    }

    /// Loads a snapshot written by [`HnswIndex::save`]: the index (graph rebuilt in parallel from the
    /// stored vectors) and the meta string.
    ///
    /// # Errors
    /// [`IndexError::Io`] if the file cannot be read (a missing snapshot is `Io` with
    /// `ErrorKind::NotFound`); [`IndexError::Snapshot`] if it is truncated, fails its checksum, holds a
    /// vector that is not finite and unit-length, or is of another format version.
    pub fn load(dir: &Path) -> Result<(Self, String), IndexError> {
        let mut reader = snapshot::Reader::open(dir)?;
        let header = reader.header().clone();
        let mut index = Self::new(header.dim, header.params.clone());
        index.extend_prepared(&mut reader)?;
        reader.finish()?;
        Ok((index, header.meta))
    }

    /// The parameters in use (after clamping).
    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Changes the search-time candidate list size; nothing is rebuilt.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// Approximate heap bytes held: vectors, graph nodes and links (from hnsw_rs's data layout:
    /// each link is an `Arc` to a 16-byte record, each node ~570 bytes of fixed overhead), and the
    /// id maps. Walks the whole graph.
    pub fn memory_bytes(&self) -> usize {
        const NODE: usize = 570;
        const LINK: usize = 56;
        let mut bytes = self.slot_ids.capacity() * 9 + self.live.capacity() * 20;
        if !self.slot_ids.is_empty() {
            for p in self.graph.get_point_indexation() {
                let links: usize = p.get_neighborhood_id().iter().map(Vec::len).sum();
                bytes += NODE + self.dim * 4 + links * LINK;
            }
        }
        bytes
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
        let slot = self.allocate_slot(id);
        self.graph.insert_slice((&v, slot));
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
        let keep = |slot: usize| !self.dead[slot] && filter.is_none_or(|f| f(self.slot_ids[slot]));
        let graph_filter = |slot: &DataId| keep(*slot);
        let ef = self.params.ef_search.max(k);
        let neighbours = if self.tombstones == 0 && filter.is_none() {
            // hnsw_rs's unfiltered search stops early; the filtered one does not.
            self.graph.search_filter(&q, k, ef, None)
        } else {
            self.graph.search_filter(&q, k, ef, Some(&graph_filter as &dyn FilterT))
        };
        // hnsw_rs may return its entry point even when the filter rejects it: filter again.
        let mut hits: Vec<Hit> = neighbours
            .iter()
            .filter(|n| keep(n.d_id))
            .map(|n| Hit { id: self.slot_ids[n.d_id], score: clamp_score(1.0 - n.distance) })
            .collect();
        sort_hits(&mut hits);
        hits.truncate(k);
        Ok(hits)
    }
}
