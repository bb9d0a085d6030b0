//! The edge's index as R2 holds it: immutable shards of int8 vectors with their images' records, and one
//! manifest naming the live shards. A search reads the manifest, then the shards one at a time (a few
//! stay cached), so the index may outgrow the isolate's 128 MB; a sync writes new shards first and then
//! swaps the manifest in one conditional put, so a reader sees the old index or the new one, never half.
//!
//! ```text
//! index/manifest.json               Manifest: model, shards (key, count), image id → shard
//! index/shards/<seq>-<nonce>-<n>    Shard: u32 LE records length, records (JSON), lens-index's Int8Index encoding
//! ```

use std::collections::BTreeMap;

use lens_core::api::{SearchResult, SyncImage, SyncModel, blob_path};
use lens_index::{IndexError, Int8Index, VectorIndex};
use serde::{Deserialize, Serialize};

/// Where the manifest lives in the bucket.
pub const MANIFEST_KEY: &str = "index/manifest.json";
/// Prefix of every shard key.
pub const SHARD_PREFIX: &str = "index/shards/";
/// Images per shard: at 512 dimensions a full shard is about 1 MiB of codes and 0.5 MiB of records.
pub const SHARD_CAPACITY: usize = 2048;
/// The manifest layout this code reads and writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// The index's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The model every vector was embedded with (the origin's, checked on every sync page).
    pub model: SyncModel,
    /// Live shards, oldest first.
    pub shards: Vec<ShardRef>,
    /// Image id → its shard's key.
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRef {
    pub key: String,
    /// Images in the shard.
    pub count: usize,
}

impl Manifest {
    /// An empty index of `model`'s vectors.
    pub fn new(model: SyncModel) -> Self {
        Self { format: MANIFEST_FORMAT, model, shards: Vec::new(), images: BTreeMap::new() }
    }

    /// Images in the index.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Reads a manifest, refusing another format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| format!("index manifest: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!("index manifest format {} (this edge reads {MANIFEST_FORMAT})", manifest.format));
        }
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }
}

/// What a search returns about an image, besides its score (the sync feed's image less its vector).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub created_at: i64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub analysis: Option<String>,
}

impl Record {
    pub fn from_sync(image: &SyncImage) -> Self {
        Self {
            id: image.id.clone(),
            sha256: image.sha256.clone(),
            mime: image.mime.clone(),
            width: image.width,
            height: image.height,
            bytes: image.bytes,
            created_at: image.created_at,
            tags: image.tags.clone(),
            caption: image.caption.clone(),
            analysis: image.analysis.clone(),
        }
    }

    /// The server's result shape for this image at `score` (a plain vector search: no caption score).
    pub fn result(&self, score: f32) -> SearchResult {
        SearchResult {
            id: self.id.clone(),
            score,
            vector_score: score,
            caption_score: None,
            caption: self.caption.clone(),
            analysis: self.analysis.clone(),
            tags: self.tags.clone(),
            colors: None,
            metadata: None,
            url: blob_path(&self.id),
        }
    }
}

/// The key of an image's vector inside a shard: the first 64 bits of its id (itself the first 128 bits of
/// the image's SHA-256).
pub fn vector_key(image_id: &str) -> Result<u64, String> {
    image_id
        .get(..16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("image id `{image_id}` is not a hex SHA-256 prefix"))
}

/// Up to [`SHARD_CAPACITY`] images: their vectors (int8, as the scan reads them) and records.
#[derive(Debug, Clone)]
pub struct Shard {
    pub vectors: Int8Index,
    /// By vector key.
    pub records: BTreeMap<u64, Record>,
}

impl Shard {
    pub fn new(dim: usize) -> Self {
        Self { vectors: Int8Index::new(dim), records: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds or replaces an image.
    ///
    /// # Errors
    /// A bad id or vector, or another image whose id shares the first 64 bits; the shard is unchanged.
    pub fn upsert(&mut self, record: Record, embedding: &[f32]) -> Result<(), String> {
        let key = vector_key(&record.id)?;
        if let Some(other) = self.records.get(&key)
            && other.id != record.id
        {
            return Err(format!("images `{}` and `{}` share a vector key", other.id, record.id));
        }
        self.vectors.insert(key, embedding).map_err(|e| format!("image `{}`: {e}", record.id))?;
        self.records.insert(key, record);
        Ok(())
    }

    /// Removes an image; false when it is not here.
    pub fn remove(&mut self, image_id: &str) -> bool {
        match vector_key(image_id) {
            Ok(key) if self.records.get(&key).is_some_and(|r| r.id == image_id) => {
                self.records.remove(&key);
                self.vectors.remove(key)
            }
            _ => false,
        }
    }

    /// The `k` best images of this shard for `query`, with `keep` applied to their records.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: &dyn Fn(&Record) -> bool,
    ) -> Result<Vec<(f32, &Record)>, IndexError> {
        let filter = |key: u64| self.records.get(&key).is_some_and(keep);
        let hits = self.vectors.search(query, k, Some(&filter))?;
        Ok(hits.into_iter().filter_map(|h| self.records.get(&h.id).map(|r| (h.score, r))).collect())
    }

    pub fn encode(&self) -> Vec<u8> {
        let records: Vec<&Record> = self.records.values().collect();
        let json = serde_json::to_vec(&records).expect("records serialise");
        let vectors = self.vectors.encode();
        let mut out = Vec::with_capacity(4 + json.len() + vectors.len());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&vectors);
        out
    }

    /// Reads [`Shard::encode`]'s bytes; every record must have its vector and the other way round.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = |why: String| format!("index shard: {why}");
        let len = bytes.get(..4).ok_or_else(|| bad("truncated".into()))?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let json = bytes.get(4..4 + len).ok_or_else(|| bad("truncated records".into()))?;
        let records: Vec<Record> = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let vectors = Int8Index::decode(&bytes[4 + len..]).map_err(|e| bad(e.to_string()))?;
        let mut by_key = BTreeMap::new();
        for record in records {
            let key = vector_key(&record.id).map_err(bad)?;
            if !vectors.contains(key) || by_key.insert(key, record).is_some() {
                return Err(bad("records and vectors disagree".into()));
            }
        }
        if by_key.len() != vectors.len() {
            return Err(bad("records and vectors disagree".into()));
        }
        Ok(Self { vectors, records: by_key })
    }

    /// Bytes this shard holds in memory, about (the cache's budget counts them).
    pub fn memory_bytes(&self) -> usize {
        self.vectors.memory_bytes()
            + self
                .records
                .values()
                .map(|r| 160 + r.id.len() * 2 + r.caption.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn image(n: u8, embedding: Vec<f32>) -> SyncImage {
        let sha256 = format!("{n:02x}").repeat(32);
        SyncImage {
            id: sha256[..32].to_string(),
            sha256,
            mime: "image/png".into(),
            width: 4,
            height: 3,
            bytes: 99,
            created_at: 1_795_392_000_000 + n as i64,
            tags: vec![format!("t{}", n % 2)],
            caption: Some(format!("caption {n}")),
            analysis: None,
            embedding,
            thumbnail_url: String::new(),
        }
    }

    #[test]
    fn a_shard_round_trips_and_searches_with_a_filter() {
        let mut shard = Shard::new(2);
        for (n, v) in [(1u8, [1.0, 0.0]), (2, [0.8, 0.6]), (3, [0.0, 1.0])] {
            let i = image(n, v.to_vec());
            shard.upsert(Record::from_sync(&i), &i.embedding).unwrap();
        }
        let back = Shard::decode(&shard.encode()).unwrap();
        assert_eq!(back.records, shard.records);
        let ids = |hits: Vec<(f32, &Record)>| hits.into_iter().map(|(_, r)| r.id[..2].to_string()).collect::<Vec<_>>();
        assert_eq!(ids(back.search(&[1.0, 0.0], 3, &|_| true).unwrap()), ["01", "02", "03"]);
        assert_eq!(ids(back.search(&[1.0, 0.0], 3, &|r| r.tags == ["t1"]).unwrap()), ["01", "03"]);

        let result = back.records.values().next().unwrap().result(0.5);
        assert_eq!(
            (result.url.as_str(), result.caption.as_deref()),
            ("/v1/images/01010101010101010101010101010101/blob", Some("caption 1"))
        );

        assert!(shard.remove(&image(2, vec![]).id));
        assert!(!shard.remove(&image(2, vec![]).id));
        assert_eq!(Shard::decode(&shard.encode()).unwrap().len(), 2);
        // A bad vector or id changes nothing.
        assert!(shard.upsert(Record::from_sync(&image(9, vec![])), &[0.0, 0.0]).is_err());
        assert!(shard.upsert(Record { id: "zz".into(), ..Record::from_sync(&image(9, vec![])) }, &[1.0, 0.0]).is_err());
        assert_eq!(shard.len(), 2);
        assert!(Shard::decode(&shard.encode()[..10]).is_err());
    }
}
