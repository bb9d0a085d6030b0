//! Browser sync end to end: the real `lens serve` on 127.0.0.1 with the tiny CLIP (and the tiny BLIP
//! for captions), driven over HTTP — the change feed (`/v1/sync`), thumbnails and CORS.
//!
//! Feed embeddings are checked against `lens embed` on the same files (within 1e-5 per component).

#[path = "common/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use server::{Server, assert_error, image_bytes, image_path, synthetic_png};

const EMBEDDING_TOLERANCE: f64 = 1e-5;

fn blip() -> PathBuf {
    server::root().join("models/fixtures/blip-tiny")
}

/// `lens serve` with the caption model, its default options cut short for speed, and `extra` flags.
fn spawn_captioning(data: &Path, extra: &[&str]) -> Server {
    let blip = blip();
    let args =
        [&["--caption-model", blip.to_str().unwrap(), "--caption-beams", "1", "--caption-max-new-tokens", "8"], extra]
            .concat();
    Server::spawn(&server::fixture_model(), data, args.iter().map(|s| s.to_string()).collect(), vec![])
}

/// Normalised embedding of an image file from `lens embed` (independent of the server).
fn cli_embedding(path: &Path) -> Vec<f64> {
    let model = server::fixture_model();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["embed", "--model", model.to_str().unwrap(), "--image", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    line["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn upload_one(server: &Server, name: &str, bytes: Vec<u8>) -> String {
    let (status, record) = server.upload("/v1/images", &[(name, bytes)], None);
    assert!(status == 201 || status == 200, "{status} {record}");
    record["id"].as_str().unwrap().to_string()
}

fn feed_page(server: &Server, since: Option<&str>, limit: usize) -> Value {
    let path = match since {
        Some(s) => format!("/v1/sync?since={s}&limit={limit}"),
        None => format!("/v1/sync?limit={limit}"),
    };
    let (status, page) = server.get(&path);
    assert_eq!(status, 200, "{page}");
    page
}

/// Every change from `since` on, `limit` per page, checking the page invariants on the way; and the
/// final cursor.
fn walk(server: &Server, since: Option<&str>, limit: usize) -> (Vec<Value>, String) {
    let mut out: Vec<Value> = Vec::new();
    let mut cursor = since.map(str::to_string);
    loop {
        let page = feed_page(server, cursor.as_deref(), limit);
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= limit, "{page}");
        let next = page["next_cursor"].as_str().unwrap().to_string();
        if let Some(last) = changes.last() {
            assert_eq!(last["seq"].as_u64().unwrap().to_string(), next, "next_cursor is the last seq");
        }
        out.extend(changes.iter().cloned());
        cursor = Some(next);
        if !page["more"].as_bool().unwrap() {
            assert!(out.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "ascending seqs");
            return (out, cursor.unwrap());
        }
    }
}

/// The feed by image id: id -> its change (each id at most once).
fn by_id(changes: &[Value]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for c in changes {
        let id = c["image"]["id"].as_str().or(c["id"].as_str()).unwrap().to_string();
        assert!(out.insert(id.clone(), c.clone()).is_none(), "{id} appears twice in one walk");
    }
    out
}

fn assert_close(got: &Value, expected: &[f64], what: &str) {
    let got: Vec<f64> = got.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(got.len(), expected.len(), "{what}: dims");
    let worst = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < EMBEDDING_TOLERANCE, "{what}: embedding differs from `lens embed` by {worst}");
}

/// The feed from empty through ingest (embeddings equal `lens embed`'s), delete (a tombstone, no
/// upsert after it), paging by one, a restart (seqs persisted, new ones larger), captions arriving
/// (the image comes back with a higher seq and its caption), and bad cursors and limits.
#[test]
fn feed_follows_ingest_deletes_restarts_and_captions() {
    let data = tempfile::tempdir().unwrap();
    // Caption jobs are queued but not run (no workers) until the restart that turns workers on.
    let mut server = spawn_captioning(data.path(), &["--index", "exact", "--caption-workers", "0"]);
    let (_, models) = server.get("/v1/models");
    let model = &models["data"][0];

    let empty = feed_page(&server, None, 200);
    assert_eq!(empty["changes"], serde_json::json!([]));
    assert_eq!((empty["next_cursor"].as_str(), empty["more"].as_bool()), (Some("0"), Some(false)));
    assert_eq!(empty["model"]["id"], model["id"]);
    assert_eq!(empty["model"]["dims"], model["dims"]);

    let names = ["coffee.jpg", "rocket.jpg", "astronaut.png"];
    let ids: Vec<String> = names.iter().map(|n| upload_one(&server, n, image_bytes(n))).collect();
    let (first, head) = walk(&server, None, 200);
    let first_by_id = by_id(&first);
    assert_eq!(first.len(), 3);
    for (id, name) in ids.iter().zip(names) {
        let change = &first_by_id[id];
        assert_eq!(change["op"], "upsert", "{change}");
        let image = &change["image"];
        let (_, record) = server.get(&format!("/v1/images/{id}"));
        for field in ["sha256", "mime", "width", "height", "bytes", "tags", "caption"] {
            assert_eq!(image[field], record[field], "{name}: {field}");
        }
        assert!(image["caption"].is_null());
        assert!(image["created_at"].as_i64().unwrap() > 1_700_000_000_000, "ms since the epoch: {image}");
        assert_eq!(image["thumbnail_url"], format!("/v1/images/{id}/thumbnail"));
        assert_close(&image["embedding"], &cli_embedding(&image_path(name)), name);
    }
    // Ingest order is feed order.
    let order: Vec<&str> = first.iter().map(|c| c["image"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Nothing after the head; a cursor ahead of the log gives an empty page that keeps it.
    let (after, cursor) = walk(&server, Some(&head), 10);
    assert!(after.is_empty() && cursor == head);
    let ahead = feed_page(&server, Some("999999999"), 10);
    assert_eq!((ahead["changes"].as_array().unwrap().len(), ahead["next_cursor"].as_str()), (0, Some("999999999")));

    // Delete: one delete entry after the head, and from the start the image is only a delete.
    assert_eq!(server.delete(&format!("/v1/images/{}", ids[2])), 204);
    let (after, head2) = walk(&server, Some(&head), 10);
    assert_eq!(after.len(), 1);
    assert_eq!((after[0]["op"].as_str(), after[0]["id"].as_str()), (Some("delete"), Some(ids[2].as_str())));
    let (all, _) = walk(&server, None, 200);
    assert_eq!(all.len(), 3);
    assert_eq!(by_id(&all)[&ids[2]]["op"], "delete");
    // Limit 1 walks exactly the same changes.
    let (one_by_one, end) = walk(&server, None, 1);
    assert_eq!(one_by_one, all);
    assert_eq!(end, head2);

    // Restart: the same feed, and new changes number after it.
    server.stop();
    let server = spawn_captioning(data.path(), &["--index", "exact", "--caption-workers", "0"]);
    assert_eq!(walk(&server, None, 200).0, all, "seqs persist across a restart");
    let chelsea = upload_one(&server, "chelsea_rgba.png", image_bytes("chelsea_rgba.png"));
    let (after, head3) = walk(&server, Some(&head2), 10);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["image"]["id"], chelsea.as_str());
    assert!(after[0]["seq"].as_u64() > all.last().unwrap()["seq"].as_u64());
    drop(server);

    // Captions: with a worker, each live image comes back once, with a higher seq and its caption.
    let server = spawn_captioning(data.path(), &["--index", "exact"]);
    let live = [ids[0].clone(), ids[1].clone(), chelsea.clone()];
    let deadline = Instant::now() + Duration::from_secs(180);
    let captioned = loop {
        let (changes, _) = walk(&server, Some(&head3), 500);
        let changes = by_id(&changes);
        if live.iter().all(|id| changes.get(id).is_some_and(|c| c["image"]["caption"].is_string())) {
            break changes;
        }
        assert!(Instant::now() < deadline, "captions did not reach the feed: {changes:?}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(captioned.len(), 3, "no upsert for the deleted image: {captioned:?}");
    for id in &live {
        let (_, record) = server.get(&format!("/v1/images/{id}"));
        assert_eq!(captioned[id]["image"]["caption"], record["caption"]);
        assert!(captioned[id]["seq"].as_u64().unwrap() > head3.parse::<u64>().unwrap());
    }
    let (all, _) = walk(&server, None, 1);
    assert_eq!(all.len(), 4);
    assert_eq!(by_id(&all)[&ids[2]]["op"], "delete");

    // Bad cursors and limits.
    for bad in ["abc", "-1", "1.5", "", "99999999999999999999"] {
        assert_error(&server.get(&format!("/v1/sync?since={bad}")), 400, "invalid_cursor");
    }
    for bad in ["0", "501", "x"] {
        assert_error(&server.get(&format!("/v1/sync?limit={bad}")), 400, "invalid_request");
    }
    assert_error(&server.get("/v1/sync?cursor=1"), 400, "invalid_request");
}

/// Paging (two at a time) while another client ingests: every image shows up exactly once, and the
/// seqs seen only grow.
#[test]
fn paging_during_ingest_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--index", "exact"]);
    const N: u32 = 40;
    let (http, url) = (server.http.clone(), server.url("/v1/images"));
    let uploader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for seed in 0..N {
            let form = reqwest::blocking::multipart::Form::new()
                .part("file", reqwest::blocking::multipart::Part::bytes(synthetic_png(1000 + seed)).file_name("s.png"));
            let (status, record) = server::into_json(http.post(&url).multipart(form).send().unwrap());
            assert_eq!(status, 201, "{record}");
            ids.push(record["id"].as_str().unwrap().to_string());
        }
        ids
    });
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = "0".to_string();
    let mut last_seq = 0;
    let mut pages = 0;
    loop {
        let finished = uploader.is_finished();
        let page = feed_page(&server, Some(&cursor), 2);
        pages += 1;
        for change in page["changes"].as_array().unwrap() {
            let seq = change["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "seq {seq} after {last_seq}");
            last_seq = seq;
            assert_eq!(change["op"], "upsert");
            seen.push(change["image"]["id"].as_str().unwrap().to_string());
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        // Done once a page read after the uploader finished says there is no more.
        if finished && !page["more"].as_bool().unwrap() {
            break;
        }
    }
    let uploaded = uploader.join().unwrap();
    assert_eq!(seen.len(), N as usize, "each image exactly once ({pages} pages)");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), uploaded.iter().collect::<HashSet<_>>());
    assert!(pages > 2, "the walk overlapped the ingest");
}

/// Decodes a JPEG answer.
fn decode_jpeg(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).unwrap().to_rgb8()
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

/// The upright image (lens-core's decode, EXIF orientation applied) resized by the `image` crate: a
/// reference the thumbnail must look like.
fn upright_reference(name: &str, width: u32, height: u32) -> image::RgbImage {
    let decoded =
        lens_core::image::decode_image(&image_bytes(name), &lens_core::image::DecodeLimits::default()).unwrap();
    let full = image::RgbImage::from_raw(decoded.width, decoded.height, decoded.data).unwrap();
    image::imageops::resize(&full, width, height, image::imageops::FilterType::Triangle)
}

/// Thumbnails: JPEG, fitted (aspect kept, never enlarged), EXIF orientation applied, cached forever
/// by content (ETag, 304), 404 and 400 for unknown ids and bad sizes; and the CORS headers when the
/// server names origins.
#[test]
fn thumbnails_and_cors() {
    let data = tempfile::tempdir().unwrap();
    let allowed = "http://127.0.0.1:8080";
    let server =
        Server::start(data.path(), &["--index", "exact", "--cors-origin", &format!("{allowed},http://localhost:8080")]);
    let rocket = upload_one(&server, "rocket.jpg", image_bytes("rocket.jpg"));
    let rotated = upload_one(&server, "rocket_exif6.jpg", image_bytes("rocket_exif6.jpg"));
    let flipped = upload_one(&server, "coffee_exif3.jpg", image_bytes("coffee_exif3.jpg"));
    let small = upload_one(&server, "s.png", synthetic_png(7)); // 40 x 40

    let thumb = |id: &str, query: &str| {
        server.http.get(server.url(&format!("/v1/images/{id}/thumbnail{query}"))).send().unwrap()
    };
    // Default 256, landscape 640 x 427 -> 256 x 171.
    let r = thumb(&rocket, "");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let jpeg = r.bytes().unwrap();
    let img = decode_jpeg(&jpeg);
    assert_eq!(img.dimensions(), (256, 171));
    assert!(mean_abs_diff(&img, &upright_reference("rocket.jpg", 256, 171)) < 8.0);
    // Stored landscape with orientation 6: a portrait thumbnail that looks like the upright image.
    let img = decode_jpeg(&thumb(&rotated, "?size=128").bytes().unwrap());
    assert_eq!(img.dimensions(), (85, 128));
    assert!(mean_abs_diff(&img, &upright_reference("rocket_exif6.jpg", 85, 128)) < 8.0);
    // Orientation 3 (180°): same size, and it matches the upright image, not the stored one.
    let img = decode_jpeg(&thumb(&flipped, "?size=64").bytes().unwrap());
    assert_eq!(img.dimensions(), (64, 43));
    let upright = upright_reference("coffee_exif3.jpg", 64, 43);
    let stored = image::imageops::rotate180(&upright);
    let (near, far) = (mean_abs_diff(&img, &upright), mean_abs_diff(&img, &stored));
    assert!(near < 8.0 && far > 3.0 * near, "upright {near}, as stored {far}");
    // Smaller than the box: kept as is.
    assert_eq!(decode_jpeg(&thumb(&small, "?size=64").bytes().unwrap()).dimensions(), (40, 40));

    // Content-addressed: the same bytes again (from the cache), 304 for the ETag, another size another tag.
    let again = thumb(&rocket, "?size=256");
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(again.bytes().unwrap(), jpeg);
    let not_modified = server
        .http
        .get(server.url(&format!("/v1/images/{rocket}/thumbnail")))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert!(not_modified.bytes().unwrap().is_empty());
    assert_ne!(thumb(&rocket, "?size=32").headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(decode_jpeg(&thumb(&rocket, "?size=512").bytes().unwrap()).dimensions(), (512, 342));

    // Unknown ids, bad sizes.
    assert_error(&server::into_json(thumb("0123456789abcdef0123456789abcdef", "")), 404, "not_found");
    for bad in ["?size=31", "?size=513", "?size=0", "?size=big", "?width=10"] {
        assert_error(&server::into_json(thumb(&rocket, bad)), 400, "invalid_request");
    }
    let listed: Vec<String> =
        walk(&server, None, 10).0.iter().map(|c| c["image"]["thumbnail_url"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), 4);
    assert_eq!(server.http.get(server.url(&listed[0])).send().unwrap().status(), 200, "thumbnail_url resolves");

    // Both endpoints are in the OpenAPI document.
    let (_, doc) = server.get("/v1/openapi.json");
    assert!(doc["paths"]["/v1/sync"]["get"]["parameters"].is_array(), "{}", doc["paths"]);
    assert!(doc["paths"]["/v1/images/{id}/thumbnail"]["get"]["responses"]["304"].is_object());
    assert!(doc["components"]["schemas"]["SyncPage"]["properties"]["changes"].is_object());

    // CORS: preflights from an allowed origin, for every route the browser app uses.
    let preflight = |server: &Server, path: &str, origin: &str, method: &str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "if-none-match")
            .send()
            .unwrap()
    };
    let (one, thumbnail) = (format!("/v1/images/{rocket}"), format!("/v1/images/{rocket}/thumbnail"));
    let routes = [
        ("/v1/sync", "GET"),
        ("/v1/models", "GET"),
        (one.as_str(), "GET"),
        (thumbnail.as_str(), "GET"),
        ("/v1/images", "POST"),
        (one.as_str(), "DELETE"),
    ];
    for (path, method) in routes {
        let r = preflight(&server, path, allowed, method);
        assert!(r.status().is_success(), "{path} {method}: {}", r.status());
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], allowed, "{path}");
        assert!(h["access-control-allow-methods"].to_str().unwrap().contains(method), "{path}: {h:?}");
        assert!(h["access-control-allow-headers"].to_str().unwrap().contains("if-none-match"), "{path}: {h:?}");
    }
    assert_eq!(
        preflight(&server, "/v1/sync", "http://localhost:8080", "GET").headers()["access-control-allow-origin"],
        "http://localhost:8080"
    );
    // The answers themselves carry the origin and expose the ETag.
    let r = server
        .http
        .get(server.url(&format!("/v1/images/{rocket}/thumbnail")))
        .header("origin", allowed)
        .send()
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    assert!(r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase().contains("etag"));
    let r = server.http.get(server.url("/v1/sync")).header("origin", allowed).send().unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    // Another origin gets no grant.
    for origin in ["http://evil.example", "http://127.0.0.1:8081"] {
        let r = preflight(&server, "/v1/sync", origin, "GET");
        assert!(!r.headers().contains_key("access-control-allow-origin"), "{origin}: {:?}", r.headers());
        let r = server.http.get(server.url("/v1/sync")).header("origin", origin).send().unwrap();
        assert!(!r.headers().contains_key("access-control-allow-origin"), "{origin}");
    }
    drop(server);

    // Default: no CORS headers at all (and no preflight route).
    let plain = Server::start(data.path(), &["--index", "exact"]);
    let r = preflight(&plain, "/v1/sync", allowed, "GET");
    assert!(r.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers());
    let r = plain.http.get(plain.url("/v1/sync")).header("origin", allowed).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", r.headers());
    drop(plain);

    // `*` from the environment.
    let any = Server::start_with_env(data.path(), &["--index", "exact"], &[("LENS_CORS_ORIGIN", "*")]);
    assert_eq!(
        preflight(&any, "/v1/sync", "http://anything.example", "GET").headers()["access-control-allow-origin"],
        "*"
    );
}
