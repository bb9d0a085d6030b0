//! `POST /v1/chat/completions` with the tiny LLaVA: answers equal the pipeline's own greedy answer (whole and
//! streamed), images by data URL, by stored id and by http URL give the same answer, bad requests get
//! OpenAI's error shape with the right status, a full queue answers 429, a dropped stream stops its
//! generation.

use axum::body::Body;
use axum::http::{Request, header};
use burn::backend::NdArray;
use lens_core::image::{DecodeLimits, decode_image};
use lens_models::chat_template::ChatMessage;
use lens_models::generation::GenerationConfig;
use lens_models::llava::LlavaPipeline;
use serde_json::{Value, json};

use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::{FileServer, data_url, image_bytes, llava_dir};

pub(super) const QUESTION: &str = "What is shown in this image?";

pub(super) async fn chat_app(
    dir: &tempfile::TempDir,
    configure: impl FnOnce(&mut lens::config::ServeSettings),
) -> TestApp {
    let path = dir.path().to_path_buf();
    TestApp::with(move |s| {
        s.chat.model = Some(path);
        s.fetch.allow_private_urls = Some(true);
        configure(s);
    })
    .await
}

/// A user turn: the image, then the question.
fn ask(model: &str, image_url: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": QUESTION}]}],
        "temperature": 0,
        "max_tokens": 12,
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

pub(super) async fn chat_model_id(app: &TestApp) -> String {
    let (_, models) = app.get("/v1/models").await;
    let card = models["data"].as_array().unwrap().iter().find(|m| m["task"] == "chat").expect("a chat model card");
    card["id"].as_str().unwrap().to_string()
}

/// What the LLaVA pipeline answers on its own: greedy, 12 tokens, the image then the question.
pub(super) fn reference_answer(dir: &tempfile::TempDir, image: &str) -> (String, usize, usize) {
    let pipeline = LlavaPipeline::<NdArray<f32>>::from_dir(dir.path(), &Default::default()).unwrap();
    let image = decode_image(&image_bytes(image), &DecodeLimits::default()).unwrap();
    let ids = pipeline.encode_chat(&[ChatMessage::user_with_images(1, QUESTION)], 1).unwrap();
    let config = GenerationConfig { max_new_tokens: 12, ..Default::default() };
    let completion =
        pipeline.generate_stream(&ids, &[image], &config, &[], &mut |_| std::ops::ControlFlow::Continue(())).unwrap();
    (completion.text, ids.len(), completion.token_ids.len())
}

/// The `data:` payloads of a server-sent event stream, in order.
pub(super) fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

#[tokio::test]
async fn answers_equal_the_pipelines_whole_and_streamed() {
    let dir = llava_dir();
    let app = chat_app(&dir, |_| {}).await;
    let model = chat_model_id(&app).await;
    let (text, prompt_tokens, completion_tokens) = reference_answer(&dir, "coffee.jpg");

    let (status, body) = app.post_json("/v1/chat/completions", &ask(&model, &data_url("coffee.jpg"), json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], model.as_str());
    assert_eq!(body["choices"][0]["message"], json!({"role": "assistant", "content": text}));
    let finish = if completion_tokens < 12 { "stop" } else { "length" };
    assert_eq!(body["choices"][0]["finish_reason"], finish);
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    assert_eq!(body["usage"], usage);

    let request =
        ask(&model, &data_url("coffee.jpg"), json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = app.post_raw("/v1/chat/completions", "application/json", request.to_string().into_bytes()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "text/event-stream");
    let events = sse_data(&answer.body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert_eq!(streamed, text);
    let (last, usage_chunk) = (&chunks[chunks.len() - 2], &chunks[chunks.len() - 1]);
    assert_eq!(last["choices"][0]["finish_reason"], finish);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], usage);
    assert!(chunks[..chunks.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn stored_and_fetched_images_answer_as_their_bytes_do() {
    let dir = llava_dir();
    let app = chat_app(&dir, |_| {}).await;
    let model = chat_model_id(&app).await;
    let (coffee, ..) = reference_answer(&dir, "coffee.jpg");
    let (rocket, ..) = reference_answer(&dir, "rocket.jpg");
    assert_ne!(coffee, rocket, "the image decides the answer");

    let (status, uploaded) = app.upload("/v1/images", &[("rocket.jpg", image_bytes("rocket.jpg"))], None).await;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["id"].as_str().unwrap();
    let files = FileServer::start();
    for (url, expected) in [
        (format!("lens://images/{id}"), &rocket),
        (files.url("/img/coffee.jpg"), &coffee),
        (data_url("rocket.jpg"), &rocket),
    ] {
        let (status, body) = app.post_json("/v1/chat/completions", &ask(&model, &url, json!({}))).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], expected.as_str(), "{url}");
    }
}

#[tokio::test]
async fn bad_requests_get_openais_error_shape() {
    let dir = llava_dir();
    let app = chat_app(&dir, |_| {}).await;
    let model = chat_model_id(&app).await;
    let coffee = data_url("coffee.jpg");
    let many: Vec<Value> =
        (0..17).map(|_| json!({"type": "image_url", "image_url": {"url": coffee.clone()}})).collect();
    let cases = [
        (ask("no-such-model", &coffee, json!({})), 400, "invalid_request", "not served here"),
        (ask(&model, "data:image/png;base64,@@@", json!({})), 400, "invalid_request", "invalid base64"),
        (ask(&model, "ftp://example.com/a.png", json!({})), 400, "invalid_url", "image_url"),
        (ask(&model, "lens://images/0123456789abcdef0123456789abcdef", json!({})), 404, "not_found", "no image"),
        (ask(&model, &coffee, json!({"max_tokens": 100000})), 400, "invalid_request", "max_tokens"),
        (ask(&model, &coffee, json!({"max_tokens": 250})), 400, "invalid_request", "context"),
        (ask(&model, &coffee, json!({"temperature": 3})), 400, "invalid_request", "temperature"),
        (ask(&model, &coffee, json!({"n": 2})), 400, "invalid_request", "`n`"),
        (ask(&model, &coffee, json!({"stop": ["a", "b", "c", "d", "e"]})), 400, "invalid_request", "stop"),
        (ask(&model, &coffee, json!({"messages": []})), 400, "invalid_request", "empty"),
        (
            ask(&model, &coffee, json!({"messages": [{"role": "user", "content": many}]})),
            400,
            "invalid_request",
            "at most 16",
        ),
        (ask(&model, &coffee, json!({"messages": [{"role": "tool", "content": "x"}]})), 400, "invalid_request", "role"),
        (ask(&model, &data_url("not_an_image.jpg"), json!({})), 415, "unsupported_format", ""),
    ];
    for (body, status, code, needle) in cases {
        let result = app.post_json("/v1/chat/completions", &body).await;
        assert_error(&result, status, code);
        let error = &result.1["error"];
        assert!(error["message"].as_str().unwrap().contains(needle), "{error}");
        let kind = if status == 404 { "not_found_error" } else { "invalid_request_error" };
        assert_eq!((error["type"].as_str(), error.get("param")), (Some(kind), Some(&Value::Null)), "{error}");
    }
    // A body that is not a chat request at all.
    let answer = app.post_raw("/v1/chat/completions", "application/json", b"{\"model\": 1}".to_vec()).await;
    assert!(answer.status == 400 || answer.status == 422, "{}", answer.status);

    let plain = TestApp::start().await;
    assert_error(&plain.post_json("/v1/chat/completions", &ask("m", &coffee, json!({}))).await, 503, "chat_disabled");
}

#[tokio::test]
async fn a_full_queue_answers_429_and_a_dropped_stream_stops_generating() {
    let dir = llava_dir();
    // One conversation at a time: the second request waits behind the first (with more, it would join it).
    let app = chat_app(&dir, |s| {
        s.chat.queue = Some(1);
        s.chat.max_tokens = Some(200);
        s.chat.parallel = Some(1);
    })
    .await;
    let model = chat_model_id(&app).await;
    let coffee = data_url("coffee.jpg");
    // Sampled: an end-of-sequence token among 32 002 is all but impossible in 200 steps, so the first
    // answer is still generating while the others arrive.
    let streaming = |max_tokens: u32| {
        let body = ask(&model, &coffee, json!({"stream": true, "max_tokens": max_tokens, "temperature": 1, "seed": 7}));
        Request::post("/v1/chat/completions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    // The first answer is held unread: the model fills its stream's buffer and waits on this client.
    let held = app.respond(streaming(200)).await;
    assert_eq!(held.status(), 200);
    // The second waits in the queue (its handler waits for generation to start)...
    let queued = {
        let (router, second) = (app.router(), streaming(3));
        tokio::spawn(async move { tower::ServiceExt::oneshot(router, second).await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...so the third finds the queue full.
    let full = app.send(streaming(3)).await;
    assert_eq!(full.status, 429, "{}", String::from_utf8_lossy(&full.body));
    assert_eq!(full.headers[header::RETRY_AFTER], "1");
    assert_eq!(full.json()["error"]["code"], "overloaded");
    assert_eq!(full.json()["error"]["type"], "rate_limit_error");

    // Dropping the held stream cancels its generation; the queued one then runs to its end.
    drop(held);
    let queued = queued.await.unwrap();
    assert_eq!(queued.status(), 200);
    let body = axum::body::to_bytes(queued.into_body(), usize::MAX).await.unwrap();
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
    let metrics = String::from_utf8(app.get_raw("/metrics").await.body.to_vec()).unwrap();
    // The metrics are the process's, shared by every test's server: this model's line.
    let label = format!("model=\"{model}\"");
    let cancelled =
        metrics.lines().find(|l| l.starts_with("lens_chat_cancelled_total") && l.contains(&label)).unwrap_or_default();
    let count: f64 = cancelled.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(count >= 1.0, "{cancelled}\n{metrics}");
    assert!(metrics.contains("lens_chat_time_to_first_token_seconds"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_hold_back_the_next_conversation() {
    let dir = llava_dir();
    let app = chat_app(&dir, |s| s.chat.max_tokens = Some(200)).await;
    let model = chat_model_id(&app).await;
    let coffee = data_url("coffee.jpg");
    // A long sampled answer whose client reads nothing: it pauses once its stream's buffer is full, and the
    // next conversation is decoded meanwhile (the default --chat-parallel 8).
    let body = ask(&model, &coffee, json!({"stream": true, "max_tokens": 200, "temperature": 1, "seed": 7}));
    let held = app
        .respond(
            Request::post("/v1/chat/completions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(held.status(), 200);
    // The next conversation is answered meanwhile, and equals the pipeline's answer.
    let (expected, ..) = reference_answer(&dir, "coffee.jpg");
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.post_json("/v1/chat/completions", &ask(&model, &coffee, json!({}))),
    )
    .await
    .expect("answered while the first is still open");
    assert_eq!(answered.0, 200, "{}", answered.1);
    assert_eq!(answered.1["choices"][0]["message"]["content"], expected.as_str());
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_that_overlap_are_decoded_together_and_each_gets_its_own_answer() {
    let dir = llava_dir();
    let app = chat_app(&dir, |s| s.chat.max_tokens = Some(200)).await;
    let model = chat_model_id(&app).await;
    // A long answer (exactly 200 tokens), read as it comes, so it takes part in every step...
    let long = ask(&model, &data_url("coffee.jpg"), json!({"stream": true, "max_tokens": 200, "min_tokens": 200}));
    let response = app
        .respond(
            Request::post("/v1/chat/completions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(long.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body().into_data_stream();
    use futures::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    let long_done = tokio::spawn(async move {
        let mut body = first.to_vec();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.unwrap());
        }
        body
    });
    // ...while two more conversations arrive and are answered, each as the pipeline answers it alone.
    let (ask_coffee, ask_rocket) =
        (ask(&model, &data_url("coffee.jpg"), json!({})), ask(&model, &data_url("rocket.jpg"), json!({})));
    let (coffee, rocket) = tokio::join!(
        app.post_json("/v1/chat/completions", &ask_coffee),
        app.post_json("/v1/chat/completions", &ask_rocket),
    );
    assert!(!long_done.is_finished(), "the long answer was still being decoded");
    for ((status, body), image) in [(coffee, "coffee.jpg"), (rocket, "rocket.jpg")] {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], reference_answer(&dir, image).0.as_str(), "{image}");
    }
    let events = sse_data(&long_done.await.unwrap());
    let finish = events.iter().rev().find_map(|e| {
        let chunk: Value = serde_json::from_str(e).ok()?;
        chunk["choices"][0]["finish_reason"].as_str().map(str::to_string)
    });
    assert_eq!((finish.as_deref(), events.last().map(String::as_str)), (Some("length"), Some("[DONE]")));

    // Steps of more than one row happened: the mean rows per step is above 1.
    let metrics = String::from_utf8(app.get_raw("/metrics").await.body.to_vec()).unwrap();
    let label = format!("model=\"{model}\"");
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name) && l.contains(&label));
        let line = line.unwrap_or_else(|| panic!("{name}{{{label}}}:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (rows, steps) = (value("lens_chat_step_rows_sum"), value("lens_chat_step_rows_count"));
    assert!(rows > steps, "{rows} rows over {steps} steps");
}
