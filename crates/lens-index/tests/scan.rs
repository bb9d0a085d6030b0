//! Behaviour every index shares, and the accuracy of the exact and int8 scans.

use crate::common::{brute_force, clustered, overlap};
use lens_index::{ExactIndex, Hit, IndexError, Int8Index, VectorIndex};

/// Every index, empty, of dimension `dim`.
fn all_indexes(dim: usize) -> Vec<(&'static str, Box<dyn VectorIndex>)> {
    let mut v: Vec<(&'static str, Box<dyn VectorIndex>)> =
        vec![("exact", Box::new(ExactIndex::new(dim))), ("int8", Box::new(Int8Index::new(dim)))];
    #[cfg(not(target_arch = "wasm32"))]
    v.push(("hnsw", Box::new(lens_index::HnswIndex::new(dim, lens_index::HnswParams::default()))));
    v
}

fn ids(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

#[test]
fn exact_returns_the_true_neighbours_with_cosine_scores() {
    let dim = 48;
    let data: Vec<(u64, Vec<f32>)> =
        clustered(2000, dim, 20, 1.0, 1).into_iter().enumerate().map(|(i, v)| (i as u64 * 7 + 3, v)).collect();
    let mut index = ExactIndex::new(dim);
    for (id, v) in &data {
        // Scaled: the index normalises.
        let scaled: Vec<f32> = v.iter().map(|x| x * 3.5).collect();
        index.insert(*id, &scaled).unwrap();
    }
    for q in clustered(20, dim, 20, 1.0, 2) {
        let hits = index.search(&q, 10, None).unwrap();
        assert_eq!(ids(&hits), brute_force(&data, &q, 10));
        for h in &hits {
            let v = &data.iter().find(|(id, _)| *id == h.id).unwrap().1;
            let cos: f32 = v.iter().zip(&q).map(|(a, b)| a * b).sum();
            assert!((h.score - cos).abs() < 1e-5, "{} vs {cos}", h.score);
        }
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // A tiny case by hand: the query itself scores 1, its opposite -1.
    let mut small = ExactIndex::new(2);
    small.insert(1, &[1.0, 0.0]).unwrap();
    small.insert(2, &[0.0, 2.0]).unwrap();
    small.insert(3, &[-1.0, 0.0]).unwrap();
    let hits = small.search(&[5.0, 0.0], 3, None).unwrap();
    assert_eq!(hits, vec![Hit { id: 1, score: 1.0 }, Hit { id: 2, score: 0.0 }, Hit { id: 3, score: -1.0 }]);
}

#[test]
fn insert_replace_remove_and_filter_work_the_same_for_every_index() {
    let dim = 16;
    let data = clustered(300, dim, 5, 0.5, 3);
    for (name, mut index) in all_indexes(dim) {
        assert!(index.is_empty() && index.dim() == dim, "{name}");
        assert!(index.search(&data[0], 5, None).unwrap().is_empty(), "{name}: empty index");
        for (i, v) in data.iter().enumerate() {
            index.insert(i as u64, v).unwrap();
        }
        assert_eq!(index.len(), 300, "{name}");
        assert!(index.contains(42) && !index.contains(300), "{name}");

        // The stored vector of an id is its best match.
        let top = index.search(&data[42], 1, None).unwrap();
        assert_eq!(top[0].id, 42, "{name}");
        assert!(top[0].score > 0.99, "{name}: {}", top[0].score);

        // Replacing: id 42 now holds 7's vector, so a search for 42's old vector no longer finds it
        // first, and 7's vector finds both 7 and 42 at score ~1.
        index.insert(42, &data[7]).unwrap();
        assert_eq!(index.len(), 300, "{name}: replacing keeps the count");
        let hits = index.search(&data[7], 2, None).unwrap();
        let mut got = ids(&hits);
        got.sort();
        assert_eq!(got, vec![7, 42], "{name}");
        assert!(hits.iter().all(|h| h.score > 0.99), "{name}: {hits:?}");

        // Removing.
        assert!(index.remove(7), "{name}");
        assert!(!index.remove(7), "{name}: already gone");
        assert!(!index.remove(1000), "{name}: never there");
        assert_eq!(index.len(), 299, "{name}");
        assert!(!index.contains(7), "{name}");
        let hits = index.search(&data[7], 300, None).unwrap();
        assert!(!ids(&hits).contains(&7), "{name}: a removed id is never returned");
        assert_eq!(hits[0].id, 42, "{name}");

        // Filter: only even ids, best first, at most k.
        let even = |id: u64| id.is_multiple_of(2);
        let hits = index.search(&data[11], 10, Some(&even)).unwrap();
        assert_eq!(hits.len(), 10, "{name}");
        assert!(hits.iter().all(|h| h.id % 2 == 0), "{name}: {hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{name}");
        let none = |_: u64| false;
        assert!(index.search(&data[11], 10, Some(&none)).unwrap().is_empty(), "{name}");
        let only = |id: u64| id == 250;
        assert_eq!(ids(&index.search(&data[11], 10, Some(&only)).unwrap()), vec![250], "{name}");

        // k larger than the index, and k = 0.
        assert!(index.search(&data[0], 1000, None).unwrap().len() <= 299, "{name}");
        assert!(index.search(&data[0], 0, None).unwrap().is_empty(), "{name}");

        // Re-inserting a removed id brings it back.
        index.insert(7, &data[7]).unwrap();
        assert!(index.contains(7) && index.len() == 300, "{name}");

        // Remove everything.
        for i in 0..300 {
            assert!(index.remove(i), "{name}: {i}");
        }
        assert!(index.is_empty(), "{name}");
        assert!(index.search(&data[0], 5, None).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn bad_vectors_are_errors_and_change_nothing() {
    for (name, mut index) in all_indexes(4) {
        index.insert(1, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        let err = index.insert(2, &[1.0, 2.0, 3.0]).unwrap_err();
        assert!(matches!(err, IndexError::DimensionMismatch { expected: 4, got: 3 }), "{name}: {err}");
        assert_eq!(err.to_string(), "vector has 3 dimensions, the index has 4");
        assert!(matches!(index.insert(2, &[1.0, f32::NAN, 0.0, 0.0]), Err(IndexError::NotFinite)), "{name}");
        assert!(matches!(index.insert(2, &[1.0, f32::INFINITY, 0.0, 0.0]), Err(IndexError::NotFinite)), "{name}");
        assert!(matches!(index.insert(2, &[0.0; 4]), Err(IndexError::ZeroVector)), "{name}");
        assert!(matches!(index.insert(1, &[f32::NAN; 4]), Err(IndexError::NotFinite)), "{name}: replace");
        assert_eq!(index.len(), 1, "{name}");
        assert!(!index.contains(2), "{name}");

        assert!(matches!(index.search(&[1.0; 5], 1, None), Err(IndexError::DimensionMismatch { .. })), "{name}");
        assert!(matches!(index.search(&[f32::NAN; 4], 1, None), Err(IndexError::NotFinite)), "{name}");
        assert!(matches!(index.search(&[0.0; 4], 1, None), Err(IndexError::ZeroVector)), "{name}");
        // Bad queries fail even when k is 0.
        assert!(index.search(&[0.0; 4], 0, None).is_err(), "{name}");
        // The failed replace left id 1's vector alone.
        let hits = index.search(&[1.0, 0.0, 0.0, 0.0], 1, None).unwrap();
        assert_eq!(hits[0].id, 1, "{name}");
        assert!(hits[0].score > 0.999, "{name}");
    }
}

#[test]
fn int8_keeps_nine_of_the_exact_top_ten_on_average() {
    let dim = 128;
    let data = clustered(5000, dim, 50, 1.0, 4);
    let mut exact = ExactIndex::new(dim);
    let mut int8 = Int8Index::new(dim);
    for (i, v) in data.iter().enumerate() {
        exact.insert(i as u64, v).unwrap();
        int8.insert(i as u64, v).unwrap();
    }
    let queries = clustered(200, dim, 50, 1.0, 5);
    let mut total = 0;
    let mut max_err = 0.0f32;
    for q in &queries {
        let e = exact.search(q, 10, None).unwrap();
        let a = int8.search(q, 10, None).unwrap();
        total += overlap(&ids(&e), &ids(&a));
        for h in &a {
            let true_score = exact
                .get(h.id)
                .unwrap()
                .iter()
                .zip(&crate::common::normalized(q.clone()))
                .map(|(x, y)| x * y)
                .sum::<f32>();
            max_err = max_err.max((h.score - true_score).abs());
        }
    }
    let mean = total as f64 / queries.len() as f64;
    println!("int8 top-10 overlap {mean:.3}/10, max score error {max_err:.2e}");
    assert!(mean >= 9.0, "mean overlap {mean}");
    assert!(max_err < 0.01, "max score error {max_err}");
}

#[test]
fn an_encoded_int8_index_decodes_to_the_same_scores() {
    let dim = 32;
    let mut index = Int8Index::new(dim);
    for (i, v) in clustered(300, dim, 5, 1.0, 7).into_iter().enumerate() {
        index.insert(i as u64 * 11 + 1, &v).unwrap();
    }
    index.remove(12);
    let bytes = index.encode();
    let back = Int8Index::decode(&bytes).unwrap();
    assert_eq!((back.len(), back.dim()), (index.len(), dim));
    assert_eq!(back.encode(), bytes);
    for q in clustered(5, dim, 5, 1.0, 8) {
        assert_eq!(back.search(&q, 10, None).unwrap(), index.search(&q, 10, None).unwrap());
    }
    assert!(Int8Index::decode(&Int8Index::new(4).encode()).unwrap().is_empty());

    // Truncated, padded, foreign or inconsistent bytes are refused, never read past.
    let refused = |b: &[u8]| matches!(Int8Index::decode(b), Err(IndexError::Snapshot(_)));
    assert!(refused(&bytes[..bytes.len() - 1]));
    assert!(refused(&[bytes.as_slice(), &[0]].concat()));
    assert!(refused(b"not an index"));
    let mut huge = bytes.clone();
    huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(refused(&huge));
    let mut twice = bytes.clone();
    let first_id = twice[20..28].to_vec();
    twice[28..36].copy_from_slice(&first_id);
    assert!(refused(&twice));
}
