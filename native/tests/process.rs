//! `lens serve` as a process, for what only a process shows: start-up (models pulled from a hub once),
//! SIGTERM (requests drained, the index snapshot saved), kill -9 (nothing acknowledged lost, jobs
//! resumed), S3 from the binary's environment, the `lens ingest` / `lens search` clients, and URLs refused
//! before the binary connects anywhere. Every
//! other behaviour of the API is tested in process (`tests/api`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::app::blip;
use crate::common::files::{FileServer, fixture_model, image_bytes, image_path, llava_dir, synthetic_png};
use crate::common::hub_server;
use crate::common::server::Server;
use serde_json::{Value, json};

fn ids(results: &Value) -> Vec<String> {
    results["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// `--model org/name` pulls the checkpoint from the hub (here a local server with its layout) into
/// $LENS_HOME once; a restart reuses it without the hub.
#[test]
fn serve_pulls_a_hub_model_once() {
    let hub = hub_server::HubServer::start("tiny/clip", &fixture_model(), hub_server::Faults::default());
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

/// `--caption-model org/name` is pulled like `--model`, and captions with it.
#[test]
fn serve_pulls_a_hub_caption_model() {
    let hub = hub_server::HubServer::start("tiny/blip", &blip(), hub_server::Faults::default());
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        ("HF_ENDPOINT".to_string(), hub.endpoint.clone()),
        ("LENS_HOME".to_string(), home.path().display().to_string()),
    ];
    let args = ["--caption-model", "tiny/blip", "--caption-beams", "1"].map(String::from).to_vec();
    let server = Server::spawn(&fixture_model(), data.path(), args, env);
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][1]["id"], format!("tiny/blip@{}", hub_server::COMMIT), "{models}");
    assert!(home.path().join("models/tiny--blip/model.safetensors").is_file());
    let (_, image) = server.upload("/v1/images", &[("rocket.jpg", image_bytes("rocket.jpg"))], None);
    let id = image["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !server.get(&format!("/v1/images/{id}")).1["caption"].is_string() {
        assert!(Instant::now() < deadline, "no caption: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM: the process exits 0 and saves the HNSW snapshot, loaded as it was by the next start;
/// kill -9: the next start loads that snapshot and catches up with the catalog (the image uploaded
/// after it inserted, the one deleted after it removed), and every image is there and searchable.
#[test]
fn sigterm_saves_the_index_and_kill_9_catches_up_from_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--index", "hnsw"]);
    let mut all = Vec::new();
    for seed in 0..5 {
        let (status, image) = server.upload("/v1/images", &[("s.png", synthetic_png(seed))], None);
        assert_eq!(status, 201, "{image}");
        all.push(image["id"].as_str().unwrap().to_string());
    }
    let (_, before) = server.post_json("/v1/search", &json!({"text": "a cat", "k": 10}));
    let mut server = server.restart(); // SIGTERM, then a new process
    assert_eq!(snapshot_loaded(&server), [5, 0, 0]);
    let (_, after) = server.post_json("/v1/search", &json!({"text": "a cat", "k": 10}));
    assert_eq!(ids(&after), ids(&before));
    let (status, image) = server.upload("/v1/images", &[("s.png", synthetic_png(99))], None);
    assert_eq!(status, 201);
    all.push(image["id"].as_str().unwrap().to_string());
    let gone = all.remove(0);
    assert_eq!(server.delete(&format!("/v1/images/{gone}")), 204);
    server.kill9();
    let server = server.restart_after_kill();
    assert_eq!(snapshot_loaded(&server), [5, 1, 1]);
    let (_, again) = server.post_json("/v1/search", &json!({"text": "a cat", "k": 10}));
    assert_eq!(ids(&again).iter().collect::<HashSet<_>>(), all.iter().collect::<HashSet<_>>());
}

/// `[vectors, inserted, removed]` from the server's "index loaded from its snapshot" log line.
fn snapshot_loaded(server: &Server) -> [u64; 3] {
    let log = server.log();
    let line = log.lines().find(|l| l.contains("index loaded from its snapshot")).unwrap_or_else(|| panic!("{log}"));
    let fields = &serde_json::from_str::<Value>(line).unwrap()["fields"];
    ["vectors", "inserted", "removed"].map(|f| fields[f].as_u64().unwrap_or_else(|| panic!("{f} in {line}")))
}

/// With `--index-snapshot-interval-s`, the graph is saved while serving: after kill -9 the next start
/// loads it with nothing to catch up (every upload came before the snapshot).
#[test]
fn periodic_index_snapshots_spare_a_rebuild_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &["--index", "hnsw", "--index-snapshot-interval-s", "1"]);
    for seed in 0..3 {
        assert_eq!(server.upload("/v1/images", &[("s.png", synthetic_png(seed))], None).0, 201);
    }
    // A snapshot taken between two uploads holds fewer: wait for one with all three.
    let saved_all = |log: &str| {
        log.lines()
            .filter(|l| l.contains("index snapshot saved"))
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["fields"]["vectors"].as_u64() == Some(3)))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !saved_all(&server.log()) {
        assert!(Instant::now() < deadline, "no periodic snapshot: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();
    let server = server.restart_after_kill();
    assert_eq!(snapshot_loaded(&server), [3, 0, 0]);
    let (_, found) = server.post_json("/v1/search", &json!({"text": "a cat", "k": 10}));
    assert_eq!(ids(&found).len(), 3);
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
            std::thread::sleep(Duration::from_millis(5));
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
        assert_eq!(lens_core::ids::sha256_hex(&blob), *sha, "blob of {id}");
        let (_, found) = server.post_json("/v1/search", &json!({"image_id": id, "k": 1}));
        assert_eq!(found["results"][0]["id"], id.as_str(), "{id} is searchable after the restart");
    }
}

/// Image blobs under a data directory (temp files of unfinished writes left out).
fn blob_count(data: &std::path::Path) -> usize {
    let mut names = Vec::new();
    crate::common::files::collect_files(&data.join("blobs"), &mut names);
    names.iter().filter(|n| !n.starts_with('.')).count()
}

/// kill -9 in the middle of an 8-file upload, once half its blobs are written: the request stores all its
/// images or none (one transaction, after every blob), and the blobs it wrote go at the next start (the
/// orphan sweep, here with no grace period).
#[test]
fn kill_9_during_a_multi_file_upload_stores_all_or_nothing_and_its_blobs_are_swept() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &["--orphan-grace-s", "0"]);
    let files: Vec<Vec<u8>> = (0..8).map(|i| crate::common::files::synthetic_png_sized(9_000 + i, 600)).collect();
    let url = server.url("/v1/images");
    let blobs_at_kill = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut form = reqwest::blocking::multipart::Form::new();
            for (i, png) in files.iter().enumerate() {
                let part = reqwest::blocking::multipart::Part::bytes(png.clone()).file_name(format!("{i}.png"));
                form = form.part("file", part);
            }
            // Cut by the kill: never acknowledged.
            let _ = reqwest::blocking::Client::new().post(&url).multipart(form).send();
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while blob_count(data.path()) < 4 {
            assert!(Instant::now() < deadline, "the upload wrote no blobs; log:\n{}", server.log());
            std::thread::sleep(Duration::from_micros(200));
        }
        server.kill9();
        blob_count(data.path())
    });
    let server = server.restart_after_kill();
    let (_, listed) = server.get("/v1/images?limit=100");
    let stored = listed["total"].as_u64().unwrap() as usize;
    eprintln!("killed with {blobs_at_kill} of 8 blobs written: {stored} images stored");
    assert!(
        stored == 0 || (stored == 8 && blobs_at_kill == 8),
        "{stored} of the request's 8 images are stored, with {blobs_at_kill} blobs written at the kill"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_count(data.path()) != stored {
        assert!(
            Instant::now() < deadline,
            "{} blobs for {stored} images; log:\n{}",
            blob_count(data.path()),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if stored == 0 {
        assert!(server.log().contains("orphan blobs removed"), "{}", server.log());
        // The same upload again succeeds whole.
        let named: Vec<(&str, Vec<u8>)> = files.iter().map(|f| ("x.png", f.clone())).collect();
        let (status, body) = server.upload("/v1/images", &named, None);
        assert_eq!(status, 201, "{body}");
        assert_eq!(blob_count(data.path()), 8);
    }
}

fn jobs_of(server: &Server, kind: &str, state: &str) -> Vec<Value> {
    let (status, jobs) = server.get(&format!("/v1/jobs?kind={kind}&state={state}&limit=1000"));
    assert_eq!(status, 200, "{jobs}");
    jobs["jobs"].as_array().unwrap().clone()
}

/// The succeeded jobs of `kind`, once there are `count` (or the deadline passed). A job is marked succeeded
/// just after its result is stored on the image, in its own transaction: the image shows it a moment first.
fn succeeded_jobs(server: &Server, kind: &str, count: usize, deadline: Instant) -> Vec<Value> {
    loop {
        let jobs = jobs_of(server, kind, "succeeded");
        if jobs.len() >= count || Instant::now() >= deadline {
            return jobs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn caption_jobs(server: &Server, state: &str) -> Vec<Value> {
    jobs_of(server, "caption", state)
}

/// Analysis jobs queued with their images survive kill -9 (no worker ran them), and a second kill -9 while
/// the worker analyses: after the restart every image has its analysis and exactly one succeeded job.
#[test]
fn analysis_jobs_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let llava = llava_dir();
    let flags = |workers: &str| -> Vec<String> {
        let chat = llava.path().display().to_string();
        ["--chat-model", &chat, "--analysis-max-tokens", "40", "--analysis-workers", workers]
            .map(str::to_string)
            .to_vec()
    };
    let server = Server::spawn(&fixture_model(), data.path(), flags("0"), vec![]);
    let ids: Vec<String> = (200..208)
        .map(|i| {
            let (status, image) = server.upload("/v1/images?analyze=true", &[("a.png", synthetic_png(i))], None);
            assert_eq!(status, 201, "{image}");
            image["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(jobs_of(&server, "analysis", "queued").len(), 8);
    drop(server); // SIGKILL
    let mut server = Server::spawn(&fixture_model(), data.path(), flags("1"), vec![]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while jobs_of(&server, "analysis", "succeeded").len() < 2 {
        assert!(Instant::now() < deadline, "no progress: {}", server.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    let server = server.restart_after_kill();
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in &ids {
        while server.get(&format!("/v1/images/{id}")).1["analysis"].is_null() {
            assert!(Instant::now() < deadline, "{id} has no analysis: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let jobs = succeeded_jobs(&server, "analysis", 8, deadline);
    let per_image: HashSet<&str> = jobs.iter().map(|j| j["params"]["image"].as_str().unwrap()).collect();
    assert_eq!((jobs.len(), per_image.len()), (8, 8), "{jobs:?}");
    assert!(jobs_of(&server, "analysis", "dead").is_empty());
}

/// kill -9 while a worker is captioning (slow captions, one job at a time): after the restart each
/// image ends with exactly one succeeded job and its caption; at most the one job that was running
/// took a second attempt, recorded as interrupted.
#[test]
fn caption_jobs_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let blip = blip();
    let slow = [
        "--caption-model",
        blip.to_str().unwrap(),
        "--caption-beams",
        "4",
        "--caption-max-new-tokens",
        "40",
        "--caption-batch-size",
        "1",
    ];
    let server = Server::start(data.path(), &[&slow[..], &["--caption-workers", "0"]].concat());
    let ids: Vec<String> = (100..116)
        .map(|i| {
            server.upload("/v1/images", &[("k.png", synthetic_png(i))], None).1["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(caption_jobs(&server, "queued").len(), 16);
    drop(server); // SIGKILL
    let mut server = Server::start(data.path(), &[&slow[..], &["--caption-workers", "1"]].concat());
    let deadline = Instant::now() + Duration::from_secs(120);
    while caption_jobs(&server, "succeeded").len() < 8 {
        assert!(Instant::now() < deadline, "no progress: {}", server.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    let server = server.restart_after_kill();
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in &ids {
        while !server.get(&format!("/v1/images/{id}")).1["caption"].is_string() {
            assert!(Instant::now() < deadline, "{id} has no caption: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let jobs = succeeded_jobs(&server, "caption", 16, deadline);
    assert_eq!(jobs.len(), 16, "{jobs:?}");
    let per_image: HashSet<&str> = jobs.iter().map(|j| j["params"]["image"].as_str().unwrap()).collect();
    assert_eq!(per_image.len(), 16, "one job per image");
    for job in &jobs {
        let attempts = job["attempts"].as_u64().unwrap();
        assert!(
            attempts == 1 || (attempts == 2 && job["last_error"].as_str().unwrap().starts_with("interrupted")),
            "{job}"
        );
    }
    assert!(
        jobs.iter().filter(|j| j["attempts"] == 2).count() <= 1,
        "one worker, batch size 1: at most one was running"
    );
}

/// Blobs in S3 (moto, a real S3-compatible server) with the credentials from the environment:
/// ingest, bytes back, search, delete (the object goes), presigned redirects, and a restart.
#[test]
fn serve_on_s3() {
    let moto = lens_store::testing::MotoServer::start();
    let cfg = moto.s3_config("lens-serve-test");
    tokio::runtime::Runtime::new().unwrap().block_on(lens_store::S3BlobStore::create_bucket_if_missing(&cfg)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", lens_store::testing::MOTO_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", lens_store::testing::MOTO_SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    let s3 =
        ["--blob-store", "s3", "--s3-bucket", "lens-serve-test", "--s3-endpoint", &moto.endpoint, "--s3-path-style"];
    let mut server = Server::start_with_env(data.path(), &[s3.as_slice(), &["--s3-prefix", "blobs/"]].concat(), &env);
    let names = ["coffee.jpg", "rocket.jpg", "chelsea_rgba.png"];
    let parts: Vec<(&str, Vec<u8>)> = names.iter().map(|n| (*n, image_bytes(n))).collect();
    let (status, many) = server.upload("/v1/images", &parts, None);
    assert_eq!(status, 201, "{many}");
    let ids: Vec<String> =
        many["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    for (id, name) in ids.iter().zip(names) {
        let blob = server.http.get(server.url(&format!("/v1/images/{id}/blob"))).send().unwrap();
        assert_eq!(blob.bytes().unwrap().as_ref(), image_bytes(name).as_slice());
    }
    let (_, found) = server.upload("/v1/search/image", &[("q.jpg", image_bytes("rocket.jpg"))], None);
    assert_eq!(found["results"][0]["id"], ids[1].as_str());
    assert_eq!(server.delete(&format!("/v1/images/{}", ids[0])), 204);
    let (kept, gone) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use lens_store::BlobStore as _;
        let store = lens_store::S3BlobStore::connect(lens_store::S3Config { prefix: "blobs/".into(), ..cfg.clone() })
            .await
            .unwrap();
        let (rocket, coffee) = (
            lens_core::ids::sha256_hex(&image_bytes("rocket.jpg")),
            lens_core::ids::sha256_hex(&image_bytes("coffee.jpg")),
        );
        (store.exists(&rocket).await.unwrap(), store.exists(&coffee).await.unwrap())
    });
    assert!(kept && !gone, "the objects are under the prefix, and the deleted image's is gone");
    server.kill9();
    let server = server.restart_after_kill();
    let blob = server.http.get(server.url(&format!("/v1/images/{}/blob", ids[2]))).send().unwrap();
    assert_eq!(blob.bytes().unwrap().as_ref(), image_bytes("chelsea_rgba.png").as_slice());
    assert!(!data.path().join("blobs").exists(), "no local blobs with --blob-store s3");
    drop(server);

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
    assert_eq!(fetched.bytes().unwrap().as_ref(), image_bytes("coffee.jpg").as_slice());
}

/// `lens ingest` on a folder and URLs (a job with progress) and `lens search` by text and by image.
#[test]
fn cli_ingest_and_search_talk_to_a_server() {
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

    let search = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
            .args(["search", "--server", &server.base, "--k", "3"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(ids(&search(&["a cat"])).len(), 3);
    let by_image = search(&["--image", image_path("rocket.jpg").to_str().unwrap()]);
    let rocket = lens_core::ids::sha256_hex(&image_bytes("rocket.jpg"));
    assert_eq!(by_image["results"][0]["id"], &rocket[..32]);
    // A server error comes back as one line with its code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["search", "--server", &server.base, "--k", "0", "a cat"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("400") && stderr.contains("invalid_request"), "{stderr}");
}

#[test]
fn ipv6_spellings_of_internal_addresses_and_jpegs_cut_short_are_refused() {
    // A listener that records whether anything connected: the server must not even try.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    for url in [
        format!("http://[::127.0.0.1]:{port}/a.png"),      // IPv4-compatible
        format!("http://[::ffff:127.0.0.1]:{port}/a.png"), // IPv4-mapped
        format!("http://[2002:7f00:1::1]:{port}/a.png"),   // 6to4 of 127.0.0.1
        format!("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:{port}/a.png"), // Teredo
        format!("http://[fec0::1]:{port}/a.png"),          // site-local
        format!("http://[64:ff9b::7f00:1]:{port}/a.png"),  // NAT64 of 127.0.0.1
    ] {
        let (status, body) = server.post_json("/v1/images", &json!({"url": url}));
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("url_refused")), "{url}: {body}");
    }
    assert!(listener.accept().is_err(), "nothing connected to the listener");
    // A JPEG whose scan stops early, an end-of-image marker after it (Pillow would keep it, the rest grey).
    let whole = image_bytes("coffee.jpg");
    let sos = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut cut = whole[..sos + 200].to_vec();
    cut.extend([0xFF, 0xD9]);
    let (status, body) = server.upload("/v1/images", &[("cut.jpg", cut)], None);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("corrupt_image")), "{body}");
    let (_, listed) = server.get("/v1/images");
    assert_eq!(listed["images"].as_array().map(Vec::len), Some(0), "nothing stored: {listed}");
}
