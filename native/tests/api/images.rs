//! Ingest (one file, the same bytes again, several files, a URL), list, one image, its bytes, delete.

use std::collections::HashSet;

use serde_json::json;

use crate::common::app::TestApp;
use crate::common::files::{FileServer, image_bytes, synthetic_png};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_stored_with_its_hash_id_size_and_tags() {
    let app = TestApp::start().await;
    let astronaut = image_bytes("astronaut.png");
    let (status, a) = app.upload("/v1/images", &[("astronaut.png", astronaut.clone())], Some("space, people")).await;
    assert_eq!(status, 201, "{a}");
    let sha = lens_core::ids::sha256_hex(&astronaut);
    assert_eq!(a["sha256"], sha);
    assert_eq!(a["id"], &sha[..32]);
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64(), a["mime"].as_str()),
        (Some(512), Some(512), Some("image/png"))
    );
    assert_eq!(a["tags"], json!(["space", "people"]));
    assert_eq!(a["url"], format!("/v1/images/{}/blob", &sha[..32]));
    assert!(a["colors"].as_array().is_some_and(|c| !c.is_empty()), "{a}");
    assert_eq!(a["metadata"]["format"], "png");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_again_are_the_same_image() {
    let app = TestApp::start().await;
    let first = app.upload_one("a.png", synthetic_png(1)).await;
    let (status, again) = app.upload("/v1/images", &[("copy.png", synthetic_png(1))], None).await;
    assert_eq!(status, 200, "same bytes: the existing record");
    assert_eq!(again["id"], first.as_str());
    assert_eq!(app.get("/v1/images").await.1["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_in_one_request_are_stored_in_order() {
    let app = TestApp::start().await;
    let names = ["coffee.jpg", "rocket.jpg", "chelsea_rgba.png"];
    let parts: Vec<(&str, Vec<u8>)> = names.iter().map(|n| (*n, image_bytes(n))).collect();
    let (status, many) = app.upload("/v1/images", &parts, Some("batch")).await;
    assert_eq!(status, 201, "{many}");
    let images = many["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (image, name) in images.iter().zip(names) {
        assert_eq!(image["sha256"], lens_core::ids::sha256_hex(&image_bytes(name)));
        assert_eq!(image["tags"], json!(["batch"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_is_fetched_through_redirects_and_stored_with_its_source() {
    let files = FileServer::start();
    let app = TestApp::with(|s| s.fetch.allow_private_urls = Some(true)).await;
    let url = files.url("/redirect/2/camera_grey.png");
    let (status, image) = app.post_json("/v1/images", &json!({"url": url, "tags": ["grey"]})).await;
    assert_eq!(status, 201, "{image}");
    assert_eq!(image["source_url"], url);
    assert_eq!(image["mime"], "image/png");
    assert_eq!(image["tags"], json!(["grey"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_newest_first_paged_and_filtered_by_tag() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for seed in 0..5 {
        let tags = if seed % 2 == 0 { Some("even") } else { None };
        let (status, image) = app.upload("/v1/images", &[("x.png", synthetic_png(seed))], tags).await;
        assert_eq!(status, 201);
        ids.push(image["id"].as_str().unwrap().to_string());
    }
    let (status, page1) = app.get("/v1/images?limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(page1["total"], 5);
    let cursor = page1["next_cursor"].as_str().expect("a next page").to_string();
    let (_, page2) = app.get(&format!("/v1/images?limit=3&cursor={cursor}")).await;
    assert!(page2["next_cursor"].is_null());
    let listed: Vec<String> = page1["images"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["images"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed[0], ids[4], "newest first");
    assert_eq!(listed.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
    let (_, even) = app.get("/v1/images?tag=even").await;
    assert_eq!(even["images"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_image_and_its_bytes() {
    let app = TestApp::start().await;
    let id = app.upload_one("coffee.jpg", image_bytes("coffee.jpg")).await;
    let (status, got) = app.get(&format!("/v1/images/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["sha256"], lens_core::ids::sha256_hex(&image_bytes("coffee.jpg")));
    let blob = app.get_raw(&format!("/v1/images/{id}/blob")).await;
    assert_eq!(blob.status, 200);
    assert_eq!(blob.headers["content-type"], "image/jpeg");
    assert_eq!(blob.headers["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(blob.body.as_ref(), image_bytes("coffee.jpg").as_slice());
    let tag = blob.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(tag, format!("\"{}\"", got["sha256"].as_str().unwrap()));

    // A client holding the bytes gets 304; HEAD answers from the catalog. Neither reads the blob: with the
    // file gone, they still answer while GET reports the damage.
    fn blob_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find_map(|p| if p.is_dir() { blob_file(&p) } else { Some(p) })
    }
    std::fs::remove_file(blob_file(&app.data().join("blobs")).expect("the blob's file")).unwrap();
    let request = |method: &str, etag: Option<&str>| {
        let mut r = axum::http::Request::builder().method(method).uri(format!("/v1/images/{id}/blob"));
        if let Some(etag) = etag {
            r = r.header("if-none-match", etag);
        }
        r.body(axum::body::Body::empty()).unwrap()
    };
    let cached = app.send(request("GET", Some(&format!("W/{tag}, \"other\"")))).await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.headers["etag"], tag.as_str());
    assert!(cached.body.is_empty());
    let head = app.send(request("HEAD", None)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], image_bytes("coffee.jpg").len().to_string().as_str());
    assert_eq!(head.headers["content-type"], "image/jpeg");
    assert!(head.body.is_empty());
    assert_eq!(app.send(request("GET", Some("\"other\""))).await.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_row_the_blob_and_the_index_entry() {
    let app = TestApp::start().await;
    let keep = app.upload_one("a.png", synthetic_png(1)).await;
    let gone = app.upload_one("b.png", synthetic_png(2)).await;
    assert_eq!(app.delete(&format!("/v1/images/{gone}")).await, 204);
    assert_eq!(app.get(&format!("/v1/images/{gone}")).await.0, 404);
    assert_eq!(app.get_raw(&format!("/v1/images/{gone}/blob")).await.status, 404);
    assert_eq!(app.delete(&format!("/v1/images/{gone}")).await, 404);
    let (_, found) = app.post_json("/v1/search", &json!({"text": "anything", "k": 10})).await;
    assert_eq!(crate::api::ids(&found), [keep]);
    let mut blobs = Vec::new();
    crate::common::files::collect_files(&app.data().join("blobs"), &mut blobs);
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    // Deleted bytes can come back.
    let (status, _) = app.upload("/v1/images", &[("b.png", synthetic_png(2))], None).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_everything_and_loads_the_index_snapshot() {
    let app = TestApp::with(|s| s.index.kind = Some(lens::config::IndexKind::Hnsw)).await;
    let ids: Vec<String> =
        [app.upload_one("a.png", synthetic_png(1)).await, app.upload_one("b.png", synthetic_png(2)).await].into();
    let (_, before) = app.post_json("/v1/search", &json!({"text": "a cat", "k": 10})).await;
    let app = app.reopen(|_| {}).await;
    assert_eq!(
        app.lens.ready().unwrap().index_origin,
        lens::services::index::IndexOrigin::Snapshot { inserted: 0, removed: 0 }
    );
    let (_, after) = app.post_json("/v1/search", &json!({"text": "a cat", "k": 10})).await;
    assert_eq!(crate::api::ids(&after), crate::api::ids(&before));
    assert_eq!(crate::api::ids(&after).iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
}
