//! `--chat-provider openai` against a stand-in upstream (axum on 127.0.0.1, behind the test's
//! `--chat-allow-private-upstream`): what the upstream receives (the model, the bearer key, the image as a
//! PNG data URL of the decoded pixels), its stream passed on delta by delta, chat and analysis alike; its
//! refusals mapped (4xx → 502 with its message, 429 → 429, silence → 504); a loopback upstream refused
//! without the flag. The same API against a real `lens serve` upstream and OpenAI's client: `tests/openai.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use lens_core::image::{DecodeLimits, decode_image};
use serde_json::{Value, json};

use super::chat::sse_data;
use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::{data_url, fixture_model, image_bytes};

const MODEL: &str = "upstream/llava-13b";
/// The answer the stand-in streams, in these deltas.
const PIECES: [&str; 3] = ["A red", " rocket", " on a pad."];

/// What the stand-in upstream saw.
#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    authorization: Vec<Option<String>>,
}

/// Serves `/ok`, `/refuses` (404 with OpenAI's error), `/busy` (429), `/silent` (never answers) under
/// `…/chat/completions`, and 404 elsewhere; returns its base URL. Every route, the 404 too, reads the request
/// body first, as a real upstream does: answering before it is read can close the connection under the
/// client's upload (a broken pipe, not the status under test).
async fn upstream(seen: Arc<Mutex<Seen>>) -> String {
    let record = move |headers: HeaderMap, body: Value| {
        let mut seen = seen.lock().unwrap();
        seen.authorization.push(headers.get("authorization").map(|v| v.to_str().unwrap().to_string()));
        seen.bodies.push(body);
    };
    let ok = {
        let record = record.clone();
        move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
            record(headers, body);
            let mut events: Vec<String> =
                vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string()];
            events
                .extend(PIECES.iter().map(|p| json!({"choices": [{"index": 0, "delta": {"content": p}}]}).to_string()));
            events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}).to_string());
            events.push(json!({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 3}}).to_string());
            events.push("[DONE]".into());
            let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            ([("content-type", "text/event-stream")], body)
        }
    };
    let app = Router::new()
        .route("/ok/chat/completions", post(ok))
        .route(
            "/refuses/chat/completions",
            post(|_body: Bytes| async {
                let error =
                    json!({"error": {"message": "The model `x` does not exist", "type": "invalid_request_error"}});
                (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
            }),
        )
        .route("/busy/chat/completions", post(|_body: Bytes| async { StatusCode::TOO_MANY_REQUESTS }))
        .route(
            "/silent/chat/completions",
            post(|_body: Bytes| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        )
        // axum's default 404 answers before reading the upload; this one reads it first, like the routes above.
        .fallback(|_body: Bytes| async { StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn remote(base: &str, s: &mut lens::config::ServeSettings) {
    s.chat.provider = Some(lens::config::ChatProvider::Openai);
    s.chat.base_url = Some(base.to_string());
    s.chat.remote_model = Some(MODEL.into());
    // A variable every environment has: the test needs no process-wide `set_var`.
    s.chat.api_key_env = Some("HOME".into());
    s.chat.upstream_timeout_s = Some(1);
    s.chat.allow_private_upstream = Some(true);
}

fn ask(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url("coffee.jpg")}},
                {"type": "text", "text": "What is this?"}]}],
        "max_tokens": 9, "temperature": 0.5, "seed": 3, "stop": ["\n"],
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_go_upstream_and_its_stream_comes_back_delta_by_delta() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = upstream(Arc::clone(&seen)).await;
    let app = TestApp::with(|s| remote(&format!("{base}/ok"), s)).await;
    let (_, models) = app.get("/v1/models").await;
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == MODEL && m["task"] == "chat"), "{models}");

    let (status, body) = app.post_json("/v1/chat/completions", &ask(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], PIECES.concat());
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"], json!({"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}));
    {
        let seen = seen.lock().unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(seen.authorization[0].as_deref(), Some(format!("Bearer {home}").as_str()));
        let sent = &seen.bodies[0];
        assert_eq!(
            (&sent["model"], &sent["max_tokens"], &sent["temperature"], &sent["seed"], &sent["stop"], &sent["stream"]),
            (&json!(MODEL), &json!(9), &json!(0.5), &json!(3), &json!(["\n"]), &json!(true))
        );
        assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Answer briefly."}));
        let parts = &sent["messages"][1]["content"];
        assert_eq!(parts[1], json!({"type": "text", "text": "What is this?"}));
        // The image is the decoded pixels, losslessly: the upstream sees what a local model would.
        let url = parts[0]["image_url"]["url"].as_str().unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(url.strip_prefix("data:image/png;base64,").expect("a PNG data URL"))
            .unwrap();
        let limits = DecodeLimits::default();
        assert_eq!(decode_image(&png, &limits).unwrap(), decode_image(&image_bytes("coffee.jpg"), &limits).unwrap());
    }

    let request = ask(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = app.post_raw("/v1/chat/completions", "application/json", request.to_string().into_bytes()).await;
    assert_eq!(answer.status, 200);
    let events = sse_data(&answer.body);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let deltas: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(deltas, PIECES, "one chunk per upstream delta");
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 3);

    // Analysis goes the same way (greedy: temperature 0).
    let (status, body) = app.post_json("/v1/analyze", &json!({"image": data_url("rocket.jpg")})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["analysis"].as_str(), body["model"].as_str()), (Some(PIECES.concat().as_str()), Some(MODEL)));
    let sent = seen.lock().unwrap().bodies.last().unwrap().clone();
    assert_eq!(sent["temperature"], 0);
    assert_eq!(sent["messages"][0]["content"][1]["text"], "Describe this image in detail.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_mapped_and_a_loopback_upstream_needs_the_flag() {
    let base = upstream(Arc::default()).await;
    for (path, status, code, needle) in [
        ("refuses", 502, "upstream_failed", "The model `x` does not exist"),
        ("busy", 429, "overloaded", ""),
        ("silent", 504, "upstream_timeout", "within 1 s"),
        ("nowhere", 502, "upstream_failed", "404"),
    ] {
        let app = TestApp::with(|s| remote(&format!("{base}/{path}"), s)).await;
        let result = app.post_json("/v1/chat/completions", &ask(json!({"stream": true}))).await;
        assert_error(&result, status, code);
        assert!(result.1["error"]["message"].as_str().unwrap().contains(needle), "{path}: {}", result.1);
    }
    let (status, _) = TestApp::with(|s| remote(&format!("{base}/refuses"), s))
        .await
        .post_json("/v1/analyze", &json!({"image": data_url("rocket.jpg")}))
        .await;
    assert_eq!(status, 502);

    // Without --chat-allow-private-upstream, a loopback upstream does not start.
    let data = tempfile::tempdir().unwrap();
    let mut settings = lens::config::ServeSettings::default();
    settings.models.model = Some(fixture_model());
    settings.storage.data = Some(data.path().to_path_buf());
    remote(&format!("{base}/ok"), &mut settings);
    settings.chat.allow_private_upstream = Some(false);
    let lens = lens::services::Lens::open(settings.resolve(None).unwrap()).await.unwrap();
    let err = format!("{:#}", tokio::task::spawn_blocking(move || lens.load()).await.unwrap().unwrap_err());
    assert!(err.contains("loopback") && err.contains("--chat-allow-private-upstream"), "{err}");
}
