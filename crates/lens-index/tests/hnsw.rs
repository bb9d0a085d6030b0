//! HNSW: recall against the exact index, tombstones, compaction, rebuild and snapshots.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashSet;

use crate::common::{clustered, overlap};
use lens_index::{ExactIndex, Hit, HnswIndex, HnswParams, IndexError, VectorIndex};

const DIM: usize = 64;

fn ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

/// 5000 clustered 64-d vectors with ids 10, 13, 16, … (not the graph's internal slots).
fn dataset() -> Vec<(u64, Vec<f32>)> {
    clustered(5000, DIM, 50, 1.0, 11).into_iter().enumerate().map(|(i, v)| (10 + 3 * i as u64, v)).collect()
}

fn queries() -> Vec<Vec<f32>> {
    clustered(200, DIM, 50, 1.0, 12)
}

/// Mean recall@10 of `index` against `exact` (with the same filter).
fn recall(index: &dyn VectorIndex, exact: &ExactIndex, filter: Option<&dyn Fn(u64) -> bool>) -> f64 {
    let qs = queries();
    let found: usize = qs
        .iter()
        .map(|q| overlap(&ids(&exact.search(q, 10, filter).unwrap()), &ids(&index.search(q, 10, filter).unwrap())))
        .sum();
    found as f64 / (10 * qs.len()) as f64
}

fn exact_of(data: &[(u64, Vec<f32>)]) -> ExactIndex {
    let mut exact = ExactIndex::new(DIM);
    for (id, v) in data {
        exact.insert(*id, v).unwrap();
    }
    exact
}

/// Recall@10 must be at least this with [`params`].
///
/// This data is hard for a graph (within a cluster the points are isotropic in all 64 dimensions,
/// unlike real embeddings): with the default ef_search of 64 sequential inserts reach about 0.93 here
/// (checked below against a bound of 0.90; hnsw_rs, used before, reached 0.94); ef_search 128 gives
/// about 0.99.
const MIN_RECALL: f64 = 0.95;

/// M 16, ef_construction 100 (the default), ef_search 128.
fn params() -> HnswParams {
    HnswParams { ef_construction: 100, ef_search: 128, ..HnswParams::default() }
}

#[test]
fn recall_at_10_is_at_least_95_percent_and_scores_are_exact() {
    let data = dataset();
    let exact = exact_of(&data);
    let mut index = HnswIndex::new(DIM, HnswParams { ef_search: 64, ..HnswParams::default() });
    for (id, v) in &data {
        index.insert(*id, v).unwrap();
    }
    assert_eq!(index.len(), 5000);
    assert_eq!(index.tombstones(), 0);
    let r = recall(&index, &exact, None);
    println!("hnsw recall@10 (sequential inserts, ef_search 64) {r:.4}");
    assert!(r >= 0.90, "recall {r}");
    index.set_ef_search(128);
    let r = recall(&index, &exact, None);
    println!("hnsw recall@10 (sequential inserts, ef_search 128) {r:.4}");
    assert!(r >= MIN_RECALL, "recall {r}");

    // A hit's score is the exact cosine.
    for q in queries().iter().take(20) {
        let e = exact.search(q, 10, None).unwrap();
        for h in index.search(q, 10, None).unwrap() {
            if let Some(x) = e.iter().find(|x| x.id == h.id) {
                assert!((x.score - h.score).abs() < 1e-6, "{x:?} vs {h:?}");
            }
        }
    }

    // Filtered search keeps the recall (against the filtered exact search).
    let third = |id: u64| id % 3 == 1; // every id is 1 mod 3: keeps all
    let some = |id: u64| (id / 3).is_multiple_of(4); // a quarter
    assert!(recall(&index, &exact, Some(&third)) >= MIN_RECALL);
    let r = recall(&index, &exact, Some(&some));
    println!("hnsw recall@10 with a 25% filter {r:.4}");
    assert!(r >= MIN_RECALL, "filtered recall {r}");
}

#[test]
fn rebuild_from_a_stream_with_replacements() {
    let data = dataset();
    // The first 100 ids appear twice: first with another vector, then with their own.
    let stream = data[..100].iter().map(|(id, _)| (*id, data[4999].1.clone())).chain(data.iter().cloned());
    let index = HnswIndex::rebuild(DIM, params(), stream).unwrap();
    assert_eq!(index.len(), 5000);
    // All in one batch of the parallel build, where a superseded vector is not even inserted.
    assert_eq!(index.tombstones(), 0);
    // Across batches (of 8192) the earlier vector becomes a tombstone.
    let small = clustered(100, 4, 5, 0.5, 13);
    let long = (0..9000u64).map(|i| (i % 8500, small[(i % 100) as usize].clone()));
    let two_batches = HnswIndex::rebuild(4, HnswParams { ef_construction: 16, ..params() }, long).unwrap();
    assert_eq!((two_batches.len(), two_batches.tombstones()), (8500, 500));
    let exact = exact_of(&data);
    let r = recall(&index, &exact, None);
    println!("hnsw recall@10 (parallel rebuild) {r:.4}");
    assert!(r >= MIN_RECALL, "recall {r}");
    // The later vector won: id 10's own vector finds it first.
    assert_eq!(index.search(&data[0].1, 1, None).unwrap()[0].id, 10);

    // One bad vector fails the build.
    let bad = data[..10].iter().cloned().chain([(1, vec![f32::NAN; DIM])]);
    assert!(matches!(HnswIndex::rebuild(DIM, HnswParams::default(), bad), Err(IndexError::NotFinite)));
    let short = [(1, vec![1.0; DIM - 1])];
    assert!(matches!(
        HnswIndex::rebuild(DIM, HnswParams::default(), short),
        Err(IndexError::DimensionMismatch { expected: DIM, got: 63 })
    ));
    // An empty stream is an empty index.
    let empty = HnswIndex::rebuild(DIM, HnswParams::default(), std::iter::empty()).unwrap();
    assert!(empty.is_empty());
    assert!(empty.search(&data[0].1, 10, None).unwrap().is_empty());
}

#[test]
fn removals_are_tombstones_until_compact() {
    let data = dataset();
    let mut index = HnswIndex::rebuild(DIM, params(), data.iter().cloned()).unwrap();
    // Remove 30% of the ids, replace 5%.
    let removed: HashSet<u64> = data.iter().map(|(id, _)| *id).filter(|id| id % 10 < 3).collect();
    for id in &removed {
        assert!(index.remove(*id));
    }
    let mut kept: Vec<(u64, Vec<f32>)> = data.iter().filter(|(id, _)| !removed.contains(id)).cloned().collect();
    let n_replaced = kept.len() / 20;
    for i in 0..n_replaced {
        let v = data[(i * 7919) % data.len()].1.iter().map(|x| -x).collect::<Vec<f32>>();
        index.insert(kept[i].0, &v).unwrap();
        kept[i].1 = v;
    }
    assert_eq!(index.len(), kept.len());
    assert_eq!(index.tombstones(), removed.len() + n_replaced);
    let exact = exact_of(&kept);

    let before = recall(&index, &exact, None);
    for q in queries() {
        assert!(index.search(&q, 10, None).unwrap().iter().all(|h| !removed.contains(&h.id)));
    }

    index.compact().unwrap();
    assert_eq!(index.tombstones(), 0);
    assert_eq!(index.len(), kept.len());
    assert!(index.contains(kept[0].0) && !index.contains(*removed.iter().next().unwrap()));
    let after = recall(&index, &exact, None);
    println!("hnsw recall@10 with 35% tombstones {before:.4}, after compact {after:.4}");
    assert!(before >= MIN_RECALL && after >= MIN_RECALL, "{before} {after}");
    // The replaced vectors survived compaction.
    assert_eq!(index.search(&kept[0].1, 1, None).unwrap()[0].score, 1.0);
    let mut live: Vec<u64> = index.live_vectors().map(|(id, _)| id).collect();
    live.sort();
    let mut want: Vec<u64> = kept.iter().map(|(id, _)| *id).collect();
    want.sort();
    assert_eq!(live, want);
}

#[test]
fn save_then_load_gives_the_same_index_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap"); // created by save
    let data = dataset();
    let params = HnswParams { max_nb_connection: 12, ..params() };
    let mut index = HnswIndex::rebuild(DIM, params.clone(), data.iter().cloned()).unwrap();
    for (id, _) in &data[..50] {
        index.remove(*id);
    }
    index.save(&snap, "generation=42 ✓").unwrap();
    // Saving again replaces the snapshot (and leaves no temporary file behind).
    index.save(&snap, "generation=43 ✓").unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&snap).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, vec!["hnsw.snapshot".to_string()]);

    let (loaded, meta) = HnswIndex::load(&snap).unwrap();
    assert_eq!(meta, "generation=43 ✓");
    assert_eq!(loaded.params(), &params);
    assert_eq!(loaded.dim(), DIM);
    assert_eq!(loaded.len(), 4950);
    assert_eq!(loaded.tombstones(), 50, "tombstones are saved with the graph");
    assert!(!loaded.contains(data[0].0) && loaded.contains(data[50].0));

    // The same vectors, bit for bit.
    let bits = |index: &HnswIndex| -> Vec<(u64, Vec<u32>)> {
        let mut v: Vec<(u64, Vec<u32>)> =
            index.live_vectors().map(|(id, v)| (id, v.iter().map(|x| x.to_bits()).collect())).collect();
        v.sort();
        v
    };
    assert!(bits(&index) == bits(&loaded));

    // The graph is read, not rebuilt: every search answers exactly as before, filtered or not.
    let some = |id: u64| !id.is_multiple_of(7);
    for q in queries() {
        assert_eq!(index.search(&q, 10, None).unwrap(), loaded.search(&q, 10, None).unwrap());
        assert_eq!(index.search(&q, 5, Some(&some)).unwrap(), loaded.search(&q, 5, Some(&some)).unwrap());
    }
    let exact = exact_of(&data[50..]);
    assert!(recall(&loaded, &exact, None) >= MIN_RECALL);

    // A loaded index takes inserts, removals and another save like a built one.
    let mut loaded = loaded;
    loaded.insert(1, &data[0].1).unwrap();
    assert!(loaded.remove(data[60].0));
    assert_eq!(loaded.search(&data[0].1, 1, None).unwrap()[0].id, 1);
    loaded.save(&snap, "again").unwrap();
    let (again, _) = HnswIndex::load(&snap).unwrap();
    assert_eq!((again.len(), again.tombstones()), (4950, 51));
    assert_eq!(again.search(&data[0].1, 1, None).unwrap()[0].id, 1);

    // An empty index round-trips too.
    let empty = HnswIndex::new(8, HnswParams::default());
    empty.save(&dir.path().join("empty"), "").unwrap();
    let (e, meta) = HnswIndex::load(&dir.path().join("empty")).unwrap();
    assert!(e.is_empty() && e.dim() == 8 && meta.is_empty());
}

#[test]
fn corrupt_or_missing_snapshots_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<(u64, Vec<f32>)> = dataset().into_iter().take(300).collect();
    let index = HnswIndex::rebuild(DIM, params(), data).unwrap();
    index.save(dir.path(), "meta").unwrap();
    let file = dir.path().join("hnsw.snapshot");
    let good = std::fs::read(&file).unwrap();
    assert!(HnswIndex::load(dir.path()).is_ok());

    let expect_snapshot_error = |bytes: &[u8], what: &str| {
        std::fs::write(&file, bytes).unwrap();
        match HnswIndex::load(dir.path()) {
            Err(IndexError::Snapshot(msg)) => println!("{what}: {msg}"),
            Err(e) => panic!("{what}: wrong error {e:?}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    };
    expect_snapshot_error(&good[..good.len() - 1], "truncated by one byte");
    expect_snapshot_error(&good[..good.len() / 2], "truncated in half");
    expect_snapshot_error(&good[..20], "truncated in the header");
    expect_snapshot_error(&[], "empty file");
    let mut extra = good.clone();
    extra.push(0);
    expect_snapshot_error(&extra, "trailing byte");
    // Header 60 bytes (meta "meta"), slot count and entry point 16, then 300 nodes of 10 bytes, then
    // the vectors, then 300 layer-0 link lists of 2M + 1 = 33 words.
    let nodes = 60 + 16;
    let vectors = nodes + 300 * 10;
    let layer0 = vectors + 300 * DIM * 4;
    // A flipped low mantissa bit keeps the vector unit-length: only the checksum catches it.
    let mut flipped = good.clone();
    flipped[vectors] ^= 1;
    expect_snapshot_error(&flipped, "bit flip in a vector");
    let mut id_flip = good.clone();
    id_flip[nodes] ^= 0x80;
    expect_snapshot_error(&id_flip, "bit flip in an id");
    let mut magic = good.clone();
    magic[0] = b'X';
    expect_snapshot_error(&magic, "bad magic");
    let mut version = good.clone();
    version[8] = 1;
    expect_snapshot_error(&version, "version 1 (vectors only)");
    let mut crc = good.clone();
    *crc.last_mut().unwrap() ^= 0xff;
    expect_snapshot_error(&crc, "bad checksum");

    // With the checksum made to match, the structural checks still refuse what would make a
    // search index out of bounds or compute NaN distances.
    let resealed = |mut bytes: Vec<u8>| {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    assert!(resealed(good.clone()) == good);
    let word = |bytes: &mut Vec<u8>, at: usize, value: u32| bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let mut nan = good.clone();
    word(&mut nan, vectors, f32::NAN.to_bits());
    expect_snapshot_error(&resealed(nan), "NaN in a vector, checksum matching");
    let mut far = good.clone();
    word(&mut far, layer0 + 4, 300); // slot 0's first link: one past the last slot
    expect_snapshot_error(&resealed(far), "link out of range, checksum matching");
    let mut own = good.clone();
    word(&mut own, layer0 + 4, 0); // slot 0 linked to itself
    expect_snapshot_error(&resealed(own), "self link, checksum matching");
    let mut many = good.clone();
    word(&mut many, layer0, 33); // a count past the list's 32 words
    expect_snapshot_error(&resealed(many), "link count too large, checksum matching");
    let mut entry = good.clone();
    entry[nodes - 8..nodes].copy_from_slice(&300u64.to_le_bytes());
    expect_snapshot_error(&resealed(entry), "entry point out of range, checksum matching");
    let mut twice = good.clone();
    let second = twice[nodes..nodes + 8].to_vec();
    twice[nodes + 10..nodes + 18].copy_from_slice(&second); // slot 1 takes slot 0's id
    expect_snapshot_error(&resealed(twice), "an id live twice, checksum matching");

    std::fs::remove_file(&file).unwrap();
    match HnswIndex::load(dir.path()) {
        Err(IndexError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("missing snapshot: {other:?}"),
    }
}

#[test]
fn params_are_clamped_to_what_the_graph_accepts() {
    let p = HnswParams { max_nb_connection: 1000, max_layer: 40, ef_search: 0, ..HnswParams::default() };
    let mut index = HnswIndex::new(4, p);
    assert_eq!(index.params().max_nb_connection, 255);
    assert_eq!(index.params().max_layer, 16);
    assert_eq!(index.params().ef_search, 1);
    index.insert(1, &[1.0, 0.0, 0.0, 0.0]).unwrap();
    index.insert(2, &[0.0, 1.0, 0.0, 0.0]).unwrap();
    assert_eq!(ids(&index.search(&[1.0, 0.1, 0.0, 0.0], 2, None).unwrap()), vec![1, 2]);
}

/// A small graph built in one parallel batch must still reach every point: with fewer live points
/// than `ef`, a search for `k = len` returns all of them. Races it guards: two first points of an empty
/// graph (hnsw_rs, used before, once left one unlinked and lost an image of a 4-image catalog); a
/// point linked through a node that is still being inserted, whose own links would overwrite the
/// only link to it (this test caught that one in our graph). Half the rounds hold near-duplicates.
#[test]
fn small_parallel_rebuilds_reach_every_point() {
    for round in 0..600u64 {
        let n = 2 + (round % 12) as usize;
        // Half the rounds hold near-duplicates (re-encoded copies of one photo embed like this).
        let noise = if round % 2 == 0 { 1.0 } else { 0.01 };
        let data: Vec<(u64, Vec<f32>)> =
            clustered(n, DIM, 2, noise, 100 + round).into_iter().enumerate().map(|(i, v)| (i as u64, v)).collect();
        let index = HnswIndex::rebuild(DIM, HnswParams::default(), data.iter().cloned()).unwrap();
        for (_, q) in &data {
            let found = index.search(q, n, None).unwrap();
            assert_eq!(found.len(), n, "round {round}: {n} points, search found {:?}", ids(&found));
        }
    }
}
