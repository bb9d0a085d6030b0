//! Rendered thumbnails (lens-core's [`lens_core::thumbnail`]) kept in memory, in a bounded LRU.
//! Thumbnails are content-addressed (the image's sha256 and the size): a browser mirror pulls each one
//! once, grids ask again and again, and a cache that dies with the process costs only a re-render — the
//! blob store keeps the bytes the user gave, nothing derived.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes of thumbnails kept in memory (a 256 px JPEG is 5 to 20 KB: thousands of them).
pub const CACHE_BYTES: usize = 64 << 20;

/// Least recently used thumbnails, at most `max_bytes` of them.
pub struct ThumbnailCache {
    inner: Mutex<Lru>,
    max_bytes: usize,
}

#[derive(Default)]
struct Lru {
    /// (sha256, size) -> (bytes, last use).
    entries: HashMap<(String, u32), (Bytes, u64)>,
    /// last use -> key: the oldest first.
    by_use: BTreeMap<u64, (String, u32)>,
    bytes: usize,
    clock: u64,
}

impl ThumbnailCache {
    pub fn new(max_bytes: usize) -> Self {
        Self { inner: Mutex::new(Lru::default()), max_bytes }
    }

    pub fn get(&self, sha256: &str, size: u32) -> Option<Bytes> {
        let mut lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lru.clock += 1;
        let now = lru.clock;
        let key = (sha256.to_string(), size);
        let (bytes, used) = lru.entries.get_mut(&key)?;
        let (bytes, old) = (bytes.clone(), std::mem::replace(used, now));
        lru.by_use.remove(&old);
        lru.by_use.insert(now, key);
        Some(bytes)
    }

    /// Keeps `bytes`, dropping the least recently used past the budget (one larger than the whole
    /// budget is not kept).
    pub fn put(&self, sha256: &str, size: u32, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lru.clock += 1;
        let now = lru.clock;
        let key = (sha256.to_string(), size);
        let len = bytes.len();
        if let Some((old, used)) = lru.entries.insert(key.clone(), (bytes, now)) {
            lru.bytes -= old.len();
            lru.by_use.remove(&used);
        }
        lru.by_use.insert(now, key);
        lru.bytes += len;
        while lru.bytes > self.max_bytes {
            let Some((_, oldest)) = lru.by_use.pop_first() else { break };
            if let Some((gone, _)) = lru.entries.remove(&oldest) {
                lru.bytes -= gone.len();
            }
        }
    }

    /// (entries, bytes) held.
    pub fn usage(&self) -> (usize, usize) {
        let lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (lru.entries.len(), lru.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_drops_the_least_recently_used_past_its_budget() {
        let cache = ThumbnailCache::new(30);
        let b = |n: usize| Bytes::from(vec![0u8; n]);
        cache.put("a", 1, b(10));
        cache.put("b", 1, b(10));
        cache.put("c", 1, b(10));
        assert!(cache.get("a", 1).is_some()); // a is now the most recent
        cache.put("d", 1, b(10)); // drops b
        assert!(cache.get("b", 1).is_none());
        assert!(cache.get("a", 1).is_some() && cache.get("c", 1).is_some() && cache.get("d", 1).is_some());
        assert_eq!(cache.usage(), (3, 30));
        cache.put("a", 1, b(5)); // replacing counts the new size only
        assert_eq!(cache.usage(), (3, 25));
        cache.put("big", 1, b(31));
        assert!(cache.get("big", 1).is_none());
        assert_eq!(cache.usage(), (3, 25));
        assert!(cache.get("a", 2).is_none(), "another size is another thumbnail");
    }
}
