//! Captions: through the job queue at ingest (equal to BLIP run apart on the same file and options),
//! dead-lettered after real failures, surviving a restart; `POST /v1/captions` (forms, cache, `store`,
//! bad input); hybrid search by the words of captions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use burn::backend::NdArray;
use lens_core::image::{DecodeLimits, decode_image};
use lens_models::blip::{BlipPipeline, CaptionOptions};
use serde_json::{Value, json};

use crate::api::SCORE_TOLERANCE;
use crate::common::app::{TestApp, blip, multipart};
use crate::common::assert_error;
use crate::common::files::{FileServer, image_bytes, synthetic_png};

/// The caption BLIP gives `name` with `beams` and `max_new_tokens` (and `prompt`), run apart.
fn reference_caption(name: &str, beams: usize, max_new_tokens: usize, prompt: Option<&str>) -> String {
    let pipeline = BlipPipeline::<NdArray<f32>>::from_dir(blip(), &Default::default()).unwrap();
    let mut options = CaptionOptions { prompt: prompt.map(str::to_string), ..Default::default() };
    options.generation.num_beams = beams;
    options.generation.max_new_tokens = max_new_tokens;
    let image = decode_image(&image_bytes(name), &DecodeLimits::default()).unwrap();
    pipeline.caption(&[image], &options).unwrap().remove(0)
}

async fn caption_jobs(app: &TestApp, state: Option<&str>) -> Vec<Value> {
    let query = match state {
        Some(s) => format!("/v1/jobs?kind=caption&state={s}&limit=1000"),
        None => "/v1/jobs?kind=caption&limit=1000".to_string(),
    };
    let (status, jobs) = app.get(&query).await;
    assert_eq!(status, 200, "{jobs}");
    jobs["jobs"].as_array().unwrap().clone()
}

/// Every caption job once none is queued or running: a caption is stored before its job is marked done, so
/// a test that saw the caption waits here for the job's record.
async fn settled_caption_jobs(app: &TestApp) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = caption_jobs(app, None).await;
        if jobs.iter().all(|j| j["state"] != "running" && j["state"] != "queued") {
            return jobs;
        }
        assert!(Instant::now() < deadline, "caption jobs still running after 30 s: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn id_of(image: &Value) -> String {
    image["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_images_are_captioned_through_the_job_queue() {
    let files = FileServer::start();
    let app = TestApp::captioning(|s| {
        s.fetch.allow_private_urls = Some(true);
        s.index.kind = Some(lens::config::IndexKind::Exact);
        s.captions.beams = Some(2);
        s.captions.max_new_tokens = Some(20);
    })
    .await;
    let coffee = app.upload_one("coffee.jpg", image_bytes("coffee.jpg")).await;
    let (status, many) = app
        .upload(
            "/v1/images",
            &[("rocket.jpg", image_bytes("rocket.jpg")), ("astronaut.png", image_bytes("astronaut.png"))],
            None,
        )
        .await;
    assert_eq!(status, 201, "{many}");
    let (status, job) =
        app.post_json("/v1/ingest", &json!({"urls": [files.url("/img/chelsea_rgba.png")], "tags": ["cat"]})).await;
    assert_eq!(status, 202, "{job}");
    let job = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let chelsea = job["result"]["images"][0].as_str().unwrap().to_string();
    let ids = [coffee, id_of(&many["images"][0]), id_of(&many["images"][1]), chelsea];
    let names = ["coffee.jpg", "rocket.jpg", "astronaut.png", "chelsea_rgba.png"];

    let mut captions = HashMap::new();
    for (id, name) in ids.iter().zip(names) {
        let image = app.wait_caption(id).await;
        let expected = reference_caption(name, 2, 20, None);
        assert_eq!(image["caption"], expected.as_str(), "{name}: the job's caption is BLIP's");
        let colors = image["colors"].as_array().expect("colors");
        assert!(!colors.is_empty() && colors.len() <= 5, "{image}");
        let share: f64 = colors.iter().map(|c| c["share"].as_f64().unwrap()).sum();
        assert!((share - 1.0).abs() < 1e-3, "{image}");
        assert_eq!(image["metadata"]["width"], image["width"], "{image}");
        captions.insert(id.clone(), expected);
    }

    // One job per image, each succeeded at its first attempt, with the caption in its result.
    let jobs = settled_caption_jobs(&app).await;
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for job in &jobs {
        assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job}");
        assert_eq!(job["result"]["caption"], captions[job["params"]["image"].as_str().unwrap()].as_str(), "{job}");
        assert_eq!(job["params"]["options"]["num_beams"], 2);
        assert!(job["last_error"].is_null() && job["next_run_at"].is_null(), "{job}");
    }
    // The same bytes again: no second job. Lists and search results carry the caption.
    app.upload_one("again.jpg", image_bytes("coffee.jpg")).await;
    assert_eq!(caption_jobs(&app, None).await.len(), 4);
    let (_, listed) = app.get("/v1/images").await;
    for image in listed["images"].as_array().unwrap() {
        assert_eq!(image["caption"], captions[image["id"].as_str().unwrap()].as_str());
    }
    let (_, found) = app.post_json("/v1/search", &json!({"text": "a photo", "k": 4})).await;
    for result in found["results"].as_array().unwrap() {
        assert_eq!(result["caption"], captions[result["id"].as_str().unwrap()].as_str());
    }
    let (_, models) = app.get("/v1/models").await;
    assert_eq!(models["data"][1]["task"], "captioning", "{models}");
    assert_eq!(models["data"][1]["defaults"]["num_beams"], 2, "{models}");
    assert_eq!(jobs[0]["result"]["model"], models["data"][1]["id"]);
    assert_eq!(app.get("/readyz").await.1["caption_model"], models["data"][1]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_restart_and_a_deleted_image_withdraws_its_job() {
    let app = TestApp::captioning(|s| s.captions.workers = Some(0)).await;
    let mut ids = Vec::new();
    for seed in 0..4 {
        ids.push(app.upload_one("s.png", synthetic_png(seed)).await);
    }
    let doomed = app.upload_one("d.png", synthetic_png(99)).await;
    assert_eq!(caption_jobs(&app, Some("queued")).await.len(), 5);
    assert_eq!(app.delete(&format!("/v1/images/{doomed}")).await, 204);
    assert_eq!(caption_jobs(&app, None).await.len(), 4, "the deleted image's job is withdrawn");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(caption_jobs(&app, Some("queued")).await.len(), 4, "no worker here");
    assert!(app.get(&format!("/v1/images/{}", ids[0])).await.1["caption"].is_null());

    let app = app
        .reopen(|s| {
            s.captions.model = Some(blip());
            s.captions.workers = Some(1);
        })
        .await;
    for id in &ids {
        app.wait_caption(id).await;
    }
    let jobs = settled_caption_jobs(&app).await;
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "succeeded" && j["attempts"] == 1), "{jobs:?}");
}

/// The file a local blob store keeps `sha256` in.
fn blob_file(data: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    data.join("blobs").join(&sha256[..2]).join(&sha256[2..4]).join(sha256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_jobs_are_retried_then_dead_with_their_error() {
    let app = TestApp::captioning(|s| s.captions.workers = Some(0)).await;
    let missing = app.upload("/v1/images", &[("a.png", synthetic_png(1))], None).await.1;
    let corrupt = app.upload("/v1/images", &[("b.png", synthetic_png(2))], None).await.1;
    std::fs::remove_file(blob_file(app.data(), missing["sha256"].as_str().unwrap())).unwrap();
    std::fs::write(blob_file(app.data(), corrupt["sha256"].as_str().unwrap()), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let app = app
        .reopen(|s| {
            s.captions.model = Some(blip());
            s.captions.workers = Some(1);
            s.captions.retry_base_ms = Some(50);
            s.captions.max_attempts = Some(3);
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = caption_jobs(&app, Some("dead")).await;
        if dead.len() == 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "{:?}", caption_jobs(&app, None).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    }
    // The service is fine, and captions the next image.
    assert_eq!(app.get("/readyz").await.0, 200);
    let fine = app.upload_one("c.png", synthetic_png(3)).await;
    app.wait_caption(&fine).await;
    assert_error(&app.get("/v1/jobs?state=zombie").await, 400, "invalid_request");
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

/// An image whose caption holds a word no other caption has, but which the vector search alone ranks
/// outside its top 50, comes first for that word; the scores follow the formula; weight 0 is the plain
/// vector ranking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_finds_images_by_the_words_of_their_captions() {
    let app = TestApp::captioning(|s| {
        s.index.kind = Some(lens::config::IndexKind::Exact);
        s.captions.beams = Some(1);
        s.captions.max_new_tokens = Some(8);
    })
    .await;
    let parts: Vec<(String, Vec<u8>)> = (0..64).map(|i| (format!("{i}.png"), synthetic_png(1000 + i))).collect();
    let refs: Vec<(&str, Vec<u8>)> = parts.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let (status, created) = app.upload("/v1/images", &refs, None).await;
    assert_eq!(status, 201, "{created}");
    let ids: Vec<String> = created["images"].as_array().unwrap().iter().map(id_of).collect();
    let mut captions = HashMap::new();
    for id in &ids {
        captions.insert(id.clone(), app.wait_caption(id).await["caption"].as_str().unwrap().to_string());
    }
    let mut chosen = None;
    'pick: for id in &ids {
        for word in unique_words(&captions, id) {
            let (_, vector) =
                app.post_json("/v1/search", &json!({"text": word, "k": 1000, "hybrid_weight": 0.0})).await;
            let rank = vector["results"].as_array().unwrap().iter().position(|r| r["id"] == id.as_str()).unwrap();
            if rank >= 50 {
                chosen = Some((id.clone(), word));
                break 'pick;
            }
        }
    }
    let (target, word) = chosen.expect("an image with a unique caption word outside the vector top 50");

    for weight in [1.0, 0.9] {
        let (status, found) =
            app.post_json("/v1/search", &json!({"text": word, "k": 5, "hybrid_weight": weight})).await;
        assert_eq!(status, 200, "{found}");
        let results = found["results"].as_array().unwrap();
        assert_eq!(results[0]["id"], target.as_str(), "weight {weight}: {found}");
        for r in results {
            let (score, v) = (r["score"].as_f64().unwrap(), r["vector_score"].as_f64().unwrap());
            let c = r["caption_score"].as_f64().expect("every image has a caption");
            assert!((0.0..=1.0).contains(&c), "{r}");
            assert!((score - ((1.0 - weight) * v + weight * c)).abs() < SCORE_TOLERANCE, "{r}");
        }
        assert!(results[0]["caption_score"].as_f64().unwrap() >= 0.5, "keyword part 1: {found}");
    }
    // The server default (0.3) blends too.
    let (_, default) = app.post_json("/v1/search", &json!({"text": word, "k": 3})).await;
    let r = &default["results"][0];
    let (s, v, c) =
        (r["score"].as_f64().unwrap(), r["vector_score"].as_f64().unwrap(), r["caption_score"].as_f64().unwrap());
    assert!((s - (0.7 * v + 0.3 * c)).abs() < SCORE_TOLERANCE, "{r}");
    // Weight 0: the pure vector ranking.
    let (_, plain) = app.post_json("/v1/search", &json!({"text": word, "k": 10, "hybrid_weight": 0})).await;
    let plain = plain["results"].as_array().unwrap();
    assert!(plain.iter().all(|r| r["caption_score"].is_null() && r["vector_score"] == r["score"]));
    assert!(!plain.iter().any(|r| r["id"] == target.as_str()));
    // The threshold applies to the blended score; FTS syntax in the query is only words; a tag filters.
    let (_, above) =
        app.post_json("/v1/search", &json!({"text": word, "k": 50, "hybrid_weight": 1.0, "threshold": 0.5})).await;
    let above = above["results"].as_array().unwrap();
    assert!(above.iter().all(|r| r["score"].as_f64().unwrap() >= 0.5) && above[0]["id"] == target.as_str());
    for q in ["\"", "NEAR(", "a AND", "*", "caption:x", "\u{1F680}"] {
        let (status, body) = app.post_json("/v1/search", &json!({"text": q, "k": 3, "hybrid_weight": 0.5})).await;
        assert_eq!(status, 200, "{q:?}: {body}");
    }
    let (_, none) =
        app.post_json("/v1/search", &json!({"text": word, "k": 3, "tag": "nope", "hybrid_weight": 1.0})).await;
    assert!(none["results"].as_array().unwrap().is_empty());
}

/// The endpoint with no workers (so nothing else captions meanwhile) and a small file limit.
async fn endpoint() -> TestApp {
    TestApp::captioning(|s| {
        s.fetch.allow_private_urls = Some(true);
        s.captions.workers = Some(0);
        s.limits.max_file_bytes = Some(300_000);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_form_is_captioned_then_served_from_the_cache() {
    let app = endpoint().await;
    let model = app.get("/v1/models").await.1["data"][1]["id"].as_str().unwrap().to_string();
    let form = |extra: &[(&'static str, &'static str)]| {
        let fields: Vec<(&str, &str)> =
            [("beams", "1"), ("max_new_tokens", "12")].into_iter().chain(extra.iter().copied()).collect();
        multipart(&[("coffee.jpg", image_bytes("coffee.jpg"))], &fields)
    };
    let post = |(content_type, body): (String, Vec<u8>)| {
        let app = &app;
        async move {
            let answer = app.post_raw("/v1/captions", &content_type, body).await;
            (answer.status, answer.json())
        }
    };
    let coffee = reference_caption("coffee.jpg", 1, 12, None);
    let (status, first) = post(form(&[])).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["captions"][0],
        json!({"input": "coffee.jpg", "caption": coffee, "cached": false, "model": model})
    );
    assert_eq!(first["options"]["num_beams"], 1);
    let (_, second) = post(form(&[])).await;
    assert_eq!(
        (second["captions"][0]["cached"].as_bool(), second["captions"][0]["caption"].as_str()),
        (Some(true), Some(coffee.as_str()))
    );
    let (_, other) = post(form(&[("prompt", "a picture of")])).await;
    assert_eq!(other["captions"][0]["cached"], false, "other options, another cache entry");
    assert_eq!(other["captions"][0]["caption"], reference_caption("coffee.jpg", 1, 12, Some("a picture of")).as_str());
    assert_error(&post(form(&[("beams", "0")])).await, 400, "invalid_request");
    assert_error(&post(form(&[("store", "true")])).await, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_ids_and_urls_are_captioned_in_order_and_store_sets_the_caption() {
    let files = FileServer::start();
    let app = endpoint().await;
    let coffee_id = app.upload_one("coffee.jpg", image_bytes("coffee.jpg")).await;
    let rocket_id = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let body = json!({"images": [{"id": coffee_id}, {"url": files.url("/img/chelsea_rgba.png")}, {"id": rocket_id}],
                      "beams": 1, "max_new_tokens": 12});
    let (status, mixed) = app.post_json("/v1/captions", &body).await;
    assert_eq!(status, 200, "{mixed}");
    let c = mixed["captions"].as_array().unwrap();
    assert_eq!(c[0]["input"], coffee_id.as_str());
    assert_eq!(c[0]["caption"], reference_caption("coffee.jpg", 1, 12, None).as_str());
    assert_eq!(c[1]["input"], files.url("/img/chelsea_rgba.png"));
    assert_eq!(c[1]["caption"], reference_caption("chelsea_rgba.png", 1, 12, None).as_str());
    assert_eq!(c[2]["caption"], reference_caption("rocket.jpg", 1, 12, None).as_str());
    let (_, again) = app.post_json("/v1/captions", &body).await;
    assert!(again["captions"].as_array().unwrap().iter().all(|c| c["cached"] == true), "{again}");
    assert!(app.get(&format!("/v1/images/{rocket_id}")).await.1["caption"].is_null(), "nothing stored");

    assert_eq!(caption_jobs(&app, Some("queued")).await.len(), 2);
    let store = json!({"images": [{"id": rocket_id}], "beams": 1, "max_new_tokens": 12, "store": true});
    let (status, stored) = app.post_json("/v1/captions", &store).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["captions"][0]["stored"], true);
    assert_eq!(app.get(&format!("/v1/images/{rocket_id}")).await.1["caption"], c[2]["caption"]);
    assert_eq!(caption_jobs(&app, Some("cancelled")).await.len(), 1, "its queued job is cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_caption_requests_are_refused_and_change_nothing() {
    let files = FileServer::start();
    let app = endpoint().await;
    let coffee_id = app.upload_one("coffee.jpg", image_bytes("coffee.jpg")).await;
    let jobs_before = caption_jobs(&app, None).await;
    let cached_before = app.lens.catalog.count_cached_captions().unwrap();
    let post = |body: Value| {
        let app = &app;
        async move { app.post_json("/v1/captions", &body).await }
    };
    let with = |extra: Value| {
        let mut body = json!({"images": [{"id": coffee_id}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    assert_error(&post(json!({"images": []})).await, 400, "invalid_request");
    assert_error(&post(json!({})).await, 400, "invalid_request");
    let many: Vec<Value> = (0..17).map(|_| json!({"id": coffee_id})).collect();
    assert_error(&post(json!({"images": many})).await, 413, "too_large");
    for bad in [
        json!({"beams": 0}),
        json!({"beams": 99}),
        json!({"max_new_tokens": 0}),
        json!({"max_new_tokens": 10000}),
        json!({"min_new_tokens": 50, "max_new_tokens": 10}),
        json!({"repetition_penalty": -1.0}),
        json!({"temperature": 0.7}), // sampling needs beams 1
    ] {
        assert_error(&post(with(bad)).await, 400, "invalid_request");
    }
    assert_error(&post(with(json!({"prompt": "x".repeat(600)}))).await, 413, "too_large");
    assert_error(&post(with(json!({"beam": 2}))).await, 422, "invalid_json");
    assert_error(&post(with(json!({"beams": "two"}))).await, 422, "invalid_json");
    assert_error(&post(json!({"images": [{"id": coffee_id, "url": "http://x/"}]})).await, 400, "invalid_request");
    assert_error(&post(json!({"images": [{"path": "/etc/passwd"}]})).await, 422, "invalid_json");
    assert_error(&post(json!({"images": [{"id": "0123456789abcdef0123456789abcdef"}]})).await, 404, "not_found");
    assert_error(&post(json!({"images": [{"id": coffee_id}, {"id": "nope"}], "store": true})).await, 404, "not_found");
    assert_error(
        &post(json!({"images": [{"url": files.url("/img/rocket.jpg")}], "store": true})).await,
        400,
        "invalid_request",
    );
    assert_error(&post(json!({"images": [{"url": files.url("/missing")}]})).await, 422, "fetch_failed");
    assert_error(&post(json!({"images": [{"url": "file:///etc/passwd"}]})).await, 400, "url_refused");
    let upload = |files: Vec<(&'static str, Vec<u8>)>| {
        let app = &app;
        async move { app.upload("/v1/captions", &files, None).await }
    };
    assert_error(&upload(vec![("c.jpg", image_bytes("corrupt_truncated.jpg"))]).await, 422, "corrupt_image");
    assert_error(&upload(vec![("n.jpg", image_bytes("not_an_image.jpg"))]).await, 415, "unsupported_format");
    assert_error(&upload(vec![("a.png", image_bytes("astronaut.png"))]).await, 413, "too_large");
    let mixed_bad = upload(vec![("ok.png", synthetic_png(5)), ("bad.jpg", image_bytes("corrupt_truncated.jpg"))]).await;
    assert_error(&mixed_bad, 422, "corrupt_image");
    assert!(mixed_bad.1["error"]["message"].as_str().unwrap().starts_with("image 2"), "{}", mixed_bad.1);
    assert_error(&upload((0..17).map(|i| ("s.png", synthetic_png(i))).collect()).await, 413, "too_large");
    assert_error(&app.upload("/v1/captions", &[], Some("x")).await, 400, "invalid_request"); // only a stray field
    let answer = app.post_raw("/v1/captions", "application/json", b"{not json".to_vec()).await;
    assert_error(&(answer.status, answer.json()), 400, "invalid_json");
    let answer = app.post_raw("/v1/captions", "text/plain", b"hello".to_vec()).await;
    assert_error(&(answer.status, answer.json()), 415, "unsupported_media_type");

    assert_eq!(app.lens.catalog.count_cached_captions().unwrap(), cached_before, "nothing cached");
    assert_eq!(caption_jobs(&app, None).await, jobs_before);
    assert!(app.get(&format!("/v1/images/{coffee_id}")).await.1["caption"].is_null());
    assert_eq!(app.get("/v1/images").await.1["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_caption_model_captions_are_disabled_and_no_job_is_queued() {
    let app = TestApp::start().await;
    let id = app.upload_one("c.jpg", image_bytes("coffee.jpg")).await;
    assert_error(&app.post_json("/v1/captions", &json!({"images": [{"id": id}]})).await, 503, "captioning_disabled");
    assert_error(
        &app.upload("/v1/captions", &[("c.jpg", image_bytes("coffee.jpg"))], None).await,
        503,
        "captioning_disabled",
    );
    assert!(caption_jobs(&app, None).await.is_empty());
    assert_eq!(app.get("/v1/models").await.1["data"].as_array().unwrap().len(), 1);
    assert!(app.get("/readyz").await.1["caption_model"].is_null());
}
