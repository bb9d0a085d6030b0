//! LocalBlobStore on a real directory.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use lens_store::{BlobStore, LocalBlobStore, StoreError};
use sha2::{Digest, Sha256};

/// Every file under `root`, as paths relative to it.
fn all_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test]
async fn put_get_exists_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(&dir.path().join("blobs")).unwrap();
    let data = Bytes::from_static(b"\x89PNG not really");
    let key = hex::encode(Sha256::digest(&data));

    assert!(!store.exists(&key).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none());
    store.put(&key, data.clone(), "image/png").await.unwrap();
    assert!(store.exists(&key).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap().unwrap(), data);
    // Layout dir/ab/cd/<key>, nothing else (no temp file left behind).
    let blobs = store.dir().to_path_buf();
    assert_eq!(all_files(&blobs), vec![format!("{}/{}/{key}", &key[..2], &key[2..4])]);

    // Overwrite is fine.
    store.put(&key, data.clone(), "image/png").await.unwrap();
    assert_eq!(all_files(&blobs).len(), 1);

    assert_eq!(store.presigned_get(&key, Duration::from_secs(60)).await.unwrap(), None);
    assert!(store.describe().starts_with("local:/"), "{}", store.describe());

    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());
    store.delete(&key).await.unwrap(); // idempotent
    assert!(all_files(&blobs).is_empty());
}

#[tokio::test]
async fn bad_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    for key in
        ["", "abc", "../../etc/passwd", "..abcd", ".hidden", "ab/cdef", "ab\\cdef", "abcd\0", "abcdé", &"a".repeat(201)]
    {
        let err = store.put(key, Bytes::from_static(b"x"), "text/plain").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{key:?}: {err:?}");
        assert!(matches!(store.get(key).await, Err(StoreError::InvalidInput(_))), "{key:?}");
        assert!(matches!(store.exists(key).await, Err(StoreError::InvalidInput(_))), "{key:?}");
        assert!(matches!(store.delete(key).await, Err(StoreError::InvalidInput(_))), "{key:?}");
    }
    assert!(all_files(dir.path()).is_empty());
    store.put("abcd.thumb_1-x", Bytes::from_static(b"ok"), "text/plain").await.unwrap();
}

#[tokio::test]
async fn open_removes_leftover_temp_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let key = "0123456789abcdef";
    store.put(key, Bytes::from_static(b"kept"), "text/plain").await.unwrap();
    // What a crash between create and rename leaves.
    let leaf = dir.path().join("01/23");
    std::fs::write(leaf.join(format!(".{key}.tmp-00000000deadbeef")), b"partial").unwrap();
    assert_eq!(all_files(dir.path()).len(), 2);

    let store = LocalBlobStore::open(dir.path()).unwrap();
    assert_eq!(all_files(dir.path()), vec![format!("01/23/{key}")]);
    assert_eq!(store.get(key).await.unwrap().unwrap(), Bytes::from_static(b"kept"));
}

#[tokio::test]
async fn many_concurrent_puts_of_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(LocalBlobStore::open(dir.path()).unwrap());
    let data = Bytes::from(vec![7u8; 100_000]);
    let key = hex::encode(Sha256::digest(&data));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, data, key) = (store.clone(), data.clone(), key.clone());
            tokio::spawn(async move { store.put(&key, data, "application/octet-stream").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.get(&key).await.unwrap().unwrap(), data);
    assert_eq!(all_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn list_walks_the_keys_in_order_and_skips_what_is_not_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = LocalBlobStore::open(&root).unwrap();
    // Not blobs: a temp file of an interrupted put, a file in the wrong fan-out directory, a stray name.
    std::fs::create_dir_all(root.join("ab/cd")).unwrap();
    std::fs::write(root.join("ab/cd/.abcd0009.tmp-0123456789abcdef"), b"x").unwrap();
    std::fs::write(root.join("ab/cd/ffff0001"), b"x").unwrap();
    std::fs::write(root.join("ab/cd/abcd 0003"), b"x").unwrap();
    std::fs::write(root.join("README"), b"x").unwrap();
    crate::common::check_listing(&store).await;
}
