//! The browser-sync feed (`/v1/sync`), thumbnails, and CORS for the browser app.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;

use crate::api::{Reference, floats};
use crate::common::app::{TestApp, blip};
use crate::common::assert_error;
use crate::common::files::{image_bytes, synthetic_png};

async fn feed_page(app: &TestApp, since: Option<&str>, limit: usize) -> Value {
    let path = match since {
        Some(s) => format!("/v1/sync?since={s}&limit={limit}"),
        None => format!("/v1/sync?limit={limit}"),
    };
    let (status, page) = app.get(&path).await;
    assert_eq!(status, 200, "{page}");
    page
}

/// Every change after `since`, page by page: (changes, the last next_cursor).
async fn walk(app: &TestApp, since: Option<&str>, limit: usize) -> (Vec<Value>, String) {
    let mut changes = Vec::new();
    let mut cursor = since.map(str::to_string);
    loop {
        let page = feed_page(app, cursor.as_deref(), limit).await;
        changes.extend(page["changes"].as_array().unwrap().iter().cloned());
        let next = page["next_cursor"].as_str().unwrap().to_string();
        if !page["more"].as_bool().unwrap() {
            return (changes, next);
        }
        cursor = Some(next);
    }
}

fn by_id(changes: &[Value]) -> HashMap<String, Value> {
    changes
        .iter()
        .map(|c| {
            let id = c["image"]["id"].as_str().or(c["id"].as_str()).unwrap().to_string();
            (id, c.clone())
        })
        .collect()
}

/// Ingest, delete, a restart and captions, as the feed shows them; bad cursors and limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_ingest_deletes_restarts_and_captions() {
    // Caption jobs are queued but not run (no workers) until the restart that turns workers on.
    let settings = |workers: usize| {
        move |s: &mut lens::config::ServeSettings| {
            s.index.kind = Some(lens::config::IndexKind::Exact);
            s.captions.model = Some(blip());
            s.captions.workers = Some(workers);
        }
    };
    let app = TestApp::with(settings(0)).await;
    let (_, models) = app.get("/v1/models").await;
    let empty = feed_page(&app, None, 200).await;
    assert_eq!(empty["changes"], serde_json::json!([]));
    assert_eq!((empty["next_cursor"].as_str(), empty["more"].as_bool()), (Some("0"), Some(false)));
    assert_eq!(empty["model"]["id"], models["data"][0]["id"]);
    assert_eq!(empty["model"]["dims"], models["data"][0]["dims"]);

    let names = ["coffee.jpg", "rocket.jpg", "astronaut.png"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(app.upload_one(name, image_bytes(name)).await);
    }
    let reference = Reference::new();
    let (first, head) = walk(&app, None, 200).await;
    assert_eq!(first.len(), 3);
    let first_by_id = by_id(&first);
    for (id, name) in ids.iter().zip(names) {
        let image = &first_by_id[id]["image"];
        assert_eq!(first_by_id[id]["op"], "upsert");
        let (_, record) = app.get(&format!("/v1/images/{id}")).await;
        for field in ["sha256", "mime", "width", "height", "bytes", "tags", "caption"] {
            assert_eq!(image[field], record[field], "{name}: {field}");
        }
        assert!(image["created_at"].as_i64().unwrap() > 1_700_000_000_000, "ms since the epoch: {image}");
        assert_eq!(image["thumbnail_url"], format!("/v1/images/{id}/thumbnail"));
        let expected = reference.image(name);
        assert!(floats(&image["embedding"]).iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5), "{name}");
    }
    let order: Vec<&str> = first.iter().map(|c| c["image"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>(), "ingest order is feed order");
    let (after, cursor) = walk(&app, Some(&head), 10).await;
    assert!(after.is_empty() && cursor == head);
    let ahead = feed_page(&app, Some("999999999"), 10).await;
    assert_eq!((ahead["changes"].as_array().unwrap().len(), ahead["next_cursor"].as_str()), (0, Some("999999999")));

    // Delete: one delete entry after the head, and from the start the image is only a delete.
    assert_eq!(app.delete(&format!("/v1/images/{}", ids[2])).await, 204);
    let (after, head2) = walk(&app, Some(&head), 10).await;
    assert_eq!(
        (after.len(), after[0]["op"].as_str(), after[0]["id"].as_str()),
        (1, Some("delete"), Some(ids[2].as_str()))
    );
    let (all, _) = walk(&app, None, 200).await;
    assert_eq!(all.len(), 3);
    assert_eq!(by_id(&all)[&ids[2]]["op"], "delete");
    let (one_by_one, end) = walk(&app, None, 1).await;
    assert_eq!((one_by_one, end), (all.clone(), head2.clone()), "limit 1 walks the same changes");

    // Restart: the same feed, and new changes number after it.
    let app = app.reopen(settings(0)).await;
    assert_eq!(walk(&app, None, 200).await.0, all, "seqs persist across a restart");
    let chelsea = app.upload_one("chelsea_rgba.png", image_bytes("chelsea_rgba.png")).await;
    let (after, head3) = walk(&app, Some(&head2), 10).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["image"]["id"], chelsea.as_str());
    assert!(after[0]["seq"].as_u64() > all.last().unwrap()["seq"].as_u64());

    // Captions: with a worker, each live image comes back once, with a higher seq and its caption.
    let app = app.reopen(settings(1)).await;
    let live = [ids[0].clone(), ids[1].clone(), chelsea.clone()];
    let deadline = Instant::now() + Duration::from_secs(180);
    let captioned = loop {
        let (changes, _) = walk(&app, Some(&head3), 500).await;
        let changes = by_id(&changes);
        if live.iter().all(|id| changes.get(id).is_some_and(|c| c["image"]["caption"].is_string())) {
            break changes;
        }
        assert!(Instant::now() < deadline, "captions did not reach the feed: {changes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(captioned.len(), 3, "no upsert for the deleted image: {captioned:?}");
    for id in &live {
        let (_, record) = app.get(&format!("/v1/images/{id}")).await;
        assert_eq!(captioned[id]["image"]["caption"], record["caption"]);
    }
    assert_eq!(walk(&app, None, 1).await.0.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cursors_and_limits_are_refused() {
    let app = TestApp::start().await;
    for bad in ["abc", "-1", "1.5", "", "99999999999999999999"] {
        assert_error(&app.get(&format!("/v1/sync?since={bad}")).await, 400, "invalid_cursor");
    }
    for bad in ["0", "501", "x"] {
        assert_error(&app.get(&format!("/v1/sync?limit={bad}")).await, 400, "invalid_request");
    }
    assert_error(&app.get("/v1/sync?cursor=1").await, 400, "invalid_request");
}

/// Paging (two at a time) while another task ingests: every image shows up exactly once, and the
/// seqs seen only grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_during_ingest_loses_nothing() {
    let app = Arc::new(TestApp::with(|s| s.index.kind = Some(lens::config::IndexKind::Exact)).await);
    const N: u32 = 40;
    let uploader = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for seed in 0..N {
                ids.push(app.upload_one("s.png", synthetic_png(1000 + seed)).await);
            }
            ids
        })
    };
    let (mut seen, mut cursor, mut last_seq, mut pages) = (Vec::<String>::new(), "0".to_string(), 0, 0);
    loop {
        let finished = uploader.is_finished();
        let page = feed_page(&app, Some(&cursor), 2).await;
        pages += 1;
        for change in page["changes"].as_array().unwrap() {
            let seq = change["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "seq {seq} after {last_seq}");
            last_seq = seq;
            seen.push(change["image"]["id"].as_str().unwrap().to_string());
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if finished && !page["more"].as_bool().unwrap() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let uploaded = uploader.await.unwrap();
    assert_eq!(seen.len(), N as usize, "each image exactly once ({pages} pages)");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), uploaded.iter().collect::<HashSet<_>>());
}

fn decode(bytes: &[u8]) -> lens_core::image::RgbImage {
    lens_core::image::decode_image(bytes, &lens_core::image::DecodeLimits::default()).unwrap()
}

fn mean_abs_diff(a: &lens_core::image::RgbImage, b: &lens_core::image::RgbImage) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let sum: u64 = a.data.iter().zip(&b.data).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.data.len() as f64
}

/// The upright image (EXIF orientation applied) resized apart: what the thumbnail must look like.
fn upright_reference(name: &str, width: u32, height: u32) -> lens_core::image::RgbImage {
    let full = decode(&image_bytes(name));
    lens_core::resample::resize(&full, width, height, lens_core::resample::Filter::Bilinear)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_are_fitted_upright_jpegs() {
    let app = TestApp::start().await;
    let rocket = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let rotated = app.upload_one("rocket_exif6.jpg", image_bytes("rocket_exif6.jpg")).await;
    let flipped = app.upload_one("coffee_exif3.jpg", image_bytes("coffee_exif3.jpg")).await;
    let small = app.upload_one("s.png", synthetic_png(7)).await; // 40 x 40
    let thumb = |id: &str, query: &str| format!("/v1/images/{id}/thumbnail{query}");

    // Default 256, landscape 640 x 427 -> 256 x 171.
    let r = app.get_raw(&thumb(&rocket, "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    let img = decode(&r.body);
    assert_eq!((img.width, img.height), (256, 171));
    assert!(mean_abs_diff(&img, &upright_reference("rocket.jpg", 256, 171)) < 8.0);
    // Stored landscape with orientation 6: a portrait thumbnail that looks like the upright image.
    let img = decode(&app.get_raw(&thumb(&rotated, "?size=128")).await.body);
    assert_eq!((img.width, img.height), (85, 128));
    assert!(mean_abs_diff(&img, &upright_reference("rocket_exif6.jpg", 85, 128)) < 8.0);
    // Orientation 3 (180°): it matches the upright image, not the stored one.
    let img = decode(&app.get_raw(&thumb(&flipped, "?size=64")).await.body);
    assert_eq!((img.width, img.height), (64, 43));
    let upright = upright_reference("coffee_exif3.jpg", 64, 43);
    let mut stored = upright.clone();
    stored.data = upright.data.chunks(3).rev().flatten().copied().collect();
    let (near, far) = (mean_abs_diff(&img, &upright), mean_abs_diff(&img, &stored));
    assert!(near < 8.0 && far > 3.0 * near, "upright {near}, as stored {far}");
    // Smaller than the box: kept as is.
    let img = decode(&app.get_raw(&thumb(&small, "?size=64")).await.body);
    assert_eq!((img.width, img.height), (40, 40));
    let img = decode(&app.get_raw(&thumb(&rocket, "?size=512")).await.body);
    assert_eq!((img.width, img.height), (512, 342));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_are_content_addressed_and_checked() {
    let app = TestApp::start().await;
    let rocket = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let path = format!("/v1/images/{rocket}/thumbnail");
    let first = app.get_raw(&path).await;
    assert_eq!(first.headers["cache-control"], "public, max-age=31536000, immutable");
    let etag = first.headers["etag"].to_str().unwrap().to_string();
    let again = app.get_raw(&format!("{path}?size=256")).await;
    assert_eq!((again.headers["etag"].to_str().unwrap(), &again.body), (etag.as_str(), &first.body));
    let request = Request::get(&path).header("if-none-match", &etag).body(Body::empty()).unwrap();
    let not_modified = app.send(request).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.headers["etag"].to_str().unwrap(), etag);
    assert!(not_modified.body.is_empty());
    assert_ne!(app.get_raw(&format!("{path}?size=32")).await.headers["etag"].to_str().unwrap(), etag);
    assert_error(&app.get("/v1/images/0123456789abcdef0123456789abcdef/thumbnail").await, 404, "not_found");
    for bad in ["?size=31", "?size=100", "?size=513", "?size=0", "?size=big", "?width=10"] {
        assert_error(&app.get(&format!("{path}{bad}")).await, 400, "invalid_request");
    }
    let (changes, _) = walk(&app, None, 10).await;
    let url = changes[0]["image"]["thumbnail_url"].as_str().unwrap();
    assert_eq!(app.get_raw(url).await.status, 200, "thumbnail_url resolves");
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> crate::common::app::Answer {
    let request = Request::options(path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "if-none-match")
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_grants_the_named_origins_on_every_route_the_browser_app_uses() {
    let allowed = "http://127.0.0.1:8080";
    let app =
        TestApp::with(|s| s.server.cors_origin = Some(vec![allowed.into(), "http://localhost:8080".into()])).await;
    let rocket = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let (one, thumbnail) = (format!("/v1/images/{rocket}"), format!("/v1/images/{rocket}/thumbnail"));
    for (path, method) in [
        ("/v1/sync", "GET"),
        ("/v1/models", "GET"),
        (&one, "GET"),
        (&thumbnail, "GET"),
        ("/v1/images", "POST"),
        (&one, "DELETE"),
    ] {
        let r = preflight(&app, path, allowed, method).await;
        assert!((200..300).contains(&r.status), "{path} {method}: {}", r.status);
        assert_eq!(r.headers["access-control-allow-origin"], allowed, "{path}");
        assert!(r.headers["access-control-allow-methods"].to_str().unwrap().contains(method), "{path}");
        assert!(r.headers["access-control-allow-headers"].to_str().unwrap().contains("if-none-match"), "{path}");
    }
    let r = preflight(&app, "/v1/sync", "http://localhost:8080", "GET").await;
    assert_eq!(r.headers["access-control-allow-origin"], "http://localhost:8080");
    let request = Request::get(&thumbnail).header("origin", allowed).body(Body::empty()).unwrap();
    let r = app.send(request).await;
    assert_eq!(r.headers["access-control-allow-origin"], allowed);
    assert!(r.headers["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase().contains("etag"));
    for origin in ["http://evil.example", "http://127.0.0.1:8081"] {
        let r = preflight(&app, "/v1/sync", origin, "GET").await;
        assert!(!r.headers.contains_key("access-control-allow-origin"), "{origin}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_origins_there_are_no_cors_headers() {
    let app = TestApp::start().await;
    let r = preflight(&app, "/v1/sync", "http://127.0.0.1:8080", "GET").await;
    assert!(r.headers.keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers);
    let any = TestApp::with(|s| s.server.cors_origin = Some(vec!["*".into()])).await;
    let r = preflight(&any, "/v1/sync", "http://anything.example", "GET").await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
}
