//! The HNSW graph itself (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
//! using Hierarchical Navigable Small World graphs", 2016): flat arrays of vectors and links indexed by
//! slot, built in parallel, searched without locks, and laid out so that a snapshot is a copy of them.
//!
//! **Layout.** Slot `s` has its unit vector at `vectors[s·dim..]`, its top layer in `levels[s]`, its
//! layer-0 links in `layer0[s·(m0+1)..]` and, when `levels[s] > 0`, its links on layers `1..=level` in
//! `upper[s]`, `m+1` words per layer. A link list is a count followed by that many slots.
//!
//! **Concurrency.** Links are `AtomicU32`s, so readers never lock: during a parallel build a search
//! may read a list that another thread is rewriting and see a mix of its old and new entries. Every
//! entry is always a slot that exists (all the slots of a batch are allocated, their vectors written,
//! before any thread links them), so a torn read only makes one step of one search slightly worse,
//! the compromise hnswlib makes too. Writers of one node's lists serialise on a striped mutex.
//! Once the parallel phase ends (`thread::scope` joins), everything is visible to everyone.
//!
//! **Distances** are `1 - a·b` of unit vectors, with the same dot product as the exact scan.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use crate::kernels::dot_f32;
use crate::params::HnswParams;

/// Writers of slot `s`'s links hold `locks[s % LOCK_STRIPES]`.
const LOCK_STRIPES: usize = 1024;
/// The seed of the level draw, so that a sequential build is reproducible.
const LEVEL_SEED: u64 = 0x4c45_4e53_484e_5357;

/// A candidate: a slot and its distance to the query, ordered by distance (then slot, so that equal
/// distances order the same way every time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) slot: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Which slots a search may return (it walks through the others).
pub(crate) trait Accept {
    fn accept(&self, slot: u32) -> bool;
}

/// Every slot (what insertion uses: tombstones stay linked).
pub(crate) struct All;

impl Accept for All {
    fn accept(&self, _: u32) -> bool {
        true
    }
}

impl<F: Fn(u32) -> bool> Accept for F {
    fn accept(&self, slot: u32) -> bool {
        self(slot)
    }
}

/// A per-search "seen" set: a stamp per slot, so that clearing is one increment.
#[derive(Default)]
struct Visited {
    stamps: Vec<u32>,
    current: u32,
}

impl Visited {
    fn reset(&mut self, len: usize) {
        if self.stamps.len() < len {
            self.stamps.resize(len, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.stamps.fill(0);
            self.current = 1;
        }
    }

    /// Marks `slot`; true if it was not marked yet.
    fn insert(&mut self, slot: u32) -> bool {
        let stamp = &mut self.stamps[slot as usize];
        let fresh = *stamp != self.current;
        *stamp = self.current;
        fresh
    }
}

/// The graph's shape parameters, as stored in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) dim: usize,
    /// Links per node on layers above 0 (and what a new node keeps on every layer).
    pub(crate) m: usize,
    /// Links per node on layer 0 (2M).
    pub(crate) m0: usize,
    /// The highest layer a node may have.
    pub(crate) top_layer: usize,
    pub(crate) ef_construction: usize,
}

impl Shape {
    /// The shape sanitised parameters give.
    pub(crate) fn of(dim: usize, params: &HnswParams) -> Self {
        Self {
            dim,
            m: params.max_nb_connection,
            m0: 2 * params.max_nb_connection,
            top_layer: params.max_layer - 1,
            ef_construction: params.ef_construction,
        }
    }
}

pub(crate) struct Graph {
    pub(crate) shape: Shape,
    /// `1 / ln(M)`: a node's layer is `floor(-ln(U) · level_mult)`.
    level_mult: f64,
    pub(crate) vectors: Vec<f32>,
    pub(crate) levels: Vec<u8>,
    pub(crate) layer0: Vec<AtomicU32>,
    pub(crate) upper: Vec<Box<[AtomicU32]>>,
    /// The entry point and its layer; `None` while the graph is empty.
    entry: Mutex<Option<(u32, u8)>>,
    locks: Box<[Mutex<()>]>,
    visited: Mutex<Vec<Visited>>,
    /// How many slots have been allocated by this process (feeds the level draw).
    draws: AtomicUsize,
}

impl Graph {
    pub(crate) fn new(shape: Shape) -> Self {
        Self {
            level_mult: 1.0 / (shape.m.max(2) as f64).ln(),
            shape,
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            entry: Mutex::new(None),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            visited: Mutex::new(Vec::new()),
            draws: AtomicUsize::new(0),
        }
    }

    /// A graph from stored arrays (a snapshot). The caller has checked them with [`Graph::check`].
    pub(crate) fn from_parts(
        shape: Shape,
        vectors: Vec<f32>,
        levels: Vec<u8>,
        layer0: Vec<AtomicU32>,
        upper: Vec<Box<[AtomicU32]>>,
        entry: Option<u32>,
    ) -> Self {
        let mut graph = Self::new(shape);
        let draws = levels.len();
        let entry = entry.map(|e| (e, levels[e as usize]));
        graph.vectors = vectors;
        graph.levels = levels;
        graph.layer0 = layer0;
        graph.upper = upper;
        graph.entry = Mutex::new(entry);
        graph.draws = AtomicUsize::new(draws);
        graph
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    pub(crate) fn entry(&self) -> Option<(u32, u8)> {
        *self.entry.lock().unwrap()
    }

    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        let dim = self.shape.dim;
        &self.vectors[slot as usize * dim..(slot as usize + 1) * dim]
    }

    fn distance(&self, q: &[f32], slot: u32) -> f32 {
        (1.0 - dot_f32(q, self.vector(slot))).clamp(0.0, 2.0)
    }

    /// The link words of `slot` on `layer` (count first); empty if the node is not on that layer.
    fn links(&self, slot: u32, layer: usize) -> &[AtomicU32] {
        let s = slot as usize;
        if layer == 0 {
            let w = self.shape.m0 + 1;
            &self.layer0[s * w..(s + 1) * w]
        } else if layer <= usize::from(self.levels[s]) {
            let w = self.shape.m + 1;
            &self.upper[s][(layer - 1) * w..layer * w]
        } else {
            &[]
        }
    }

    /// Copies `slot`'s links on `layer` into `out`.
    pub(crate) fn neighbours(&self, slot: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        let words = self.links(slot, layer);
        if let Some((count, rest)) = words.split_first() {
            let n = (count.load(Relaxed) as usize).min(rest.len());
            out.extend(rest[..n].iter().map(|w| w.load(Relaxed)));
        }
    }

    fn set_neighbours(&self, slot: u32, layer: usize, list: &[u32]) {
        let words = self.links(slot, layer);
        debug_assert!(list.len() < words.len());
        for (w, &s) in words[1..].iter().zip(list) {
            w.store(s, Relaxed);
        }
        words[0].store(list.len() as u32, Relaxed);
    }

    /// The layer of the `n`-th slot drawn: `floor(-ln(U) / ln(M))` with `U` from a hash of `n`.
    fn draw_level(&self) -> u8 {
        let n = self.draws.fetch_add(1, Relaxed) as u64;
        let mut z = LEVEL_SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64; // in (0, 1)
        let level = (-u.ln() * self.level_mult).floor() as usize;
        level.min(self.shape.top_layer) as u8
    }

    /// Appends a slot holding `vector` (already unit-length), not linked yet; returns it.
    pub(crate) fn allocate(&mut self, vector: &[f32]) -> u32 {
        debug_assert_eq!(vector.len(), self.shape.dim);
        let slot = u32::try_from(self.levels.len()).expect("an HNSW graph holds at most 2^32 slots");
        let level = self.draw_level();
        self.vectors.extend_from_slice(vector);
        self.levels.push(level);
        self.layer0.extend((0..=self.shape.m0).map(|_| AtomicU32::new(0)));
        let upper = usize::from(level) * (self.shape.m + 1);
        self.upper.push((0..upper).map(|_| AtomicU32::new(0)).collect());
        slot
    }

    /// Links the allocated slots `slots` into the graph, on `threads` threads.
    pub(crate) fn link(&self, slots: std::ops::Range<u32>, threads: usize) {
        let mut next = slots.start;
        if self.entry().is_none() && next < slots.end {
            // The first point must be the entry point before any other looks for one.
            self.link_one(next);
            next += 1;
        }
        let count = (slots.end - next) as usize;
        let threads = threads.clamp(1, count.max(1));
        if threads == 1 {
            (next..slots.end).for_each(|s| self.link_one(s));
            return;
        }
        let cursor = AtomicUsize::new(next as usize);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let s = cursor.fetch_add(1, Relaxed);
                        if s >= slots.end as usize {
                            break;
                        }
                        self.link_one(s as u32);
                    }
                });
            }
        });
    }

    /// Links one allocated slot: the insertion of the HNSW paper (algorithm 1), with its heuristic
    /// neighbour selection (algorithm 4, pruned links kept to fill the list: see `select`).
    fn link_one(&self, slot: u32) {
        let level = usize::from(self.levels[slot as usize]);
        let Some((entry, entry_level)) = self.entry() else {
            let mut e = self.entry.lock().unwrap();
            if e.is_none() {
                *e = Some((slot, level as u8));
                return;
            }
            drop(e);
            return self.link_one(slot);
        };
        let q = self.vector(slot);
        let entry_level = usize::from(entry_level);
        let mut cur = Scored { distance: self.distance(q, entry), slot: entry };
        let mut scratch = Vec::new();
        for layer in (level + 1..=entry_level).rev() {
            cur = self.greedy(q, cur, layer, &mut scratch);
        }
        let mut visited = self.take_visited();
        for layer in (0..=level.min(entry_level)).rev() {
            let mut found = self.search_layer(q, &[cur], self.shape.ef_construction, layer, &All, &mut visited);
            found.retain(|c| c.slot != slot);
            let chosen = self.select(&found, self.shape.m);
            self.set_own_links(slot, layer, &chosen, &mut scratch);
            for &n in &chosen {
                self.add_link(n, slot, layer, &mut scratch);
            }
            if let Some(best) = found.first() {
                cur = *best;
            }
        }
        self.give_back(visited);
        if level > entry_level {
            let mut e = self.entry.lock().unwrap();
            if e.is_none_or(|(_, l)| usize::from(l) < level) {
                *e = Some((slot, level as u8));
            }
        }
    }

    /// Gives a node being inserted its links on `layer`. Another thread may already have linked to it
    /// (it found the node on a higher layer and came down through it): those links are kept, or the
    /// other node could be left unreachable.
    fn set_own_links(&self, slot: u32, layer: usize, chosen: &[u32], scratch: &mut Vec<u32>) {
        let _guard = self.lock(slot);
        self.neighbours(slot, layer, scratch);
        if scratch.is_empty() {
            self.set_neighbours(slot, layer, chosen);
            return;
        }
        for &c in chosen {
            if !scratch.contains(&c) {
                scratch.push(c);
            }
        }
        self.set_pruned(slot, layer, scratch);
    }

    /// Sets `node`'s links on `layer` to `links`, pruned with the heuristic if they are too many.
    fn set_pruned(&self, node: u32, layer: usize, links: &[u32]) {
        let cap = if layer == 0 { self.shape.m0 } else { self.shape.m };
        if links.len() <= cap {
            self.set_neighbours(node, layer, links);
            return;
        }
        let v = self.vector(node);
        let mut candidates: Vec<Scored> =
            links.iter().map(|&s| Scored { distance: self.distance(v, s), slot: s }).collect();
        candidates.sort_unstable();
        self.set_neighbours(node, layer, &self.select(&candidates, cap));
    }

    /// Adds `new` to `node`'s links on `layer`, pruning them with the heuristic when full.
    fn add_link(&self, node: u32, new: u32, layer: usize, scratch: &mut Vec<u32>) {
        let _guard = self.lock(node);
        self.neighbours(node, layer, scratch);
        if !scratch.contains(&new) {
            scratch.push(new);
            self.set_pruned(node, layer, scratch);
        }
    }

    fn lock(&self, slot: u32) -> std::sync::MutexGuard<'_, ()> {
        self.locks[slot as usize % LOCK_STRIPES].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hill-climbs on one layer from `cur` to the closest node it can reach.
    fn greedy(&self, q: &[f32], mut cur: Scored, layer: usize, scratch: &mut Vec<u32>) -> Scored {
        loop {
            let mut moved = false;
            self.neighbours(cur.slot, layer, scratch);
            for &n in scratch.iter() {
                let d = Scored { distance: self.distance(q, n), slot: n };
                if d < cur {
                    cur = d;
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// The heuristic of the paper's algorithm 4: walking the candidates from the closest, keep one
    /// only if it is closer to the query than to every one kept so far (so links spread out in
    /// different directions instead of crowding one cluster); then fill what is left of the `m` with
    /// the closest of those passed over (the paper's "keepPrunedConnections": on data where
    /// neighbours are nearly equidistant the heuristic alone keeps too few links). `candidates` is
    /// sorted, closest first.
    fn select(&self, candidates: &[Scored], m: usize) -> Vec<u32> {
        if candidates.len() <= m {
            return candidates.iter().map(|c| c.slot).collect();
        }
        let mut out = Vec::with_capacity(m);
        let mut passed = Vec::new();
        for c in candidates {
            if out.len() >= m {
                break;
            }
            let v = self.vector(c.slot);
            if out.iter().all(|&s| self.distance(v, s) >= c.distance) {
                out.push(c.slot);
            } else {
                passed.push(c.slot);
            }
        }
        let room = m - out.len();
        out.extend(passed.into_iter().take(room));
        out
    }

    /// The best `ef` nodes of `layer` found from `entries` (sorted, closest first) among those
    /// `accept` takes; the search walks through the others. With a filter that takes few nodes it
    /// explores until its candidates run out, towards a scan of the whole layer.
    fn search_layer(
        &self,
        q: &[f32],
        entries: &[Scored],
        ef: usize,
        layer: usize,
        accept: &dyn Accept,
        visited: &mut Visited,
    ) -> Vec<Scored> {
        visited.reset(self.len());
        let mut candidates: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::new();
        let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
        for &e in entries {
            visited.insert(e.slot);
            candidates.push(std::cmp::Reverse(e));
            if accept.accept(e.slot) {
                best.push(e);
            }
        }
        let mut links = Vec::with_capacity(self.shape.m0);
        while let Some(std::cmp::Reverse(c)) = candidates.pop() {
            if best.len() >= ef && best.peek().is_some_and(|worst| c.distance > worst.distance) {
                break;
            }
            self.neighbours(c.slot, layer, &mut links);
            for &n in &links {
                if !visited.insert(n) {
                    continue;
                }
                let d = Scored { distance: self.distance(q, n), slot: n };
                if best.len() < ef || best.peek().is_some_and(|worst| d.distance < worst.distance) {
                    candidates.push(std::cmp::Reverse(d));
                    if accept.accept(n) {
                        best.push(d);
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        best.into_sorted_vec()
    }

    /// The `ef` best accepted nodes for `q` (closest first).
    pub(crate) fn search(&self, q: &[f32], ef: usize, accept: &dyn Accept) -> Vec<Scored> {
        let Some((entry, entry_level)) = self.entry() else {
            return Vec::new();
        };
        let mut cur = Scored { distance: self.distance(q, entry), slot: entry };
        let mut scratch = Vec::new();
        for layer in (1..=usize::from(entry_level)).rev() {
            cur = self.greedy(q, cur, layer, &mut scratch);
        }
        let mut visited = self.take_visited();
        let found = self.search_layer(q, &[cur], ef, 0, accept, &mut visited);
        self.give_back(visited);
        found
    }

    fn take_visited(&self) -> Visited {
        self.visited.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    fn give_back(&self, visited: Visited) {
        self.visited.lock().unwrap_or_else(|e| e.into_inner()).push(visited);
    }

    /// Bytes the arrays use (not counting the lock stripes and search buffers). Lengths, not
    /// capacities: the spare capacity a growing `Vec` keeps is never written, so it is not resident.
    pub(crate) fn memory_bytes(&self) -> usize {
        let upper: usize = self.upper.iter().map(|u| u.len() * 4 + 16).sum();
        self.vectors.len() * 4 + self.levels.len() + self.layer0.len() * 4 + upper
    }
}
