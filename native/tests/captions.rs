//! Captioning end to end: the real `lens serve` with the tiny CLIP and the tiny random BLIP fixture,
//! driven over HTTP. Captions come through the persistent job queue (surviving restarts and kill -9,
//! dead-lettered after repeated real failures), `POST /v1/captions` (forms, cache, bad input), and
//! hybrid search finds images by the words of their captions. Captions are compared with
//! `lens caption` on the same files and options: identical text.

#[path = "common/hub_server.rs"]
mod hub_server;
#[path = "common/server.rs"]
mod server;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::{FileServer, Server, assert_error, image_bytes, image_path, synthetic_png};

const SCORE_TOLERANCE: f64 = 1e-5;

fn blip() -> PathBuf {
    server::root().join("models/fixtures/blip-tiny")
}

/// `lens serve` with the caption model and `extra` flags.
fn start(data: &Path, extra: &[&str]) -> Server {
    let blip = blip();
    Server::start(data, &[&["--caption-model", blip.to_str().unwrap()], extra].concat())
}

/// The same data directory with other flags (after `server` stopped or was killed).
fn respawn(data: &Path, extra: &[&str]) -> Server {
    let blip = blip();
    let args = [&["--caption-model", blip.to_str().unwrap()], extra].concat();
    Server::spawn(&server::fixture_model(), data, args.iter().map(|s| s.to_string()).collect(), vec![])
}

/// `lens caption` on one file.
fn cli_caption(path: &Path, options: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["caption", "--model", blip().to_str().unwrap()])
        .args(options)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["input"], path.display().to_string());
    line["caption"].as_str().unwrap().to_string()
}

/// Polls `GET /v1/images/{id}` until it has a caption.
fn wait_caption(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, image) = server.get(&format!("/v1/images/{id}"));
        assert_eq!(status, 200, "{image}");
        if image["caption"].is_string() {
            return image;
        }
        assert!(Instant::now() < deadline, "image {id} has no caption after 120 s: {image}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn caption_jobs(server: &Server, state: Option<&str>) -> Vec<Value> {
    let query = match state {
        Some(s) => format!("/v1/jobs?kind=caption&state={s}&limit=1000"),
        None => "/v1/jobs?kind=caption&limit=1000".to_string(),
    };
    let (status, jobs) = server.get(&query);
    assert_eq!(status, 200, "{jobs}");
    jobs["jobs"].as_array().unwrap().clone()
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap().to_string()
}

fn upload_one(server: &Server, name: &str, bytes: Vec<u8>) -> String {
    let (status, record) = server.upload("/v1/images", &[(name, bytes)], None);
    assert!(status == 201 || status == 200, "{status} {record}");
    id_of(&record)
}

fn metric(server: &Server, needle: &str) -> Option<f64> {
    let text = server.http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    text.lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn blob_file(data: &Path, sha256: &str) -> PathBuf {
    data.join("blobs").join(&sha256[..2]).join(&sha256[2..4]).join(sha256)
}

/// Ingest by upload, multi-upload and URL job: each image gets colours, metadata and, through the
/// job queue, the caption `lens caption` gives for the same file and options.
#[test]
fn ingested_images_are_captioned_through_the_job_queue() {
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &["--allow-private-urls", "--index", "exact", "--caption-beams", "2", "--caption-max-new-tokens", "20"],
    );
    let coffee = upload_one(&server, "coffee.jpg", image_bytes("coffee.jpg"));
    let (status, many) = server.upload(
        "/v1/images",
        &[("rocket.jpg", image_bytes("rocket.jpg")), ("astronaut.png", image_bytes("astronaut.png"))],
        None,
    );
    assert_eq!(status, 201, "{many}");
    let (status, job) =
        server.post_json("/v1/ingest", &json!({"urls": [files.url("/img/chelsea_rgba.png")], "tags": ["cat"]}));
    assert_eq!(status, 202, "{job}");
    let job = server.wait_job(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let chelsea = job["result"]["images"][0].as_str().unwrap().to_string();
    let ids = [coffee, id_of(&many["images"][0]), id_of(&many["images"][1]), chelsea];
    let files_of = ["coffee.jpg", "rocket.jpg", "astronaut.png", "chelsea_rgba.png"];

    let mut captions = HashMap::new();
    for (id, name) in ids.iter().zip(files_of) {
        let image = wait_caption(&server, id);
        let expected = cli_caption(&image_path(name), &["--beams", "2", "--max-new-tokens", "20"]);
        assert_eq!(image["caption"], expected.as_str(), "{name}: the job's caption is the CLI's");
        // Colours and metadata were stored with the image.
        let colors = image["colors"].as_array().expect("colors");
        assert!(!colors.is_empty() && colors.len() <= 5, "{image}");
        assert!(colors[0]["hex"].as_str().unwrap().starts_with('#'), "{image}");
        let share: f64 = colors.iter().map(|c| c["share"].as_f64().unwrap()).sum();
        assert!((share - 1.0).abs() < 1e-3, "{image}");
        assert_eq!(image["metadata"]["mime"], image["mime"], "{image}");
        assert_eq!(image["metadata"]["width"], image["width"], "{image}");
        captions.insert(id.clone(), expected);
    }
    let (_, coffee_record) = server.get(&format!("/v1/images/{}", ids[0]));
    assert_eq!(coffee_record["metadata"]["format"], "jpeg");

    // One job per image, each succeeded at its first attempt, with the caption in its result.
    let jobs = caption_jobs(&server, None);
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for job in &jobs {
        assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job}");
        let image = job["params"]["image"].as_str().unwrap();
        assert_eq!(job["result"]["caption"], captions[image].as_str(), "{job}");
        assert_eq!(job["params"]["options"]["num_beams"], 2);
        assert!(job["last_error"].is_null() && job["next_run_at"].is_null(), "{job}");
    }
    let (_, one) = server.get(&format!("/v1/jobs/{}", jobs[0]["id"].as_str().unwrap()));
    assert_eq!(one["kind"], "caption");

    // The same bytes again: no second job. Lists and search results carry the caption and the rest.
    upload_one(&server, "again.jpg", image_bytes("coffee.jpg"));
    assert_eq!(caption_jobs(&server, None).len(), 4);
    let (_, listed) = server.get("/v1/images");
    for image in listed["images"].as_array().unwrap() {
        assert_eq!(image["caption"], captions[image["id"].as_str().unwrap()].as_str());
        assert!(image["colors"].is_array() && image["metadata"].is_object(), "{image}");
    }
    let (_, found) = server.post_json("/v1/search", &json!({"text": "a photo", "k": 4}));
    for result in found["results"].as_array().unwrap() {
        assert_eq!(result["caption"], captions[result["id"].as_str().unwrap()].as_str());
        assert!(result["colors"].is_array() && result["metadata"].is_object(), "{result}");
    }
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][1]["task"], "captioning", "{models}");
    assert_eq!(jobs[0]["result"]["model"], models["data"][1]["id"]);
    assert!(server.get("/readyz").1["caption_model"].is_string());

    assert_eq!(metric(&server, "lens_caption_jobs{state=\"succeeded\"}"), Some(4.0));
    assert_eq!(metric(&server, "lens_caption_jobs{state=\"queued\"}"), Some(0.0));
    assert!(metric(&server, "lens_caption_seconds_count").unwrap() >= 1.0);
    assert_eq!(metric(&server, "lens_caption_cache_misses_total"), Some(4.0));
    assert_eq!(metric(&server, "lens_caption_jobs_total{outcome=\"succeeded\"}"), Some(4.0));
}

/// Jobs queued by an ingest-only process (`--caption-workers 0`) survive a stop and a kill -9 in the
/// middle of captioning: each image ends with exactly one succeeded job and its caption.
#[test]
fn caption_jobs_survive_restarts_and_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &["--caption-workers", "0"]);
    let mut ids: Vec<String> = (0..6).map(|i| upload_one(&server, "s.png", synthetic_png(i))).collect();
    assert_eq!(caption_jobs(&server, Some("queued")).len(), 6);
    assert!(server.get(&format!("/v1/images/{}", ids[0])).1["caption"].is_null());
    // Deleting an image withdraws its pending job.
    let doomed = upload_one(&server, "d.png", synthetic_png(99));
    assert_eq!(caption_jobs(&server, Some("queued")).len(), 7);
    assert_eq!(server.delete(&format!("/v1/images/{doomed}")), 204);
    assert_eq!(caption_jobs(&server, None).len(), 6);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(caption_jobs(&server, Some("queued")).len(), 6, "no worker here");
    server.stop();
    drop(server);

    // Graceful restart with a worker: all six captioned, none lost, none twice.
    let mut server = respawn(data.path(), &["--caption-workers", "1"]);
    for id in &ids {
        wait_caption(&server, id);
    }
    let jobs = caption_jobs(&server, None);
    assert_eq!(jobs.len(), 6, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "succeeded" && j["attempts"] == 1), "{jobs:?}");
    server.stop();
    drop(server);

    // kill -9 while a worker is captioning: more images, slower captions (the options are the
    // queueing server's), one job at a time.
    let slow = ["--caption-beams", "4", "--caption-max-new-tokens", "40", "--caption-batch-size", "1"];
    let server = respawn(data.path(), &[&slow[..], &["--caption-workers", "0"]].concat());
    ids.extend((100..116).map(|i| upload_one(&server, "k.png", synthetic_png(i))));
    assert_eq!(caption_jobs(&server, Some("queued")).len(), 16);
    drop(server); // SIGKILL
    let mut server = respawn(data.path(), &[&slow[..], &["--caption-workers", "1"]].concat());
    let deadline = Instant::now() + Duration::from_secs(120);
    while caption_jobs(&server, Some("succeeded")).len() < 8 {
        assert!(Instant::now() < deadline, "no progress: {}", server.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let running_at_kill = caption_jobs(&server, Some("running")).len();
    server.kill9();
    let server = server.restart_after_kill();
    for id in &ids {
        wait_caption(&server, id);
    }
    let jobs = caption_jobs(&server, None);
    assert_eq!(jobs.len(), 22, "{jobs:?}");
    let per_image: HashSet<&str> = jobs.iter().map(|j| j["params"]["image"].as_str().unwrap()).collect();
    assert_eq!(per_image.len(), 22, "one job per image");
    for job in &jobs {
        assert_eq!(job["state"], "succeeded", "{job}");
        let attempts = job["attempts"].as_u64().unwrap();
        assert!(
            attempts == 1 || (attempts == 2 && job["last_error"].as_str().unwrap().starts_with("interrupted")),
            "{job}"
        );
    }
    let resumed = jobs.iter().filter(|j| j["attempts"] == 2).count();
    eprintln!("jobs seen running just before kill -9: {running_at_kill}; resumed after it: {resumed}");
    assert!(resumed <= 1, "one worker, batch size 1: at most one job was running");
}

/// A job that keeps failing for a real reason (its blob removed, or corrupted, behind the server's
/// back) is retried with back-off and ends dead with its error; the server stays healthy.
#[test]
fn failing_caption_jobs_go_dead_after_their_attempts() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &["--caption-workers", "0"]);
    let missing = server.upload("/v1/images", &[("a.png", synthetic_png(1))], None).1;
    let corrupt = server.upload("/v1/images", &[("b.png", synthetic_png(2))], None).1;
    server.stop();
    drop(server);
    std::fs::remove_file(blob_file(data.path(), missing["sha256"].as_str().unwrap())).unwrap();
    std::fs::write(blob_file(data.path(), corrupt["sha256"].as_str().unwrap()), b"\x89PNG\r\n\x1a\nnot really")
        .unwrap();

    let server = respawn(
        data.path(),
        &["--caption-workers", "1", "--caption-retry-base-ms", "50", "--caption-max-attempts", "3"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = caption_jobs(&server, Some("dead"));
        if dead.len() == 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "{:?}\n{}", caption_jobs(&server, None), server.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    for job in &dead {
        assert_eq!(job["attempts"], 3, "{job}");
        let error = job["last_error"].as_str().unwrap();
        assert_eq!(job["error"], error, "{job}");
        if job["params"]["image"] == missing["id"] {
            assert!(error.contains("missing"), "{error}");
        } else {
            assert_eq!(job["params"]["image"], corrupt["id"]);
            assert!(error.contains("cannot be decoded"), "{error}");
        }
        let (_, one) = server.get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
        assert_eq!(one["state"], "dead");
    }
    // The server is fine, and captions the next image.
    assert_eq!(server.get("/healthz").1["status"], "ok");
    assert_eq!(server.get("/readyz").0, 200);
    let fine = upload_one(&server, "c.png", synthetic_png(3));
    wait_caption(&server, &fine);
    assert_eq!(metric(&server, "lens_caption_jobs{state=\"dead\"}"), Some(2.0));
    assert_eq!(metric(&server, "lens_caption_jobs_total{outcome=\"dead\"}"), Some(2.0));
    assert_eq!(metric(&server, "lens_caption_jobs_total{outcome=\"retried\"}"), Some(4.0));
    assert_error(&server.get("/v1/jobs?state=zombie"), 400, "invalid_request");
    assert_error(&server.get("/v1/jobs?colour=red"), 400, "invalid_request");
}

/// Words of an image's caption that no other caption shares (letters only, 4 or more).
fn unique_words(captions: &HashMap<String, String>, id: &str) -> Vec<String> {
    let words = |c: &str| -> Vec<String> {
        c.split(|ch: char| !ch.is_alphanumeric()).map(str::to_lowercase).filter(|w| !w.is_empty()).collect()
    };
    words(&captions[id])
        .into_iter()
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_lowercase()))
        .filter(|w| captions.iter().all(|(other, c)| other == id || !c.to_lowercase().contains(&w[..w.len() - 1])))
        .collect()
}

/// Hybrid search: an image whose caption holds a word no other caption has, but which the vector
/// search alone ranks outside its top 50, comes first for that word; the scores follow the formula;
/// weight 0 is the plain vector ranking.
#[test]
fn search_finds_images_by_the_words_of_their_captions() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--index", "exact", "--caption-beams", "1", "--caption-max-new-tokens", "8"]);
    let n = 64;
    let parts: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("{i}.png"), synthetic_png(1000 + i))).collect();
    let refs: Vec<(&str, Vec<u8>)> = parts.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, created) = server.upload("/v1/images", &refs, None);
    assert_eq!(status, 201, "{created}");
    let ids: Vec<String> = created["images"].as_array().unwrap().iter().map(id_of).collect();
    let captions: HashMap<String, String> =
        ids.iter().map(|id| (id.clone(), wait_caption(&server, id)["caption"].as_str().unwrap().to_string())).collect();

    // Pick (image, word): the word only in that caption, the image far down the vector ranking.
    let mut chosen = None;
    'pick: for id in &ids {
        for word in unique_words(&captions, id) {
            let (status, vector) =
                server.post_json("/v1/search", &json!({"text": word, "k": 1000, "hybrid_weight": 0.0}));
            assert_eq!(status, 200, "{vector}");
            let rank = vector["results"].as_array().unwrap().iter().position(|r| r["id"] == id.as_str()).unwrap();
            if rank >= 50 {
                chosen = Some((id.clone(), word, rank));
                break 'pick;
            }
        }
    }
    let (target, word, rank) = chosen.expect("an image with a unique caption word outside the vector top 50");
    eprintln!("searching {word:?}: image {target} (caption {:?}) is vector rank {rank}", captions[&target]);

    for weight in [1.0, 0.9] {
        let (status, found) = server.post_json("/v1/search", &json!({"text": word, "k": 5, "hybrid_weight": weight}));
        assert_eq!(status, 200, "{found}");
        let results = found["results"].as_array().unwrap();
        assert_eq!(results[0]["id"], target.as_str(), "weight {weight}: {found}");
        assert_eq!(results[0]["caption"], captions[&target].as_str());
        for r in results {
            let (score, v) = (r["score"].as_f64().unwrap(), r["vector_score"].as_f64().unwrap());
            let c = r["caption_score"].as_f64().expect("every image has a caption");
            assert!((0.0..=1.0).contains(&c), "{r}");
            assert!((score - ((1.0 - weight) * v + weight * c)).abs() < SCORE_TOLERANCE, "{r}");
        }
        assert!(results[0]["caption_score"].as_f64().unwrap() >= 0.5, "keyword part 1: {found}");
        assert!(results[1..].iter().all(|r| r["caption_score"].as_f64().unwrap() <= 0.5), "{found}");
    }
    // The server default (0.3) is hybrid too: the scores blend.
    let (_, default) = server.post_json("/v1/search", &json!({"text": word, "k": 3}));
    let r = &default["results"][0];
    let (s, v, c) =
        (r["score"].as_f64().unwrap(), r["vector_score"].as_f64().unwrap(), r["caption_score"].as_f64().unwrap());
    assert!((s - (0.7 * v + 0.3 * c)).abs() < SCORE_TOLERANCE, "{r}");

    // Weight 0: the pure vector ranking, scores = cosines of embeddings computed apart.
    let inputs: Vec<Value> = std::iter::once(json!(word)).chain(ids.iter().map(|id| json!({"image_id": id}))).collect();
    let (_, emb) = server.post_json("/v1/embeddings", &json!({"input": inputs}));
    let vectors: Vec<Vec<f64>> = emb["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let mut expected: Vec<(String, f64)> = ids
        .iter()
        .zip(&vectors[1..])
        .map(|(id, v)| (id.clone(), v.iter().zip(&vectors[0]).map(|(a, b)| a * b).sum()))
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (_, plain) = server.post_json("/v1/search", &json!({"text": word, "k": 10, "hybrid_weight": 0}));
    let plain = plain["results"].as_array().unwrap();
    assert_eq!(plain.len(), 10);
    for (r, (id, score)) in plain.iter().zip(&expected) {
        assert_eq!(r["id"], id.as_str());
        assert!((r["score"].as_f64().unwrap() - score).abs() < SCORE_TOLERANCE);
        assert_eq!(r["vector_score"], r["score"]);
        assert!(r["caption_score"].is_null());
    }
    assert!(!plain.iter().any(|r| r["id"] == target.as_str()));
    // A weight and a threshold are checked; the threshold applies to the blended score.
    assert_error(&server.post_json("/v1/search", &json!({"text": word, "hybrid_weight": 1.5})), 400, "invalid_request");
    assert_error(
        &server.post_json("/v1/search", &json!({"image_id": target, "hybrid_weight": 0.5})),
        400,
        "invalid_request",
    );
    let (_, above) =
        server.post_json("/v1/search", &json!({"text": word, "k": 50, "hybrid_weight": 1.0, "threshold": 0.5}));
    let above = above["results"].as_array().unwrap();
    assert!(above.iter().all(|r| r["score"].as_f64().unwrap() >= 0.5) && above[0]["id"] == target.as_str());
    // Query text that looks like FTS syntax is only words.
    for q in ["\"", "NEAR(", "a AND", "*", "caption:x", "\u{1F680} ðŸš€"] {
        let (status, body) = server.post_json("/v1/search", &json!({"text": q, "k": 3, "hybrid_weight": 0.5}));
        assert_eq!(status, 200, "{q:?}: {body}");
    }
    // Tag filter with hybrid scoring.
    let (status, none) =
        server.post_json("/v1/search", &json!({"text": word, "k": 3, "tag": "nope", "hybrid_weight": 1.0}));
    assert_eq!(status, 200);
    assert!(none["results"].as_array().unwrap().is_empty());
}

/// `POST /v1/captions` by upload, stored id and URL; the second identical request is a cache hit;
/// `store` sets the caption; bad input gets its status and code and changes nothing.
#[test]
fn caption_endpoint_forms_cache_and_bad_input() {
    let files = FileServer::start();
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &["--allow-private-urls", "--caption-workers", "0", "--max-file-bytes", "300000"]);
    let opts = ["--beams", "1", "--max-new-tokens", "12"];
    let model = server.get("/v1/models").1["data"][1]["id"].as_str().unwrap().to_string();

    // Upload (multipart with option fields).
    let form = || {
        reqwest::blocking::multipart::Form::new()
            .part("file", reqwest::blocking::multipart::Part::bytes(image_bytes("coffee.jpg")).file_name("coffee.jpg"))
            .text("beams", "1")
            .text("max_new_tokens", "12")
    };
    let post_form = |form: reqwest::blocking::multipart::Form| {
        server::into_json(server.http.post(server.url("/v1/captions")).multipart(form).send().unwrap())
    };
    let (status, first) = post_form(form());
    assert_eq!(status, 200, "{first}");
    let coffee = cli_caption(&image_path("coffee.jpg"), &opts);
    assert_eq!(
        first["captions"][0],
        json!({"input": "coffee.jpg", "caption": coffee, "cached": false, "model": model})
    );
    assert_eq!(first["options"]["num_beams"], 1);
    let (status, second) = post_form(form());
    assert_eq!(status, 200);
    assert_eq!(second["captions"][0]["cached"], true);
    assert_eq!(second["captions"][0]["caption"], coffee.as_str());
    // Other options are another cache entry.
    let (_, other) = post_form(form().text("prompt", "a picture of"));
    assert_eq!(other["captions"][0]["cached"], false);
    assert_eq!(
        other["captions"][0]["caption"],
        cli_caption(&image_path("coffee.jpg"), &[&opts[..], &["--prompt", "a picture of"]].concat()).as_str()
    );

    // Stored id and URL in one JSON request, in order; the id's bytes are the upload's: a cache hit.
    let coffee_id = upload_one(&server, "coffee.jpg", image_bytes("coffee.jpg"));
    let rocket_id = upload_one(&server, "rocket.jpg", image_bytes("rocket.jpg"));
    let body = json!({"images": [{"id": coffee_id}, {"url": files.url("/img/chelsea_rgba.png")}, {"id": rocket_id}],
                      "beams": 1, "max_new_tokens": 12});
    let (status, mixed) = server.post_json("/v1/captions", &body);
    assert_eq!(status, 200, "{mixed}");
    let c = mixed["captions"].as_array().unwrap();
    assert_eq!((c[0]["input"].as_str(), c[0]["cached"].as_bool()), (Some(coffee_id.as_str()), Some(true)));
    assert_eq!(c[0]["caption"], coffee.as_str());
    assert_eq!(c[1]["input"], files.url("/img/chelsea_rgba.png"));
    assert_eq!(c[1]["caption"], cli_caption(&image_path("chelsea_rgba.png"), &opts).as_str());
    assert_eq!(c[2]["caption"], cli_caption(&image_path("rocket.jpg"), &opts).as_str());
    assert_eq!(c[2]["cached"], false);
    let (_, again) = server.post_json("/v1/captions", &body);
    assert!(again["captions"].as_array().unwrap().iter().all(|c| c["cached"] == true), "{again}");
    assert_eq!(
        again["captions"],
        json!(
            c.iter()
                .map(|c| {
                    let mut c = c.clone();
                    c["cached"] = json!(true);
                    c
                })
                .collect::<Vec<_>>()
        )
    );
    // Nothing was stored by these.
    assert!(server.get(&format!("/v1/images/{rocket_id}")).1["caption"].is_null());

    // store: the caption goes on the image (and its queued job is cancelled).
    assert_eq!(caption_jobs(&server, Some("queued")).len(), 2);
    let (status, stored) = server.post_json(
        "/v1/captions",
        &json!({"images": [{"id": rocket_id}], "beams": 1, "max_new_tokens": 12, "store": true}),
    );
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["captions"][0]["stored"], true);
    let rocket_caption = server.get(&format!("/v1/images/{rocket_id}")).1["caption"].clone();
    assert_eq!(rocket_caption, c[2]["caption"]);
    assert_eq!(caption_jobs(&server, Some("cancelled")).len(), 1);

    // Bad input: status, code, and no change.
    let catalog = lens_store::Catalog::open(&data.path().join("catalog.sqlite3")).unwrap();
    let cache_entries = catalog.count_cached_captions().unwrap();
    let jobs_before = caption_jobs(&server, None);
    let post = |body: Value| server.post_json("/v1/captions", &body);
    let id = |id: &str| json!({"images": [{"id": id}]});
    let with = |extra: Value| {
        let mut body = json!({"images": [{"id": coffee_id}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    assert_error(&post(json!({"images": []})), 400, "invalid_request");
    assert_error(&post(json!({})), 400, "invalid_request");
    let many: Vec<Value> = (0..17).map(|_| json!({"id": coffee_id})).collect();
    assert_error(&post(json!({"images": many})), 413, "too_large");
    assert_error(&post(with(json!({"beams": 0}))), 400, "invalid_request");
    assert_error(&post(with(json!({"beams": 99}))), 400, "invalid_request");
    assert_error(&post(with(json!({"max_new_tokens": 0}))), 400, "invalid_request");
    assert_error(&post(with(json!({"max_new_tokens": 10000}))), 400, "invalid_request");
    assert_error(&post(with(json!({"min_new_tokens": 50, "max_new_tokens": 10}))), 400, "invalid_request");
    assert_error(&post(with(json!({"repetition_penalty": -1.0}))), 400, "invalid_request");
    assert_error(&post(with(json!({"temperature": 0.7}))), 400, "invalid_request"); // sampling needs beams 1
    assert_error(&post(with(json!({"prompt": "x".repeat(600)}))), 413, "too_large");
    assert_error(&post(with(json!({"beam": 2}))), 422, "invalid_json");
    assert_error(&post(with(json!({"beams": "two"}))), 422, "invalid_json");
    assert_error(&post(json!({"images": [{"id": coffee_id, "url": "http://x/"}]})), 400, "invalid_request");
    assert_error(&post(json!({"images": [{"path": "/etc/passwd"}]})), 422, "invalid_json");
    assert_error(&post(id("0123456789abcdef0123456789abcdef")), 404, "not_found");
    assert_error(&post(json!({"images": [{"id": coffee_id}, {"id": "nope"}], "store": true})), 404, "not_found");
    assert_error(
        &post(json!({"images": [{"url": files.url("/img/rocket.jpg")}], "store": true})),
        400,
        "invalid_request",
    );
    assert_error(&post(json!({"images": [{"url": files.url("/missing")}]})), 422, "fetch_failed");
    assert_error(&post(json!({"images": [{"url": "file:///etc/passwd"}]})), 400, "url_refused");
    assert_error(
        &server.upload("/v1/captions", &[("c.jpg", image_bytes("corrupt_truncated.jpg"))], None),
        422,
        "corrupt_image",
    );
    assert_error(
        &server.upload("/v1/captions", &[("n.jpg", image_bytes("not_an_image.jpg"))], None),
        415,
        "unsupported_format",
    );
    assert_error(&server.upload("/v1/captions", &[("a.png", image_bytes("astronaut.png"))], None), 413, "too_large");
    let mixed_bad = server.upload(
        "/v1/captions",
        &[("ok.png", synthetic_png(5)), ("bad.jpg", image_bytes("corrupt_truncated.jpg"))],
        None,
    );
    assert_error(&mixed_bad, 422, "corrupt_image");
    assert!(mixed_bad.1["error"]["message"].as_str().unwrap().starts_with("image 2"), "{}", mixed_bad.1);
    let seventeen: Vec<(&str, Vec<u8>)> = (0..17).map(|i| ("s.png", synthetic_png(i))).collect();
    assert_error(&server.upload("/v1/captions", &seventeen, None), 413, "too_large");
    assert_error(&server.upload("/v1/captions", &[], Some("x")), 400, "invalid_request"); // only a stray field
    assert_error(&post_form(form().text("beams", "0")), 400, "invalid_request");
    assert_error(&post_form(form().text("store", "true")), 400, "invalid_request");
    let raw = |body: &'static str, ct: &str| {
        server::into_json(
            server.http.post(server.url("/v1/captions")).header("content-type", ct).body(body).send().unwrap(),
        )
    };
    assert_error(&raw("{not json", "application/json"), 400, "invalid_json");
    assert_error(&raw("hello", "text/plain"), 415, "unsupported_media_type");
    assert_eq!(catalog.count_cached_captions().unwrap(), cache_entries, "no caption cached by a failed request");
    assert_eq!(caption_jobs(&server, None), jobs_before);
    assert_eq!(server.get(&format!("/v1/images/{rocket_id}")).1["caption"], rocket_caption);
    assert!(server.get(&format!("/v1/images/{coffee_id}")).1["caption"].is_null());
    assert_eq!(server.get("/v1/images").1["total"], 2);
    assert!(metric(&server, "lens_caption_cache_hits_total").unwrap() >= 5.0);

    // Without a caption model: 503 captioning_disabled, and ingest queues no caption job.
    let plain_data = tempfile::tempdir().unwrap();
    let plain = Server::start(plain_data.path(), &[]);
    assert_error(&plain.post_json("/v1/captions", &id(&coffee_id)), 503, "captioning_disabled");
    assert_error(
        &plain.upload("/v1/captions", &[("c.jpg", image_bytes("coffee.jpg"))], None),
        503,
        "captioning_disabled",
    );
    upload_one(&plain, "c.jpg", image_bytes("coffee.jpg"));
    assert!(caption_jobs(&plain, None).is_empty());
    assert_eq!(plain.get("/v1/models").1["data"].as_array().unwrap().len(), 1);

    // The OpenAPI document has the new route and fields.
    let (_, doc) = server.get("/v1/openapi.json");
    assert!(doc["paths"]["/v1/captions"]["post"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["SearchResult"]["properties"]["caption_score"].is_object());
    assert!(doc["components"]["schemas"]["Image"]["properties"]["colors"].is_object());
}

/// `lens caption`: a line per input in order, error lines for unreadable files and a non-zero exit,
/// the others still captioned; the same as the captions of the files alone.
#[test]
fn cli_captions_files_and_reports_bad_ones() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["caption", "--model", blip().to_str().unwrap(), "--beams", "1", "--max-new-tokens", "12"])
        .arg(image_path("rocket.jpg"))
        .arg("/nonexistent/x.png")
        .arg(image_path("corrupt_truncated.jpg"))
        .arg(image_path("coffee.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 of 4 image(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let opts = ["--beams", "1", "--max-new-tokens", "12"];
    assert_eq!(lines[0]["caption"], cli_caption(&image_path("rocket.jpg"), &opts).as_str());
    assert!(lines[1]["error"].as_str().unwrap().contains("cannot read"), "{}", lines[1]);
    assert!(lines[2]["error"].as_str().unwrap().contains("corrupt"), "{}", lines[2]);
    assert_eq!(lines[3]["caption"], cli_caption(&image_path("coffee.jpg"), &opts).as_str());
    assert!(!lines[0]["caption"].as_str().unwrap().is_empty());
    // Options are checked before anything runs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["caption", "--model", blip().to_str().unwrap(), "--beams", "0"])
        .arg(image_path("rocket.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("num_beams"));
}

/// `--caption-model org/name` is pulled from the hub (a local server with its layout) into
/// $LENS_HOME once, like `--model`, and captions with it.
#[test]
fn caption_model_is_pulled_from_the_hub_by_repo_id() {
    let hub = hub_server::HubServer::start("tiny/blip", &blip(), hub_server::Faults::default());
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        ("HF_ENDPOINT".to_string(), hub.endpoint.clone()),
        ("LENS_HOME".to_string(), home.path().display().to_string()),
    ];
    let args = ["--caption-model", "tiny/blip", "--caption-beams", "1"].map(String::from).to_vec();
    let server = Server::spawn(&server::fixture_model(), data.path(), args, env);
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][1]["id"], format!("tiny/blip@{}", hub_server::COMMIT), "{models}");
    assert!(home.path().join("models/tiny--blip/model.safetensors").is_file());
    let id = upload_one(&server, "rocket.jpg", image_bytes("rocket.jpg"));
    let captioned = wait_caption(&server, &id);
    assert_eq!(captioned["caption"], cli_caption(&image_path("rocket.jpg"), &["--beams", "1"]).as_str());
    let (_, ready) = server.get("/readyz");
    assert_eq!(ready["caption_model"], models["data"][1]["id"]);
}
