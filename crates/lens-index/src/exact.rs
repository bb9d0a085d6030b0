//! Exact `f32` brute force.

use std::collections::HashMap;

use crate::kernels::dot_f32;
use crate::topk::TopK;
use crate::{Hit, IndexError, VectorIndex, clamp_score, prepare};

/// Exact cosine search by scanning every vector: the ground truth the other indexes are measured
/// against.
///
/// Storage is one contiguous `Vec<f32>` (row `i` belongs to `ids[i]`) plus an id → row map; a delete
/// moves the last row into the hole (swap-remove), so memory stays dense. A search costs `len × dim`
/// multiply-adds: about 1 ms per 10k 512-d vectors on one core. The filter is called only for rows that
/// would enter the current top k.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dim: usize,
    data: Vec<f32>,
    ids: Vec<u64>,
    rows: HashMap<u64, usize>,
}

impl ExactIndex {
    /// An empty index of `dim`-dimensional vectors.
    ///
    /// # Panics
    /// If `dim` is 0.
    pub fn new(dim: usize) -> Self {
        assert!(dim > 0, "an index needs at least one dimension");
        Self { dim, data: Vec::new(), ids: Vec::new(), rows: HashMap::new() }
    }

    /// The stored (normalised) vector of `id`.
    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.rows.get(&id).map(|&r| self.row(r))
    }

    /// Approximate heap bytes held: vectors, ids and the id map.
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * 4 + self.ids.capacity() * 8 + self.rows.capacity() * 20
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }
}

impl VectorIndex for ExactIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn contains(&self, id: u64) -> bool {
        self.rows.contains_key(&id)
    }

    fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let v = prepare(self.dim, vector)?;
        match self.rows.get(&id) {
            Some(&r) => self.data[r * self.dim..(r + 1) * self.dim].copy_from_slice(&v),
            None => {
                self.rows.insert(id, self.ids.len());
                self.ids.push(id);
                self.data.extend_from_slice(&v);
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(r) = self.rows.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if r != last {
            self.data.copy_within(last * self.dim..(last + 1) * self.dim, r * self.dim);
            self.ids[r] = self.ids[last];
            self.rows.insert(self.ids[r], r);
        }
        self.ids.pop();
        self.data.truncate(last * self.dim);
        true
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<&dyn Fn(u64) -> bool>) -> Result<Vec<Hit>, IndexError> {
        let q = prepare(self.dim, query)?;
        let mut top = TopK::new(k);
        for (&id, row) in self.ids.iter().zip(self.data.chunks_exact(self.dim)) {
            let score = clamp_score(dot_f32(&q, row));
            if top.would_keep(id, score) && filter.is_none_or(|f| f(id)) {
                top.push(Hit { id, score });
            }
        }
        Ok(top.into_sorted())
    }
}
