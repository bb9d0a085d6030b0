//! Bounded best-k selection.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::Hit;

/// A hit ordered by quality: higher score first, then lower id (so ties are deterministic).
#[derive(Clone, Copy)]
struct Ranked(Hit);

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.score.total_cmp(&other.0.score).then_with(|| other.0.id.cmp(&self.0.id))
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// Keeps the `k` best hits seen, in a min-heap of size `k` (the worst kept hit on top).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k.saturating_add(1).min(4096)) }
    }

    /// Whether a hit with this score and id would be kept; lets callers skip an expensive filter.
    #[inline]
    pub(crate) fn would_keep(&self, id: u64, score: f32) -> bool {
        if self.k == 0 {
            return false;
        }
        match self.heap.peek() {
            Some(Reverse(worst)) if self.heap.len() >= self.k => Ranked(Hit { id, score }) > *worst,
            _ => true,
        }
    }

    /// Offers a hit (callers check [`TopK::would_keep`] first).
    #[inline]
    pub(crate) fn push(&mut self, hit: Hit) {
        if self.heap.len() >= self.k {
            self.heap.pop();
        }
        self.heap.push(Reverse(Ranked(hit)));
    }

    /// The kept hits, best first.
    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        // `into_sorted_vec` is ascending in `Reverse<Ranked>`, i.e. best first.
        self.heap.into_sorted_vec().into_iter().map(|Reverse(Ranked(h))| h).collect()
    }
}

/// Sorts hits best first with the same order as [`TopK`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by_key(|h| std::cmp::Reverse(Ranked(*h)));
}
