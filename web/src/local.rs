//! The local index: every image's embedding in an exact cosine index (`lens-index`) and its metadata,
//! keyed by sha256 — the same key the server uses, so local and server copies of one image merge.

use std::collections::HashMap;

use lens_index::{ExactIndex, IndexError, VectorIndex};

use crate::protocol::{Hit, Item};

/// Embeddings and metadata of the images on this device.
#[derive(Debug)]
pub struct LocalIndex {
    index: ExactIndex,
    /// sha256 → the index's `u64` id.
    ids: HashMap<String, u64>,
    items: HashMap<u64, Item>,
    next_id: u64,
}

impl LocalIndex {
    /// An empty index for `dim`-dimensional embeddings.
    pub fn new(dim: usize) -> Self {
        Self { index: ExactIndex::new(dim), ids: HashMap::new(), items: HashMap::new(), next_id: 0 }
    }

    pub fn dim(&self) -> usize {
        self.index.dim()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, sha256: &str) -> Option<&Item> {
        self.ids.get(sha256).and_then(|id| self.items.get(id))
    }

    /// Every item, newest first.
    pub fn items(&self) -> Vec<&Item> {
        let mut all: Vec<&Item> = self.items.values().collect();
        all.sort_by(|a, b| b.added_at.total_cmp(&a.added_at).then_with(|| a.sha256.cmp(&b.sha256)));
        all
    }

    /// Adds an image, or replaces the embedding and metadata of the one with the same sha256.
    ///
    /// # Errors
    /// The embedding has the wrong length, is not finite or is all zeros; nothing changes then.
    pub fn insert(&mut self, item: Item, embedding: &[f32]) -> Result<(), IndexError> {
        let id = match self.ids.get(&item.sha256) {
            Some(&id) => id,
            None => self.next_id,
        };
        self.index.insert(id, embedding)?;
        if id == self.next_id {
            self.next_id += 1;
            self.ids.insert(item.sha256.clone(), id);
        }
        self.items.insert(id, item);
        Ok(())
    }

    /// Changes an item's metadata (caption, server id) and keeps its embedding.
    pub fn update(&mut self, sha256: &str, f: impl FnOnce(&mut Item)) -> Option<&Item> {
        let id = *self.ids.get(sha256)?;
        let item = self.items.get_mut(&id)?;
        f(item);
        Some(item)
    }

    /// Removes an image; false when it was not there.
    pub fn remove(&mut self, sha256: &str) -> bool {
        let Some(id) = self.ids.remove(sha256) else {
            return false;
        };
        self.items.remove(&id);
        self.index.remove(id)
    }

    /// The `k` images closest to `query` (any length-`dim` vector; it is normalised), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        if self.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let hits = self.index.search(query, k, None)?;
        Ok(hits
            .into_iter()
            .filter_map(|h| self.items.get(&h.id).map(|item| Hit { sha256: item.sha256.clone(), score: h.score }))
            .collect())
    }

    /// The `k` images closest to the stored image `sha256`: itself first (score 1; a near-duplicate
    /// whose score also rounds to 1 never takes its place), then the others best first.
    pub fn similar(&self, sha256: &str, k: usize) -> Option<Result<Vec<Hit>, IndexError>> {
        let id = *self.ids.get(sha256)?;
        let query = self.index.get(id)?.to_vec();
        Some(self.search(&query, k).map(|mut hits| {
            if let Some(pos) = hits.iter().position(|h| h.sha256 == sha256) {
                let own = hits.remove(pos);
                hits.insert(0, own);
            }
            hits
        }))
    }

    /// The stored (normalised) embedding of an image.
    pub fn embedding(&self, sha256: &str) -> Option<&[f32]> {
        self.ids.get(sha256).and_then(|&id| self.index.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn item(sha: &str, at: f64) -> Item {
        Item {
            sha256: sha.into(),
            name: format!("{sha}.png"),
            mime: "image/png".into(),
            width: 4,
            height: 4,
            bytes: 10,
            added_at: at,
            caption: None,
            server_id: None,
        }
    }

    #[test]
    fn search_similar_replace_and_delete() {
        let mut idx = LocalIndex::new(3);
        idx.insert(item("a", 1.0), &[1.0, 0.0, 0.0]).unwrap();
        idx.insert(item("b", 2.0), &[0.8, 0.6, 0.0]).unwrap();
        idx.insert(item("c", 3.0), &[0.0, 0.0, 2.0]).unwrap();
        assert_eq!(idx.items().iter().map(|i| i.sha256.as_str()).collect::<Vec<_>>(), ["c", "b", "a"]);

        let hits = idx.search(&[2.0, 0.0, 0.0], 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.sha256.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!((hits[0].score - 1.0).abs() < 1e-6 && (hits[1].score - 0.8).abs() < 1e-6);

        let sim = idx.similar("c", 2).unwrap().unwrap();
        assert_eq!(sim[0].sha256, "c");
        assert!((sim[0].score - 1.0).abs() < 1e-6);

        // Same sha256: one entry, new vector, new metadata.
        idx.insert(Item { caption: Some("x".into()), ..item("a", 1.0) }, &[0.0, 1.0, 0.0]).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.get("a").unwrap().caption.as_deref(), Some("x"));
        assert_eq!(idx.search(&[0.0, 1.0, 0.0], 1).unwrap()[0].sha256, "a");

        assert!(idx.remove("b"));
        assert!(!idx.remove("b"));
        assert_eq!(idx.len(), 2);
        assert!(idx.search(&[1.0, 0.0, 0.0], 10).unwrap().iter().all(|h| h.sha256 != "b"));
        assert!(idx.similar("b", 1).is_none());
    }

    #[test]
    fn a_bad_vector_changes_nothing() {
        let mut idx = LocalIndex::new(2);
        assert!(idx.insert(item("z", 0.0), &[0.0, 0.0]).is_err());
        assert!(idx.insert(item("w", 0.0), &[1.0]).is_err());
        assert!(idx.is_empty() && idx.get("z").is_none());
        idx.insert(item("v", 0.0), &[1.0, 1.0]).unwrap();
        assert_eq!(idx.search(&[1.0, 0.0], 5).unwrap().len(), 1);
    }
}
