//! The HNSW graph's parameters: what [`HnswIndex`](crate::HnswIndex) builds with and what its snapshot
//! records.

/// Graph parameters; see the HNSW paper (Malkov & Yashunin 2016) for their effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node and layer (M); layer 0 keeps up to 2M. Clamped to `2..=255` (hnsw_rs stores it
    /// in a `u8`, and exits the process above 256). Default 16.
    pub max_nb_connection: usize,
    /// Candidate list size while inserting. Default 200.
    pub ef_construction: usize,
    /// Candidate list size while searching; a search uses `max(ef_search, k)`. Default 64.
    pub ef_search: usize,
    /// Number of layers, clamped to `1..=16` (hnsw_rs's maximum). Default 16.
    pub max_layer: usize,
    /// Expected number of points, to size allocations up front. Default 100 000.
    pub capacity_hint: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { max_nb_connection: 16, ef_construction: 200, ef_search: 64, max_layer: 16, capacity_hint: 100_000 }
    }
}

impl HnswParams {
    /// The parameters hnsw_rs accepts without panicking or exiting.
    pub(crate) fn sanitized(mut self) -> Self {
        self.max_nb_connection = self.max_nb_connection.clamp(2, 255);
        self.ef_construction = self.ef_construction.max(1);
        self.ef_search = self.ef_search.max(1);
        self.max_layer = self.max_layer.clamp(1, 16);
        self
    }
}
