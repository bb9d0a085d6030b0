//! Long work as jobs: batch URL ingest with per-URL errors, index rebuilds.

use serde_json::json;

use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::{FileServer, synthetic_png};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_batch_runs_as_a_job_and_reports_each_failure() {
    let files = FileServer::start();
    let app = TestApp::with(|s| s.fetch.allow_private_urls = Some(true)).await;
    let urls = [files.url("/img/chelsea_palette.png"), files.url("/img/coins_grey.jpg"), files.url("/missing.png")];
    let (status, job) = app.post_json("/v1/ingest", &json!({"urls": urls, "tags": ["batch"]})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!((job["kind"].as_str(), job["total"].as_u64()), (Some("ingest"), Some(3)));
    let job = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!(
        (job["state"].as_str(), job["done"].as_u64(), job["failed"].as_u64()),
        (Some("succeeded"), Some(2), Some(1)),
        "{job}"
    );
    assert_eq!(job["result"]["errors"][0]["code"], "fetch_failed");
    assert_eq!(job["result"]["errors"][0]["url"], urls[2].as_str());
    assert_eq!(job["result"]["images"].as_array().unwrap().len(), 2);
    let (_, listed) = app.get("/v1/images?tag=batch").await;
    assert_eq!(listed["images"].as_array().unwrap().len(), 2);
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["id"], job["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_where_every_url_fails_is_a_failed_job() {
    let files = FileServer::start();
    let app = TestApp::with(|s| s.fetch.allow_private_urls = Some(true)).await;
    let (_, job) = app.post_json("/v1/ingest", &json!({"urls": [files.url("/missing.png")]})).await;
    let job = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!((job["state"].as_str(), job["error"].as_str()), (Some("failed"), Some("all 1 URLs failed")), "{job}");
    assert_error(
        &app.post_json("/v1/ingest", &json!({"urls": ["http://a/"], "tags": ["\u{7}"]})).await,
        400,
        "invalid_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_job_rebuilds_the_index_from_the_catalog() {
    let app = TestApp::start().await;
    for seed in 0..4 {
        app.upload_one("s.png", synthetic_png(seed)).await;
    }
    let (_, before) = app.post_json("/v1/search", &json!({"text": "a cat", "k": 10})).await;
    let (status, job) = app.post_json("/v1/index/rebuild", &json!({})).await;
    assert_eq!(status, 202, "{job}");
    let job = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("index_rebuild"), Some("succeeded")), "{job}");
    assert_eq!(job["result"]["vectors"], 4);
    let (_, after) = app.post_json("/v1/search", &json!({"text": "a cat", "k": 10})).await;
    assert_eq!(crate::api::ids(&after), crate::api::ids(&before));
}

/// Snapshots keep the graph's tombstones, so deletes would pile up across restarts: once they pass a
/// fifth of the live vectors, the periodic snapshot queues a rebuild that drops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_past_a_fifth_of_the_index_queue_a_rebuild_that_drops_their_tombstones() {
    let app = TestApp::with(|s| {
        s.index.kind = Some(lens::config::IndexKind::Hnsw);
        s.index.snapshot_interval_s = Some(1);
    })
    .await;
    let mut ids = Vec::new();
    for seed in 0..6 {
        ids.push(app.upload_one("s.png", synthetic_png(seed)).await);
    }
    let index = &app.lens.ready().unwrap().index;
    assert_eq!(app.delete(&format!("/v1/images/{}", ids[0])).await, 204);
    // 1 tombstone for 5 live vectors: not past a fifth, nothing is queued however many ticks pass.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(index.tombstones(), 1);
    let (_, none) = app.get("/v1/jobs?kind=index_rebuild").await;
    assert!(none["jobs"].as_array().unwrap().is_empty(), "{none}");
    assert_eq!(app.delete(&format!("/v1/images/{}", ids[1])).await, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, done) = app.get("/v1/jobs?kind=index_rebuild&state=succeeded").await;
        if index.tombstones() == 0 && done["jobs"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebuild: {} tombstones, {done}", index.tombstones());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, found) = app.post_json("/v1/search", &json!({"text": "a cat", "k": 10})).await;
    let mut found = crate::api::ids(&found);
    found.sort();
    let mut kept = ids[2..].to_vec();
    kept.sort();
    assert_eq!(found, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_by_kind_and_state() {
    let app = TestApp::start().await;
    let (_, job) = app.post_json("/v1/index/rebuild", &json!({})).await;
    app.wait_job(job["id"].as_str().unwrap()).await;
    let (_, rebuilds) = app.get("/v1/jobs?kind=index_rebuild&state=succeeded").await;
    assert_eq!(rebuilds["jobs"].as_array().unwrap().len(), 1);
    let (_, none) = app.get("/v1/jobs?kind=caption").await;
    assert!(none["jobs"].as_array().unwrap().is_empty());
    assert_error(&app.get("/v1/jobs?state=zombie").await, 400, "invalid_request");
    assert_error(&app.get("/v1/jobs?colour=red").await, 400, "invalid_request");
}
