//! Helpers shared by the catalog integration tests (`catalog_*.rs`).

use lens_store::NewImage;
use sha2::{Digest, Sha256};

pub const MODEL: &str = "clip-vit-base-patch32";

pub fn new_image(seed: &str, tags: &[&str]) -> NewImage {
    NewImage {
        sha256: hex::encode(Sha256::digest(seed.as_bytes())),
        mime: "image/png".into(),
        width: 640,
        height: 480,
        bytes: 1234,
        source_url: Some(format!("https://example.com/{seed}.png")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

pub fn vector(seed: f32, dim: usize) -> Vec<f32> {
    (0..dim).map(|i| seed + i as f32 * 0.25).collect()
}

/// Puts 23 blobs (keys spread over fan-out directories, some sharing them) and checks that
/// [`lens_store::BlobStore::list`] walks them in key order, page by page, from any `after`, with recent
/// modification times. Both stores run it.
pub async fn check_listing(store: &dyn lens_store::BlobStore) {
    use std::time::{Duration, SystemTime};
    let mut keys: Vec<String> = (0..20).map(|i| hex::encode(Sha256::digest(format!("blob {i}")))).collect();
    // Same first four characters: the same fan-out directory.
    keys.extend(["abcd0001", "abcd0002", "abce0001"].map(String::from));
    for key in &keys {
        store.put(key, bytes::Bytes::from(key.clone()), "image/png").await.unwrap();
    }
    keys.sort();
    let started = SystemTime::now() - Duration::from_secs(60);
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list(after.as_deref(), 4).await.unwrap();
        assert!(page.blobs.len() <= 4);
        pages += 1;
        for blob in &page.blobs {
            assert!(blob.modified >= started, "{blob:?}");
            listed.push(blob.key.clone());
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, keys);
    assert!(pages >= 6, "{pages} pages of 4");
    let from_middle = store.list(Some(&keys[10]), 100).await.unwrap();
    assert_eq!(from_middle.blobs.iter().map(|b| &b.key).collect::<Vec<_>>(), keys[11..].iter().collect::<Vec<_>>());
    assert_eq!(from_middle.next, None);
    let past_the_end = store.list(Some("ffffffff"), 10).await.unwrap();
    assert!(past_the_end.blobs.is_empty() && past_the_end.next.is_none());
    store.delete(&keys[0]).await.unwrap();
    assert_eq!(store.list(None, 1).await.unwrap().blobs[0].key, keys[1]);
}
