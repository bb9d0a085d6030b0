//! Stored embeddings: streaming them for an index rebuild, and corrupt rows.

use lens_store::{Catalog, StoreError};

use crate::common::{MODEL, new_image, vector};

#[test]
fn for_each_embedding_streams_in_key_order_across_chunks() {
    let catalog = Catalog::open_in_memory().unwrap();
    let n = 2500; // more than two of its 1024-row chunks
    let mut keys = Vec::new();
    for i in 0..n {
        let (rec, _) = catalog.insert_image(&new_image(&format!("e{i}"), &[]), MODEL, &vector(i as f32, 16)).unwrap();
        keys.push(rec.key);
        if i % 2 == 0 {
            catalog.insert_image(&new_image(&format!("e{i}"), &[]), "half", &vector(-(i as f32), 2)).unwrap();
        }
    }
    let mut seen = Vec::new();
    let count = catalog
        .for_each_embedding(MODEL, &mut |key, v| {
            assert_eq!(v.len(), 16);
            seen.push((key, v[0]));
        })
        .unwrap();
    assert_eq!(count, n as u64);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), keys);
    assert!(seen.iter().enumerate().all(|(i, s)| s.1 == i as f32));
    assert_eq!(catalog.count_embeddings(MODEL).unwrap(), n as u64);

    // The callback may use the catalog (the lock is not held while it runs).
    let mut half = 0;
    let count = catalog
        .for_each_embedding("half", &mut |key, v| {
            assert_eq!(v.len(), 2);
            assert!(catalog.embedding(key, MODEL).unwrap().is_some());
            half += 1;
        })
        .unwrap();
    assert_eq!((count, half), (1250, 1250));
    assert_eq!(catalog.for_each_embedding("none", &mut |_, _| panic!()).unwrap(), 0);
}

#[test]
fn corrupt_embedding_length_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let catalog = Catalog::open(&path).unwrap();
    let (rec, _) = catalog.insert_image(&new_image("c", &[]), MODEL, &vector(1.0, 8)).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE embeddings SET vector = zeroblob(30) WHERE image_key = ?1", [rec.key])
        .unwrap();
    let err = catalog.embedding(rec.key, MODEL).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("30 bytes, expected dim 8"), "{err}");
    let err = catalog.for_each_embedding(MODEL, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}
