//! `lens serve` end to end: the real binary on 127.0.0.1 with the tiny CLIP fixture, driven over HTTP.
//! The same suite runs on local blobs and on S3 (moto, a real S3-compatible server on 127.0.0.1).
//!
//! Scores are checked against embeddings computed independently (`lens embed`, the CLI path whose
//! parity with `transformers` is tested in cli.rs): cosine within 1e-5.

#[path = "common/hub_server.rs"]
mod hub_server;
#[path = "common/server.rs"]
mod server;

use std::collections::HashSet;

use serde_json::{Value, json};
use server::{FileServer, Server, assert_error, image_bytes, image_path, synthetic_png};
use sha2::Digest;

const SCORE_TOLERANCE: f64 = 1e-5;

/// Normalised embeddings from `lens embed` (independent of the server).
fn cli_embedding(args: &[&str]) -> Vec<f64> {
    let model = server::fixture_model();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["embed", "--model", model.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    line["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn ids(results: &Value) -> Vec<String> {
    results["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// Ingest, dedup, list, get, blob, search (text, image upload, URL, stored id, tag, threshold),
/// duplicates, embeddings, delete, rebuild, graceful restart, kill -9 restart.
fn full_suite(mut server: Server, files: &FileServer) {
    // --- ingest: one file, the same bytes again, several files, a URL
    let astronaut = image_bytes("astronaut.png");
    let (status, a) = server.upload("/v1/images", &[("astronaut.png", astronaut.clone())], Some("space, people"));
    assert_eq!(status, 201, "{a}");
    let sha = hex::encode(sha2::Sha256::digest(&astronaut));
    assert_eq!(a["sha256"], sha);
    assert_eq!(a["id"], &sha[..32]);
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64(), a["mime"].as_str()),
        (Some(512), Some(512), Some("image/png"))
    );
    assert_eq!(a["tags"], json!(["space", "people"]));
    let (status, again) = server.upload("/v1/images", &[("copy.png", astronaut.clone())], None);
    assert_eq!(status, 200, "same bytes: the existing record");
    assert_eq!(again["id"], a["id"]);

    let names = ["coffee.jpg", "rocket.jpg", "chelsea_rgba.png"];
    let parts: Vec<(&str, Vec<u8>)> = names.iter().map(|n| (*n, image_bytes(n))).collect();
    let (status, many) = server.upload("/v1/images", &parts, Some("batch"));
    assert_eq!(status, 201, "{many}");
    let many = many["images"].as_array().unwrap().clone();
    assert_eq!(many.len(), 3);
    let (status, by_url) =
        server.post_json("/v1/images", &json!({"url": files.url("/redirect/2/camera_grey.png"), "tags": ["grey"]}));
    assert_eq!(status, 201, "{by_url}");
    assert_eq!(by_url["source_url"], files.url("/redirect/2/camera_grey.png"));
    assert_eq!(by_url["mime"], "image/png");

    let all_ids: Vec<String> = std::iter::once(&a)
        .chain(&many)
        .chain(std::iter::once(&by_url))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    // --- list: newest first, paged
    let (status, page1) = server.get("/v1/images?limit=3");
    assert_eq!(status, 200);
    assert_eq!(page1["total"], 5);
    let cursor = page1["next_cursor"].as_str().expect("a next page").to_string();
    let (_, page2) = server.get(&format!("/v1/images?limit=3&cursor={cursor}"));
    let listed: Vec<String> = page1["images"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["images"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed[0], all_ids[4], "newest first");
    assert_eq!(listed.iter().collect::<HashSet<_>>(), all_ids.iter().collect::<HashSet<_>>());
    assert!(page2["next_cursor"].is_null());
    let (_, tagged) = server.get("/v1/images?tag=batch");
    assert_eq!(tagged["images"].as_array().unwrap().len(), 3);

    // --- one image and its bytes
    let (status, got) = server.get(&format!("/v1/images/{}", all_ids[1]));
    assert_eq!(status, 200);
    assert_eq!(got["sha256"], many[0]["sha256"]);
    let blob = server.http.get(server.url(&format!("/v1/images/{}/blob", all_ids[1]))).send().unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.headers()["content-type"], "image/jpeg");
    assert_eq!(blob.bytes().unwrap().as_ref(), image_bytes("coffee.jpg").as_slice());

    // --- search by text: the order and scores of independent embeddings
    let query = "a photo of a rocket";
    let text = cli_embedding(&["--text", query]);
    let mut expected: Vec<(String, f64)> = names
        .iter()
        .map(|n| image_path(n))
        .chain([image_path("astronaut.png"), image_path("camera_grey.png")])
        .zip([&all_ids[1], &all_ids[2], &all_ids[3], &all_ids[0], &all_ids[4]])
        .map(|(path, id)| (id.clone(), dot(&text, &cli_embedding(&["--image", path.to_str().unwrap()]))))
        .collect();
    expected.sort_by(|x, y| y.1.total_cmp(&x.1));
    let (status, found) = server.post_json("/v1/search", &json!({"text": query, "k": 5}));
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (result, (id, score)) in results.iter().zip(&expected) {
        assert_eq!(result["id"], id.as_str(), "rank order: {found}");
        assert!((result["score"].as_f64().unwrap() - score).abs() < SCORE_TOLERANCE, "{result} vs {score}");
        assert!(result["url"].as_str().unwrap().ends_with("/blob"));
    }
    // k, threshold, tag
    let (_, top2) = server.post_json("/v1/search", &json!({"text": query, "k": 2}));
    assert_eq!(ids(&top2), expected[..2].iter().map(|e| e.0.clone()).collect::<Vec<_>>());
    let cut = (expected[1].1 + expected[2].1) / 2.0;
    let (_, above) = server.post_json("/v1/search", &json!({"text": query, "k": 5, "threshold": cut}));
    assert_eq!(ids(&above).len(), 2, "threshold {cut}: {above}");
    let (_, grey) = server.post_json("/v1/search", &json!({"text": query, "k": 5, "tag": "grey"}));
    assert_eq!(ids(&grey), vec![all_ids[4].clone()]);

    // --- search by image: upload, URL, stored id
    let (status, by_upload) = server.upload("/v1/search/image", &[("q.jpg", image_bytes("rocket.jpg"))], None);
    assert_eq!(status, 200, "{by_upload}");
    assert_eq!(by_upload["results"][0]["id"], all_ids[2].as_str());
    assert!((by_upload["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < SCORE_TOLERANCE);
    let (status, by_image_url) =
        server.post_json("/v1/search", &json!({"image_url": files.url("/img/chelsea_rgba.png"), "k": 1}));
    assert_eq!(status, 200, "{by_image_url}");
    assert_eq!(ids(&by_image_url), vec![all_ids[3].clone()]);
    let (_, by_id) = server.post_json("/v1/search", &json!({"image_id": all_ids[0], "k": 3}));
    assert_eq!(by_id["results"][0]["id"], all_ids[0].as_str());

    // --- near-duplicates: a re-encoded copy is close, the image itself is not listed
    let (_, dups) = server.get(&format!("/v1/images/{}/duplicates?threshold=-1&k=10", all_ids[0]));
    let dup_ids = ids(&json!({"results": dups["duplicates"]}));
    assert_eq!(dup_ids.len(), 4);
    assert!(!dup_ids.contains(&all_ids[0]));

    // --- embeddings for others: stored image and text agree with the CLI
    let (status, emb) = server.post_json("/v1/embeddings", &json!({"input": [query, {"image_id": all_ids[1]}]}));
    assert_eq!(status, 200, "{emb}");
    let vec_of = |v: &Value| v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    let coffee = cli_embedding(&["--image", image_path("coffee.jpg").to_str().unwrap()]);
    assert!((dot(&vec_of(&emb["data"][0]), &text) - 1.0).abs() < SCORE_TOLERANCE);
    assert!((dot(&vec_of(&emb["data"][1]), &coffee) - 1.0).abs() < SCORE_TOLERANCE);

    // --- delete: row, index entry, blob
    assert_eq!(server.delete(&format!("/v1/images/{}", all_ids[2])), 204);
    assert_eq!(server.get(&format!("/v1/images/{}", all_ids[2])).0, 404);
    assert_eq!(server.http.get(server.url(&format!("/v1/images/{}/blob", all_ids[2]))).send().unwrap().status(), 404);
    assert_eq!(server.delete(&format!("/v1/images/{}", all_ids[2])), 404);
    let (_, after) = server.post_json("/v1/search", &json!({"text": query, "k": 10}));
    assert_eq!(ids(&after).len(), 4);
    assert!(!ids(&after).contains(&all_ids[2]));
    let remaining = ids(&after);

    // --- rebuild as a job
    let (status, job) = server.post_json("/v1/index/rebuild", &json!({}));
    assert_eq!(status, 202, "{job}");
    let job = server.wait_job(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["vectors"], 4);
    let (_, rebuilt) = server.post_json("/v1/search", &json!({"text": query, "k": 10}));
    assert_eq!(ids(&rebuilt), remaining);

    // --- graceful restart (snapshot) and kill -9 restart (rebuild from the catalog): all still there
    server = server.restart();
    assert!(server.log().contains("index loaded from its snapshot"), "{}", server.log());
    let (_, again) = server.post_json("/v1/search", &json!({"text": query, "k": 10}));
    assert_eq!(ids(&again), remaining);
    let (_, listed) = server.get("/v1/images");
    assert_eq!(listed["total"], 4);
    let (status, _) = server.upload("/v1/images", &[("rocket.jpg", image_bytes("rocket.jpg"))], None);
    assert_eq!(status, 201, "deleted bytes can come back");
    server.kill9();
    let server = server.restart_after_kill();
    let (_, again) = server.post_json("/v1/search", &json!({"text": query, "k": 10}));
    assert_eq!(ids(&again).len(), 5);
    assert_eq!(ids(&again).iter().collect::<HashSet<_>>(), all_ids.iter().collect::<HashSet<_>>());
    let blob = server.http.get(server.url(&format!("/v1/images/{}/blob", all_ids[2]))).send().unwrap();
    assert_eq!(blob.bytes().unwrap().as_ref(), image_bytes("rocket.jpg").as_slice());
}

#[test]
fn serve_on_local_blobs() {
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--allow-private-urls"]);
    full_suite(server, &files);
    // Content-addressed files, nothing half-written.
    let mut blobs = Vec::new();
    collect(&data.path().join("blobs"), &mut blobs);
    assert_eq!(blobs.len(), 5, "{blobs:?}");
}

fn collect(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            collect(&entry.path(), out);
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn serve_on_s3() {
    let moto = lens_store::testing::MotoServer::start();
    let cfg = moto.s3_config("lens-serve-test");
    tokio::runtime::Runtime::new().unwrap().block_on(lens_store::S3BlobStore::create_bucket_if_missing(&cfg)).unwrap();
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", lens_store::testing::MOTO_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", lens_store::testing::MOTO_SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    let s3 =
        ["--blob-store", "s3", "--s3-bucket", "lens-serve-test", "--s3-endpoint", &moto.endpoint, "--s3-path-style"];
    let server = Server::start_with_env(
        data.path(),
        &[s3.as_slice(), &["--allow-private-urls", "--s3-prefix", "blobs/"]].concat(),
        &env,
    );
    // Presigned redirects work against the real server.
    let (status, rec) = server.upload("/v1/images", &[("coins_grey.jpg", image_bytes("coins_grey.jpg"))], None);
    assert_eq!(status, 201, "{rec}");
    assert_eq!(server.delete(&format!("/v1/images/{}", rec["id"].as_str().unwrap())), 204);
    full_suite(server, &files);
    assert!(!data.path().join("blobs").exists(), "no local blobs with --blob-store s3");

    let redirecting = Server::start_with_env(
        tempfile::tempdir().unwrap().path(),
        &[s3.as_slice(), &["--blob-redirect"]].concat(),
        &env,
    );
    let (_, rec) = redirecting.upload("/v1/images", &[("coffee.jpg", image_bytes("coffee.jpg"))], None);
    let response = redirecting
        .http
        .get(redirecting.url(&format!("/v1/images/{}/blob", rec["id"].as_str().unwrap())))
        .send()
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&moto.endpoint), "{location}");
    let fetched = reqwest::blocking::get(&location).unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().unwrap().as_ref(), image_bytes("coffee.jpg").as_slice());
}

/// Every bad input gets its status and code, and leaves no blob, row or index entry.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[
            "--max-file-bytes",
            "300000",
            "--max-pixels",
            "200000",
            "--formats",
            "png,jpeg",
            "--max-text-bytes",
            "100",
            "--max-k",
            "50",
            "--fetch-timeout-s",
            "2",
        ],
    );
    let up = |name: &str, bytes: Vec<u8>| server.upload("/v1/images", &[(name, bytes)], None);
    assert_error(&up("n.jpg", image_bytes("not_an_image.jpg")), 415, "unsupported_format");
    assert_error(&up("g.gif", image_bytes("coffee_palette.gif")), 415, "unsupported_format");
    assert_error(&up("a.png", image_bytes("astronaut.png")), 413, "too_large"); // 512x512 PNG > 300 kB
    assert_error(&up("c.jpg", image_bytes("coffee.jpg")), 422, "too_many_pixels"); // 400x600 > 200k pixels
    assert_error(&up("e.png", vec![]), 400, "invalid_request");
    assert_error(&server.upload("/v1/images", &[], None), 400, "invalid_multipart"); // no parts at all
    // One bad file among good ones: the whole request fails and none of them is stored.
    let mixed =
        server.upload("/v1/images", &[("a.png", synthetic_png(2)), ("b.jpg", image_bytes("not_an_image.jpg"))], None);
    assert_error(&mixed, 415, "unsupported_format");
    assert!(mixed.1["error"]["message"].as_str().unwrap().contains("file 2 (`b.jpg`)"), "{}", mixed.1);
    assert_error(
        &server.upload("/v1/images", &[("ok.png", synthetic_png(1))], Some(&"x".repeat(100))),
        400,
        "invalid_request",
    );
    let raw = |body: &'static str, ct: &str| {
        server::into_json(
            server.http.post(server.url("/v1/images")).header("content-type", ct).body(body).send().unwrap(),
        )
    };
    assert_error(&raw("{not json", "application/json"), 400, "invalid_json");
    assert_error(&raw(r#"{"url": 5}"#, "application/json"), 422, "invalid_json");
    assert_error(&raw(r#"{"url": "http://x/", "extra": 1}"#, "application/json"), 422, "invalid_json");
    assert_error(&raw("hello", "text/plain"), 415, "unsupported_media_type");

    // URLs: scheme, private addresses (literal and after DNS), metadata, redirects, size, time, errors
    let url = |u: String| server.post_json("/v1/images", &json!({"url": u}));
    assert_error(&url("file:///etc/passwd".into()), 400, "url_refused");
    assert_error(&url("ftp://example.com/a.png".into()), 400, "url_refused");
    assert_error(&url("not a url".into()), 400, "invalid_url");
    assert_error(&url(files.url("/img/rocket.jpg")), 400, "url_refused"); // 127.0.0.1 literal
    let port = files.base.rsplit(':').next().unwrap().to_string();
    assert_error(&url(format!("http://localhost:{port}/img/rocket.jpg")), 400, "url_refused"); // resolves to loopback
    assert_error(&url("http://169.254.169.254/latest/meta-data/".into()), 400, "url_refused");
    assert_error(&url("http://[::1]/".into()), 400, "url_refused");

    // With private hosts allowed (local use), redirects are still re-checked, and limits still hold.
    let data2 = tempfile::tempdir().unwrap();
    let open = Server::start(
        data2.path(),
        &["--allow-private-urls", "--fetch-timeout-s", "2", "--fetch-max-redirects", "2", "--max-file-bytes", "300000"],
    );
    assert_error(
        &open.upload("/v1/images", &[("t.jpg", image_bytes("corrupt_truncated.jpg"))], None),
        422,
        "corrupt_image",
    );
    let url = |u: String| open.post_json("/v1/images", &json!({"url": u}));
    assert_error(&url(files.url("/to?http://169.254.169.254/latest/meta-data/")), 400, "url_refused");
    assert_error(&url(files.url("/to?file:///etc/passwd")), 400, "url_refused");
    assert_error(&url(files.url("/redirect/5/rocket.jpg")), 400, "url_refused"); // over 2 redirects
    assert_error(&url(files.url("/big")), 413, "too_large");
    assert_error(&url(files.url("/slow")), 504, "fetch_timeout");
    assert_error(&url(files.url("/missing")), 422, "fetch_failed");
    assert_error(&url("http://127.0.0.1:1/a.png".into()), 422, "fetch_failed"); // nothing listens
    let (status, ok) = url(files.url("/redirect/1/rocket.jpg"));
    assert_eq!(status, 201, "{ok}");

    // Search and embeddings input
    let search = |body: Value| server.post_json("/v1/search", &body);
    assert_error(&search(json!({"text": "x".repeat(101)})), 413, "too_large");
    assert_error(&search(json!({"text": "   "})), 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "k": 0})), 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "k": 51})), 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "threshold": 2.0})), 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "image_id": "b"})), 400, "invalid_request");
    assert_error(&search(json!({})), 400, "invalid_request");
    assert_error(&search(json!({"image_id": "0123"})), 404, "not_found");
    assert_error(&search(json!({"text": "a", "k": "ten"})), 422, "invalid_json");
    assert_error(&server.post_json("/v1/embeddings", &json!({"input": []})), 400, "invalid_request");
    assert_error(
        &server.post_json("/v1/embeddings", &json!({"input": [{"image_url": "a", "image_id": "b"}]})),
        400,
        "invalid_request",
    );
    assert_error(&server.post_json("/v1/embeddings", &json!({"input": "a", "model": "gpt-4"})), 404, "not_found");
    assert_error(
        &open.upload("/v1/search/image", &[("c.jpg", image_bytes("corrupt_truncated.jpg"))], None),
        422,
        "corrupt_image",
    );
    assert_error(
        &server.upload("/v1/search/image", &[("a.png", image_bytes("astronaut.png"))], None),
        413,
        "too_large",
    );
    assert_error(&server.get("/v1/images/nope"), 404, "not_found");
    assert_error(&server.get("/v1/images?limit=0"), 400, "invalid_request");
    assert_error(&server.get("/v1/images?limit=x"), 400, "invalid_request");
    assert_error(&server.get("/v1/images?cursor=zz"), 400, "invalid_request");
    assert_error(&server.get("/v1/jobs/nope"), 404, "not_found");
    assert_error(&server.get("/v2/anything"), 404, "not_found");
    assert_error(
        &server::into_json(server.http.put(server.url("/v1/search")).send().unwrap()),
        405,
        "method_not_allowed",
    );
    assert_error(&server.post_json("/v1/ingest", &json!({"urls": []})), 400, "invalid_request");

    // Nothing was stored by any of it.
    let (_, listed) = server.get("/v1/images");
    assert_eq!(listed["total"], 0, "{listed}");
    let (_, ready) = server.get("/readyz");
    assert_eq!(ready["index"]["vectors"], 0);
    let mut blobs = Vec::new();
    collect(&data.path().join("blobs"), &mut blobs);
    assert!(blobs.is_empty(), "{blobs:?}");
}

/// Killing the server during a stream of ingests loses no acknowledged image.
#[test]
fn kill_9_during_ingest_loses_no_acknowledged_image() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let acked = std::sync::Mutex::new(Vec::<(String, String)>::new()); // (id, sha256)
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = server.url("/v1/images");
    std::thread::scope(|scope| {
        for worker in 0..4u32 {
            let (acked, stop, url) = (&acked, &stop, url.clone());
            scope.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let png = synthetic_png(worker * 100_000 + i);
                    let form = reqwest::blocking::multipart::Form::new()
                        .part("file", reqwest::blocking::multipart::Part::bytes(png).file_name("x.png"));
                    // A connection error or a cut response is "not acknowledged": only a full 201 counts.
                    let Ok(response) = http.post(&url).multipart(form).send() else { break };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(record) = response.json::<Value>() else { break };
                    acked
                        .lock()
                        .unwrap()
                        .push((record["id"].as_str().unwrap().into(), record["sha256"].as_str().unwrap().into()));
                }
            });
        }
        // Kill while requests are in flight, once a good number have been acknowledged.
        while acked.lock().unwrap().len() < 40 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 40);
    let server = server.restart_after_kill();
    let (_, listed) = server.get("/v1/images?limit=1");
    assert!(listed["total"].as_u64().unwrap() >= acked.len() as u64, "{listed}");
    for (id, sha) in &acked {
        let (status, record) = server.get(&format!("/v1/images/{id}"));
        assert_eq!(status, 200, "acknowledged image {id} lost");
        assert_eq!(record["sha256"], sha.as_str());
        let blob = server.http.get(server.url(&format!("/v1/images/{id}/blob"))).send().unwrap().bytes().unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&blob)), *sha, "blob of {id}");
        let (_, found) = server.post_json("/v1/search", &json!({"image_id": id, "k": 1}));
        assert_eq!(found["results"][0]["id"], id.as_str(), "{id} is searchable after the restart");
    }
}

/// `lens ingest` on a folder and URLs (a job with progress), `lens search`, and the service endpoints.
#[test]
fn cli_ingest_jobs_metrics_and_openapi() {
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--allow-private-urls", "--index", "exact"]);
    let folder = tempfile::tempdir().unwrap();
    for name in ["coffee.jpg", "rocket.jpg", "astronaut_lossless.webp"] {
        std::fs::copy(image_path(name), folder.path().join(name)).unwrap();
    }
    std::fs::write(folder.path().join("notes.txt"), "skipped: not an image extension").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["ingest", "--server", &server.base, "--tags", "cli"])
        .arg(folder.path())
        .arg(files.url("/img/chelsea_palette.png"))
        .arg(files.url("/img/coins_grey.jpg"))
        .arg(files.url("/missing.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "one URL is missing, so the exit is non-zero");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 input(s) failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let job = &lines[3];
    assert_eq!(
        (job["state"].as_str(), job["done"].as_u64(), job["failed"].as_u64()),
        (Some("succeeded"), Some(2), Some(1)),
        "{job}"
    );
    assert_eq!(job["result"]["errors"][0]["code"], "fetch_failed");
    let (_, listed) = server.get("/v1/images?tag=cli");
    assert_eq!(listed["images"].as_array().unwrap().len(), 5);
    let (_, jobs) = server.get("/v1/jobs");
    assert_eq!(jobs["jobs"][0]["kind"], "ingest");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["search", "--server", &server.base, "--k", "3", "a cat"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["results"].as_array().unwrap().len(), 3);

    // Concurrent requests are batched and give the same answers as one at a time.
    let alone = server.post_json("/v1/embeddings", &json!({"input": "a cat"})).1["data"][0]["embedding"].clone();
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..12).map(|_| scope.spawn(|| server.post_json("/v1/embeddings", &json!({"input": "a cat"})).1)).collect();
        for h in handles {
            let together = h.join().unwrap()["data"][0]["embedding"].clone();
            let (a, b): (Vec<f64>, Vec<f64>) =
                (serde_json::from_value(alone.clone()).unwrap(), serde_json::from_value(together).unwrap());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        }
    });

    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["dims"], 24);
    assert_eq!(models["data"][0]["index"]["kind"], "exact");
    assert_eq!(server.get("/healthz").1["status"], "ok");
    let (status, doc) = server.get("/v1/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/v1/images", "/v1/search", "/v1/search/image", "/v1/embeddings", "/v1/index/rebuild", "/v1/jobs/{id}"]
    {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let metrics = server.http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    for needle in [
        "lens_http_requests_total{method=\"POST\",route=\"/v1/images\",status=\"201\"}",
        "lens_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/embeddings\"",
        "lens_inference_seconds_count{input=\"text\"}",
        "lens_index_vectors 5",
        "lens_catalog_images 5",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
}

/// `--model org/name` pulls the checkpoint from the hub (here a local server with its layout) into
/// $LENS_HOME once; a restart reuses it without the hub.
#[test]
fn serve_pulls_a_hub_model_once() {
    let hub = hub_server::HubServer::start("tiny/clip", &server::fixture_model(), hub_server::Faults::default());
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        ("HF_ENDPOINT".to_string(), hub.endpoint.clone()),
        ("LENS_HOME".to_string(), home.path().display().to_string()),
    ];
    let mut server = Server::spawn(std::path::Path::new("tiny/clip"), data.path(), vec![], env);
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][0]["id"], format!("tiny/clip@{}", hub_server::COMMIT));
    assert!(home.path().join("models/tiny--clip/model.safetensors").is_file());
    server.stop();
    let requests = hub.log.lock().unwrap().requests.len();
    let env = vec![
        ("HF_ENDPOINT".to_string(), "http://127.0.0.1:1".to_string()),
        ("LENS_HOME".to_string(), home.path().display().to_string()),
    ];
    let server = Server::spawn(std::path::Path::new("tiny/clip"), data.path(), vec![], env);
    assert_eq!(server.get("/v1/models").1["data"][0]["id"], format!("tiny/clip@{}", hub_server::COMMIT));
    assert_eq!(hub.log.lock().unwrap().requests.len(), requests, "no second download");
}
