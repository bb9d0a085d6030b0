//! The history (`/v1/chats`) with the tiny LLaVA: answered chats (whole and streamed) and analyses are kept
//! with their `user`, images as references; listed newest first by user and kind, a page at a time; read;
//! deleted one by one or a user's all; `"store": false` and `--chat-history false` keep nothing.

use serde_json::{Value, json};

use super::chat::{QUESTION, chat_app, chat_model_id, sse_data};
use crate::common::assert_error;
use crate::common::files::data_url;
use crate::common::files::llava_dir;

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url("coffee.jpg")}},
            {"type": "text", "text": QUESTION}]}],
        "temperature": 0, "max_tokens": 6,
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn ids(list: &Value) -> Vec<String> {
    list["chats"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn answered_chats_and_analyses_are_kept_listed_and_deleted() {
    let dir = llava_dir();
    let app = chat_app(&dir, |s| s.analysis.max_tokens = Some(6)).await;
    let model = chat_model_id(&app).await;

    let (status, whole) = app.post_json("/v1/chat/completions", &ask(&model, json!({"user": "ann"}))).await;
    assert_eq!(status, 200, "{whole}");
    let request = ask(&model, json!({"user": "bob", "stream": true}));
    let answer = app.post_raw("/v1/chat/completions", "application/json", request.to_string().into_bytes()).await;
    let events = sse_data(&answer.body);
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    let streamed_id = first["id"].as_str().unwrap().to_string();
    let (status, _) = app.post_json("/v1/chat/completions", &ask(&model, json!({"user": "ann", "store": false}))).await;
    assert_eq!(status, 200);
    let (status, analysis) = app
        .post_json("/v1/analyze", &json!({"image": data_url("rocket.jpg"), "prompt": QUESTION, "user": "ann"}))
        .await;
    assert_eq!(status, 200, "{analysis}");

    // Newest first; `store: false` left nothing.
    let (status, all) = app.get("/v1/chats").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["chats"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(ids(&all)[1..], [streamed_id.clone(), whole["id"].as_str().unwrap().to_string()]);
    let kept = &all["chats"][2];
    assert_eq!(
        (kept["kind"].as_str(), kept["user"].as_str(), kept["model"].as_str()),
        (Some("chat"), Some("ann"), Some(model.as_str()))
    );
    assert_eq!(kept["answer"], whole["choices"][0]["message"]["content"]);
    assert_eq!((&kept["finish_reason"], &kept["usage"]), (&whole["choices"][0]["finish_reason"], &whole["usage"]));
    let image = kept["messages"][0]["content"][0]["image_url"]["url"].as_str().unwrap();
    assert!(image.starts_with("data:image/jpeg;base64,(omitted: "), "{image}");
    assert_eq!(kept["messages"][0]["content"][1], json!({"type": "text", "text": QUESTION}));
    let (_, streamed) = app.get(&format!("/v1/chats/{streamed_id}")).await;
    let text: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).ok()?["choices"][0]["delta"]["content"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!((streamed["user"].as_str(), streamed["answer"].as_str()), (Some("bob"), Some(text.as_str())));
    let (_, analyses) = app.get("/v1/chats?user=ann&kind=analysis").await;
    assert_eq!(analyses["chats"].as_array().unwrap().len(), 1, "{analyses}");
    assert_eq!(analyses["chats"][0]["answer"], analysis["analysis"]);
    assert_eq!(analyses["chats"][0]["messages"][0]["content"][1]["text"], QUESTION);

    // Pages.
    let (_, page) = app.get("/v1/chats?limit=2").await;
    assert_eq!(ids(&page), ids(&all)[..2]);
    let (_, rest) = app.get(&format!("/v1/chats?limit=2&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!((ids(&rest), &rest["next_cursor"]), (ids(&all)[2..].to_vec(), &Value::Null));

    // Deletes.
    assert_eq!(app.delete(&format!("/v1/chats/{streamed_id}")).await, 204);
    assert_error(&app.get(&format!("/v1/chats/{streamed_id}")).await, 404, "not_found");
    assert_eq!(app.delete(&format!("/v1/chats/{streamed_id}")).await, 404);
    let answer =
        app.send(axum::http::Request::delete("/v1/chats?user=ann").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"deleted": 2})));
    assert!(app.get("/v1/chats").await.1["chats"].as_array().unwrap().is_empty());

    for bad in ["/v1/chats?limit=0", "/v1/chats?kind=poem", "/v1/chats?cursor=zz", "/v1/chats/not%20an%20id"] {
        assert_error(&app.get(bad).await, 400, "invalid_request");
    }
    let answer = app.send(axum::http::Request::delete("/v1/chats").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(answer.status, 400, "deleting everyone's history needs a user");

    // A server that keeps no history.
    let app = chat_app(&dir, |s| s.chat.history = Some(false)).await;
    let (status, _) = app.post_json("/v1/chat/completions", &ask(&model, json!({"user": "ann"}))).await;
    assert_eq!(status, 200);
    assert!(app.get("/v1/chats").await.1["chats"].as_array().unwrap().is_empty());
}
