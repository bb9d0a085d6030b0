//! The id bookkeeping of the dense scans: row `i` of the store belongs to `ids[i]`, and a delete moves
//! the last row into the hole (swap-remove), so storage stays contiguous.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    ids: Vec<u64>,
    rows: HashMap<u64, usize>,
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.rows.contains_key(&id)
    }

    pub(crate) fn row(&self, id: u64) -> Option<usize> {
        self.rows.get(&id).copied()
    }

    /// Ids in row order.
    pub(crate) fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The row of `id`, and whether it is new: a new row is appended at the end and the caller
    /// must append its data.
    pub(crate) fn slot(&mut self, id: u64) -> (usize, bool) {
        match self.rows.get(&id) {
            Some(&r) => (r, false),
            None => {
                let r = self.ids.len();
                self.rows.insert(id, r);
                self.ids.push(id);
                (r, true)
            }
        }
    }

    /// Forgets `id` and returns `(hole, last)`: the caller moves row `last` into `hole` (when they
    /// differ) and drops its last row.
    pub(crate) fn remove(&mut self, id: u64) -> Option<(usize, usize)> {
        let hole = self.rows.remove(&id)?;
        let last = self.ids.len() - 1;
        if hole != last {
            self.ids[hole] = self.ids[last];
            self.rows.insert(self.ids[hole], hole);
        }
        self.ids.pop();
        Some((hole, last))
    }

    /// Approximate heap bytes of the ids and the map.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.ids.capacity() * 8 + self.rows.capacity() * 20
    }
}
