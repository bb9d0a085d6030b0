//! Image analysis with the tiny LLaVA: `POST /v1/analyze` (JSON, a form, a stream, `store`) answers what the
//! pipeline answers on its own; `?analyze=true` and `--analyze-prompt` queue analysis jobs that store that
//! same answer; a stored analysis is on the image, found by text search and carried by the sync feed; a
//! deleted image withdraws its job; bad requests are refused with their status and change nothing.

use serde_json::{Value, json};

use super::chat::{QUESTION, chat_app, chat_model_id, reference_answer, sse_data};
use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::data_url;
use crate::common::files::{image_bytes, llava_dir};

/// The chat test's question about images, answered in 12 tokens.
fn settings(s: &mut lens::config::ServeSettings) {
    s.analysis.max_tokens = Some(12);
}

async fn analysis_jobs(app: &TestApp) -> Vec<Value> {
    let (status, jobs) = app.get("/v1/jobs?kind=analysis&limit=1000").await;
    assert_eq!(status, 200, "{jobs}");
    jobs["jobs"].as_array().unwrap().clone()
}

#[tokio::test]
async fn analyze_answers_as_the_pipeline_does_and_store_makes_it_searchable() {
    let dir = llava_dir();
    let app = chat_app(&dir, settings).await;
    let model = chat_model_id(&app).await;
    let (coffee, prompt_tokens, completion_tokens) = reference_answer(&dir, "coffee.jpg");
    let (rocket, ..) = reference_answer(&dir, "rocket.jpg");

    // JSON with a data URL.
    let (status, body) =
        app.post_json("/v1/analyze", &json!({"image": data_url("coffee.jpg"), "prompt": QUESTION})).await;
    assert_eq!(status, 200, "{body}");
    let finish = if completion_tokens < 12 { "stop" } else { "length" };
    assert_eq!(
        body,
        json!({"analysis": coffee, "prompt": QUESTION, "model": model, "finish_reason": finish,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens},
            "image_id": null, "stored": false})
    );
    // A form with the file.
    let (status, body) =
        app.upload_form("/v1/analyze", &[("coffee.jpg", image_bytes("coffee.jpg"))], &[("prompt", QUESTION)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["analysis"], coffee.as_str());
    // Streamed: chat completion chunks whose pieces make the same text.
    let request = json!({"image": data_url("coffee.jpg"), "prompt": QUESTION, "stream": true});
    let answer = app.post_raw("/v1/analyze", "application/json", request.to_string().into_bytes()).await;
    assert_eq!(answer.status, 200);
    let events = sse_data(&answer.body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let streamed: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, coffee);

    // A stored image, analysed and stored: on the image, in the feed, found by its words.
    let rocket_id = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let other = app.upload_one("coffee.jpg", image_bytes("coffee.jpg")).await;
    let (status, body) =
        app.post_json("/v1/analyze", &json!({"image_id": rocket_id, "prompt": QUESTION, "store": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["analysis"].as_str(), body["image_id"].as_str(), body["stored"].as_bool()),
        (Some(rocket.as_str()), Some(rocket_id.as_str()), Some(true))
    );
    let (_, image) = app.get(&format!("/v1/images/{rocket_id}")).await;
    assert_eq!(image["analysis"]["text"], rocket.as_str());
    assert_eq!(
        (image["analysis"]["prompt"].as_str(), image["analysis"]["model"].as_str()),
        (Some(QUESTION), Some(model.as_str()))
    );
    assert!(image["analysis"]["created_at"].as_str().unwrap().ends_with('Z'), "{image}");
    let (_, feed) = app.get("/v1/sync").await;
    let upsert = feed["changes"].as_array().unwrap().iter().find(|c| c["image"]["id"] == rocket_id.as_str()).unwrap();
    assert_eq!(upsert["image"]["analysis"], rocket.as_str());

    let word = rocket
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .max_by_key(|w| w.len())
        .unwrap_or_else(|| panic!("no word in the analysis {rocket:?}"));
    let (status, found) = app.post_json("/v1/search", &json!({"text": word, "k": 2, "hybrid_weight": 1.0})).await;
    assert_eq!(status, 200, "{found}");
    let first = &found["results"][0];
    assert_eq!(first["id"], rocket_id.as_str(), "`{word}` finds the analysed image first: {found}");
    assert_eq!(first["analysis"], rocket.as_str());
    assert!(first["caption_score"].as_f64().unwrap() > 0.0, "{first}");
    assert!(found["results"][1]["caption_score"].is_null(), "{other} has no text: {found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_asking_for_analysis_get_a_job_that_stores_the_pipelines_answer() {
    let dir = llava_dir();
    let app = chat_app(&dir, settings).await;
    let (coffee, ..) = reference_answer(&dir, "coffee.jpg");
    let query = format!("/v1/images?analyze=true&analyze_prompt={}", urlencoding(QUESTION));
    let (status, image) = app.upload(&query, &[("coffee.jpg", image_bytes("coffee.jpg"))], None).await;
    assert_eq!(status, 201, "{image}");
    let id = image["id"].as_str().unwrap().to_string();
    let image = app.wait_analysis(&id).await;
    assert_eq!(image["analysis"]["text"], coffee.as_str());
    assert_eq!(image["analysis"]["prompt"], QUESTION);
    let job = loop {
        let jobs = analysis_jobs(&app).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        if jobs[0]["state"] == "succeeded" {
            break jobs[0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(job["params"], json!({"image": id, "prompt": QUESTION}));
    assert_eq!((job["attempts"].as_u64(), job["result"]["analysis"].as_str()), (Some(1), Some(coffee.as_str())));
    // The same bytes with the same prompt: analysed already, no second job; a plain upload asks for none.
    let (status, _) = app.upload(&query, &[("again.jpg", image_bytes("coffee.jpg"))], None).await;
    assert_eq!(status, 200);
    app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    assert_eq!(analysis_jobs(&app).await.len(), 1);

    // --analyze-prompt: every upload is analysed with it (here while no worker runs: the job waits, and
    // deleting the image withdraws it).
    let app = chat_app(&dir, |s| {
        settings(s);
        s.analysis.prompt = Some(QUESTION.into());
        s.analysis.workers = Some(0);
    })
    .await;
    let id = app.upload_one("rocket.jpg", image_bytes("rocket.jpg")).await;
    let jobs = analysis_jobs(&app).await;
    assert_eq!((jobs.len(), jobs[0]["state"].as_str()), (1, Some("queued")), "{jobs:?}");
    assert_eq!(jobs[0]["params"]["prompt"], QUESTION);
    assert_eq!(app.delete(&format!("/v1/images/{id}")).await, 204);
    assert!(analysis_jobs(&app).await.is_empty(), "withdrawn with its image");
}

/// `?analyze_prompt=` as a query value.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn bad_analysis_requests_are_refused_and_change_nothing() {
    let dir = llava_dir();
    let app = chat_app(&dir, settings).await;
    let coffee = data_url("coffee.jpg");
    let missing = "0123456789abcdef0123456789abcdef";
    let cases = [
        (json!({}), 400, "invalid_request", "give the image once"),
        (json!({"image": coffee, "image_id": missing}), 400, "invalid_request", "give the image once"),
        (json!({"image": coffee, "store": true}), 400, "invalid_request", "`store` needs a stored image"),
        (json!({"image_id": missing, "store": true, "stream": true}), 400, "invalid_request", "without `stream`"),
        (json!({"image": coffee, "max_tokens": 13}), 400, "invalid_request", "--analysis-max-tokens"),
        (json!({"image": coffee, "prompt": " "}), 400, "invalid_request", "prompt"),
        (json!({"image": coffee, "prompt": "x".repeat(5000)}), 400, "invalid_request", "prompt"),
        (json!({"image": "ftp://example.com/a.png"}), 400, "invalid_url", "image_url"),
        (json!({"image_id": missing}), 404, "not_found", "no image"),
        (json!({"image": data_url("not_an_image.jpg")}), 415, "unsupported_format", ""),
        (json!({"image": coffee, "unknown": 1}), 422, "invalid_json", "unknown field"),
    ];
    for (body, status, code, needle) in cases {
        let result = app.post_json("/v1/analyze", &body).await;
        assert_error(&result, status, code);
        assert!(result.1["error"]["message"].as_str().unwrap().contains(needle), "{body}: {}", result.1);
    }
    let (status, body) = app.upload_form("/v1/analyze", &[], &[("prompt", QUESTION)]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) =
        app.upload_form("/v1/analyze", &[("a.jpg", image_bytes("coffee.jpg"))], &[("store", "true")]).await;
    assert_eq!(status, 400, "{body}");
    let answer = app.post_raw("/v1/analyze", "text/plain", b"describe".to_vec()).await;
    assert_eq!(answer.status, 415);
    // An upload whose analysis request is bad stores nothing.
    let result =
        app.upload("/v1/images?analyze=false&analyze_prompt=x", &[("c.jpg", image_bytes("coffee.jpg"))], None).await;
    assert_error(&result, 400, "invalid_request");
    app.assert_nothing_stored().await;
    assert!(analysis_jobs(&app).await.is_empty());

    // Without a chat model: analysis is disabled, uploads asking for it are refused.
    let plain = TestApp::start().await;
    assert_error(&plain.post_json("/v1/analyze", &json!({"image": coffee})).await, 503, "chat_disabled");
    let result = plain.upload("/v1/images?analyze=true", &[("c.jpg", image_bytes("coffee.jpg"))], None).await;
    assert_error(&result, 503, "chat_disabled");
    plain.assert_nothing_stored().await;
}
