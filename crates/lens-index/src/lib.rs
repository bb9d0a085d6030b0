//! Cosine k-nearest-neighbour search over L2-normalised embeddings.
//!
//! Three indexes share the [`VectorIndex`] trait:
//!
//! * [`ExactIndex`]: `f32` brute force, the ground truth (all targets, wasm32 included);
//! * [`Int8Index`]: `i8` brute force with a per-vector scale, a quarter of the memory (all targets);
//! * `HnswIndex`: an HNSW graph (our own, built on every core) with tombstone deletes and snapshots
//!   that hold the graph, so loading does not rebuild it (native only).
//!
//! Every index L2-normalises what it is given (a copy), so a score is the cosine similarity of the
//! original vectors, clamped to `[-1, 1]`. Ids are the caller's `u64`s; inserting an id that is present
//! replaces its vector. Results are best first; equal scores come in increasing id order.
//!
//! No I/O except the HNSW snapshot, no async, no threads except HNSW's parallel build (scoped threads).

mod cosine;
mod exact;
#[cfg(not(target_arch = "wasm32"))]
mod hnsw;
mod int8;
mod kernels;
#[cfg(not(target_arch = "wasm32"))]
mod params;
mod rows;
mod topk;

pub use exact::ExactIndex;
#[cfg(not(target_arch = "wasm32"))]
pub use hnsw::{HnswIndex, HnswSnapshot};
pub use int8::Int8Index;
#[cfg(not(target_arch = "wasm32"))]
pub use params::HnswParams;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The caller's id.
    pub id: u64,
    /// Cosine similarity with the query, in `[-1, 1]`; higher is closer.
    pub score: f32,
}

/// What can go wrong in an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector's length is not the index dimension.
    #[error("vector has {got} dimensions, the index has {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    /// A vector holds a NaN or an infinity.
    #[error("vector holds a NaN or infinite component")]
    NotFinite,
    /// A vector is all zeros, so it has no direction and no cosine similarity.
    #[error("vector is all zeros (no direction to compare)")]
    ZeroVector,
    /// Reading or writing a snapshot failed.
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A snapshot is corrupt, truncated, or from another format version.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
}

/// A cosine k-NN index over the caller's `u64` ids.
///
/// Mutation takes `&mut self`; searches take `&self` and may run concurrently (the server wraps an
/// index in a `RwLock`).
pub trait VectorIndex: Send + Sync {
    /// Dimension of every vector.
    fn dim(&self) -> usize;
    /// Live entries (deleted ones excluded).
    fn len(&self) -> usize;
    /// No live entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `id` is live.
    fn contains(&self, id: u64) -> bool;
    /// L2-normalises a copy of `vector`; inserting an id already present replaces its vector.
    ///
    /// # Errors
    /// [`IndexError::DimensionMismatch`], [`IndexError::NotFinite`], [`IndexError::ZeroVector`];
    /// the index is unchanged then.
    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError>;
    /// Deletes `id`; true if it was present.
    fn remove(&mut self, id: u64) -> bool;
    /// Best first, at most `k`, only ids for which `filter` returns true. The query is normalised
    /// internally. `k == 0` or an empty index gives an empty list.
    ///
    /// # Errors
    /// The same checks on `query` as [`VectorIndex::insert`].
    fn search(&self, query: &[f32], k: usize, filter: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<Hit>, IndexError>;
}
