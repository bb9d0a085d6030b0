//! Pulling the origin's change feed (`GET /v1/sync`, lens-core's wire types) into the edge's index: which
//! shards a page touches, and the new shards and manifest it gives. Pure: the Worker does the reading and
//! writing (`worker.rs`), in this order — new shards, then the manifest (conditional on the one read), then
//! the cursor, then the retired shards — so a crash at any point leaves a consistent index, and applying a
//! page again changes nothing more.

use std::collections::{BTreeSet, HashMap};

use lens_core::api::{SyncChange, SyncPage};

use crate::index::{Manifest, Record, SHARD_CAPACITY, Shard, ShardRef};

/// Refuses a page whose vectors would not compare with the edge's model (`model_id`, the text
/// artifact's source id) or with the index already held.
pub fn check_page(page: &SyncPage, model_id: &str, manifest: Option<&Manifest>) -> Result<(), String> {
    if page.model.id != model_id {
        return Err(format!(
            "the origin embeds with model `{}` but the edge's text model is `{model_id}`: nothing was synced \
             (quantize the origin's model with `lens models quantize --text-only` and put it in R2)",
            page.model.id
        ));
    }
    if let Some(m) = manifest
        && m.model != page.model
    {
        return Err(format!(
            "the edge index holds vectors of `{}` ({} dimensions), the origin now sends `{}` ({}): nothing was synced",
            m.model.id, m.model.dims, page.model.id, page.model.dims
        ));
    }
    for change in &page.changes {
        if let SyncChange::Upsert { image, .. } = change
            && image.embedding.len() != page.model.dims
        {
            return Err(format!(
                "image `{}` has {} dimensions, the model {}",
                image.id,
                image.embedding.len(),
                page.model.dims
            ));
        }
    }
    Ok(())
}

/// Keys of the shards [`apply`] needs loaded: those holding an image the changes touch, and the last one
/// (new images go there while it has room).
pub fn shards_needed(manifest: &Manifest, changes: &[SyncChange]) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for change in changes {
        let id = match change {
            SyncChange::Upsert { image, .. } => &image.id,
            SyncChange::Delete { id, .. } => id,
        };
        if let Some(key) = manifest.images.get(id) {
            keys.insert(key.clone());
        }
    }
    if let Some(last) = manifest.shards.last()
        && last.count < SHARD_CAPACITY
    {
        keys.insert(last.key.clone());
    }
    keys.into_iter().collect()
}

/// What a page changes.
#[derive(Debug)]
pub struct Update {
    /// The manifest to put once every write is in place.
    pub manifest: Manifest,
    /// New shards, under keys no manifest names yet.
    pub writes: Vec<(String, Shard)>,
    /// Shards the new manifest no longer names (deleted after it is in place).
    pub retired: Vec<String>,
}

/// Applies `changes` to `manifest`, given the shards [`shards_needed`] names (`loaded`). Shards are never
/// changed in place: each one touched is written again under a key from `new_key`.
///
/// # Errors
/// A needed shard was not loaded, or a vector is bad (all zeros, not finite); nothing is applied then.
pub fn apply(
    manifest: &Manifest,
    mut loaded: HashMap<String, Shard>,
    changes: &[SyncChange],
    new_key: &mut dyn FnMut() -> String,
) -> Result<Update, String> {
    for key in shards_needed(manifest, changes) {
        if !loaded.contains_key(&key) {
            return Err(format!("shard {key} was not loaded"));
        }
    }
    let mut m = manifest.clone();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for change in changes {
        match change {
            SyncChange::Upsert { image, .. } => {
                let key = match m.images.get(&image.id) {
                    Some(key) => key.clone(),
                    None => {
                        let tail =
                            m.shards.last().filter(|s| loaded.get(&s.key).is_some_and(|sh| sh.len() < SHARD_CAPACITY));
                        match tail {
                            Some(s) => s.key.clone(),
                            None => {
                                let key = new_key();
                                m.shards.push(ShardRef { key: key.clone(), count: 0 });
                                loaded.insert(key.clone(), Shard::new(m.model.dims));
                                key
                            }
                        }
                    }
                };
                let shard = loaded.get_mut(&key).expect("needed shards are loaded");
                shard.upsert(Record::from_sync(image), &image.embedding)?;
                m.images.insert(image.id.clone(), key.clone());
                touched.insert(key);
            }
            SyncChange::Delete { id, .. } => {
                if let Some(key) = m.images.remove(id) {
                    loaded.get_mut(&key).expect("needed shards are loaded").remove(id);
                    touched.insert(key);
                }
            }
        }
    }

    let old: BTreeSet<&str> = manifest.shards.iter().map(|s| s.key.as_str()).collect();
    let mut writes = Vec::new();
    let mut retired = Vec::new();
    let mut shards = Vec::with_capacity(m.shards.len());
    for entry in std::mem::take(&mut m.shards) {
        if !touched.contains(&entry.key) {
            shards.push(entry);
            continue;
        }
        let shard = loaded.remove(&entry.key).expect("touched shards are loaded");
        if old.contains(entry.key.as_str()) {
            retired.push(entry.key.clone());
        }
        if shard.is_empty() {
            continue;
        }
        // A shard read from R2 is immutable: its new contents get a new key.
        let key = if old.contains(entry.key.as_str()) { new_key() } else { entry.key.clone() };
        for record in shard.records.values() {
            m.images.insert(record.id.clone(), key.clone());
        }
        shards.push(ShardRef { key: key.clone(), count: shard.len() });
        writes.push((key, shard));
    }
    m.shards = shards;
    Ok(Update { manifest: m, writes, retired })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::image;
    use lens_core::api::SyncModel;

    fn model() -> SyncModel {
        SyncModel { id: "clip@x".into(), dims: 2 }
    }

    fn upsert(n: u8, v: [f32; 2]) -> SyncChange {
        SyncChange::Upsert { seq: n as u64, image: image(n, v.to_vec()) }
    }

    fn keys() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("index/shards/k{n}")
        }
    }

    /// Loads what `apply` needs from `store` (the bucket), applies, and stores the result.
    fn step(
        store: &mut HashMap<String, Vec<u8>>,
        manifest: &Manifest,
        changes: &[SyncChange],
        new_key: &mut dyn FnMut() -> String,
    ) -> Manifest {
        let loaded = shards_needed(manifest, changes)
            .into_iter()
            .map(|k| {
                let shard = Shard::decode(&store[&k]).unwrap();
                (k, shard)
            })
            .collect();
        let update = apply(manifest, loaded, changes, new_key).unwrap();
        for (key, shard) in &update.writes {
            assert!(!store.contains_key(key), "a key is never reused");
            store.insert(key.clone(), shard.encode());
        }
        for key in &update.retired {
            store.remove(key);
        }
        update.manifest
    }

    #[test]
    fn upserts_and_deletes_rewrite_only_the_shards_they_touch() {
        let mut store = HashMap::new();
        let mut new_key = keys();
        let m0 = Manifest::new(model());
        let m1 = step(&mut store, &m0, &[upsert(1, [1.0, 0.0]), upsert(2, [0.0, 1.0])], &mut new_key);
        assert_eq!((m1.len(), m1.shards.len(), m1.shards[0].count), (2, 1, 2));

        // An update of image 1 and a delete of image 2: one shard rewritten under a new key, the old one retired.
        let m2 = step(
            &mut store,
            &m1,
            &[upsert(1, [0.6, 0.8]), SyncChange::Delete { seq: 9, id: image(2, vec![]).id }],
            &mut new_key,
        );
        assert_eq!(m2.len(), 1);
        assert_eq!(m2.shards.len(), 1);
        assert_ne!(m2.shards[0].key, m1.shards[0].key);
        assert_eq!(store.len(), 1, "the old shard is gone");
        let shard = Shard::decode(&store[&m2.shards[0].key]).unwrap();
        let hits = shard.search(&[0.6, 0.8], 5, &|_| true).unwrap();
        assert_eq!(hits.len(), 1);
        assert!(hits[0].0 > 0.99);

        // Applying the same page again changes nothing but keys.
        let again = step(&mut store, &m2, &[upsert(1, [0.6, 0.8])], &mut new_key);
        assert_eq!(again.images.len(), 1);
        // Deleting the last image empties the index, and the shard goes.
        let empty = step(&mut store, &again, &[SyncChange::Delete { seq: 10, id: image(1, vec![]).id }], &mut new_key);
        assert!(empty.is_empty() && empty.shards.is_empty() && store.is_empty());
        // An unknown delete is nothing.
        assert!(step(&mut store, &empty, &[SyncChange::Delete { seq: 11, id: "ab".into() }], &mut new_key).is_empty());
    }

    #[test]
    fn a_full_shard_starts_another() {
        let mut store = HashMap::new();
        let mut new_key = keys();
        let mut m = Manifest::new(model());
        let changes: Vec<SyncChange> = (0..SHARD_CAPACITY + 1)
            .map(|i| {
                let mut im = image(0, vec![1.0, i as f32]);
                im.sha256 = format!("{i:016x}{}", "0".repeat(48));
                im.id = im.sha256[..32].to_string();
                SyncChange::Upsert { seq: i as u64, image: im }
            })
            .collect();
        m = step(&mut store, &m, &changes[..SHARD_CAPACITY - 1], &mut new_key);
        m = step(&mut store, &m, &changes[SHARD_CAPACITY - 1..], &mut new_key);
        assert_eq!(m.shards.iter().map(|s| s.count).collect::<Vec<_>>(), [SHARD_CAPACITY, 1]);
        assert_eq!(m.len(), SHARD_CAPACITY + 1);
    }

    #[test]
    fn pages_of_another_model_or_size_are_refused() {
        let page = |id: &str, dims: usize, v: Vec<f32>| SyncPage {
            model: SyncModel { id: id.into(), dims },
            changes: vec![SyncChange::Upsert { seq: 1, image: image(1, v) }],
            next_cursor: "1".into(),
            more: false,
        };
        assert!(check_page(&page("clip@x", 2, vec![1.0, 0.0]), "clip@x", None).is_ok());
        assert!(
            check_page(&page("clip@y", 2, vec![1.0, 0.0]), "clip@x", None).unwrap_err().contains("nothing was synced")
        );
        assert!(check_page(&page("clip@x", 2, vec![1.0]), "clip@x", None).is_err());
        let held = Manifest::new(SyncModel { id: "clip@x".into(), dims: 3 });
        assert!(check_page(&page("clip@x", 2, vec![1.0, 0.0]), "clip@x", Some(&held)).is_err());
        // A bad vector refuses the whole page.
        let bad = [upsert(1, [1.0, 0.0]), upsert(2, [0.0, 0.0])];
        assert!(apply(&Manifest::new(model()), HashMap::new(), &bad, &mut keys()).is_err());
    }
}
