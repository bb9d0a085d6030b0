//! S3BlobStore against a real S3-compatible server (moto, from scripts/setup.sh) on 127.0.0.1.

use std::time::Duration;

use bytes::Bytes;
use lens_store::testing::MotoServer;
use lens_store::{BlobStore, S3BlobStore, StoreError};
use sha2::{Digest, Sha256};

async fn store(moto: &MotoServer, bucket: &str, prefix: &str) -> S3BlobStore {
    let mut cfg = moto.s3_config(bucket);
    cfg.prefix = prefix.to_string();
    assert!(S3BlobStore::create_bucket_if_missing(&cfg).await.unwrap());
    assert!(!S3BlobStore::create_bucket_if_missing(&cfg).await.unwrap());
    S3BlobStore::connect(cfg).await.unwrap()
}

/// GET through a plain HTTP client, as a browser would follow a presigned URL.
async fn fetch(url: String) -> (u16, Option<String>, Bytes) {
    tokio::task::spawn_blocking(move || {
        let response = reqwest::blocking::get(&url).unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        (status, content_type, response.bytes().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_exists_delete_and_presigned_url() {
    let moto = MotoServer::start();
    let store = store(&moto, "lens-blobs", "lens/").await;
    assert!(store.describe().starts_with("s3://lens-blobs/lens/ (endpoint http://127.0.0.1:"), "{}", store.describe());

    let data = Bytes::from((0..=255u8).cycle().take(300_000).collect::<Vec<u8>>());
    let key = hex::encode(Sha256::digest(&data));
    assert!(!store.exists(&key).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none(), "a missing key is Ok(None)");

    store.put(&key, data.clone(), "image/jpeg").await.unwrap();
    assert!(store.exists(&key).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap().unwrap(), data);
    store.put(&key, data.clone(), "image/jpeg").await.unwrap(); // overwrite

    // The prefix is part of the object key.
    let listed = store.client().list_objects_v2().bucket("lens-blobs").send().await.unwrap();
    let names: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(names, vec![format!("lens/{key}")]);

    let url = store.presigned_get(&key, Duration::from_secs(300)).await.unwrap().unwrap();
    assert!(url.starts_with(&format!("{}/lens-blobs/lens/{key}?", moto.endpoint)), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (status, content_type, body) = fetch(url).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(body, data);

    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none());
    store.delete(&key).await.unwrap(); // idempotent

    assert!(matches!(store.put("../x", Bytes::new(), "x").await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(
        store.presigned_get(&key, Duration::from_secs(8 * 24 * 3600)).await,
        Err(StoreError::InvalidInput(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_unreachable_endpoint_are_clear_errors() {
    let moto = MotoServer::start();
    let err = S3BlobStore::connect(moto.s3_config("no-such-bucket")).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bucket 'no-such-bucket' does not exist"), "{msg}");
    assert!(msg.contains(&moto.endpoint), "{msg}");

    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = moto.s3_config("lens-blobs");
    cfg.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
    let err = S3BlobStore::connect(cfg).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot reach the S3 endpoint"), "{msg}");

    let mut cfg = moto.s3_config("");
    cfg.bucket.clear();
    assert!(matches!(S3BlobStore::connect(cfg).await, Err(StoreError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_walks_the_keys_under_the_prefix_in_order() {
    let moto = MotoServer::start();
    let store = store(&moto, "lens-list", "lens/").await;
    // Outside the prefix, and not a key under it: skipped.
    for name in ["other/abcd0001", "lens/nested/abcd0001"] {
        store.client().put_object().bucket("lens-list").key(name).body(Vec::from("x").into()).send().await.unwrap();
    }
    crate::common::check_listing(&store).await;
}
