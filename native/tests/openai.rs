//! `lens serve --chat-model` driven by OpenAI's own Python client (`openai` from PyPI, installed by
//! `scripts/setup.sh --native-tests` as `lens-test-python`): the tiny LLaVA's answer about a photo, whole and
//! streamed, equals `lens generate`'s greedy output; the client parses every chunk, the usage, and the
//! error of an unknown model — straight from the server with the LLaVA, and through a second server whose
//! chat goes to the first (`--chat-provider openai`), which gives the same chunks and never logs its key.

use std::process::Command;

use serde_json::Value;

use crate::common::files::{fixture_model, image_path, llava_dir};
use crate::common::server::Server;

const QUESTION: &str = "What is shown in this image?";

#[test]
fn the_openai_client_gets_lens_generates_answer_whole_and_streamed() {
    let model = llava_dir();
    let data = tempfile::tempdir().unwrap();
    let model_path = model.path().display().to_string();
    let server = Server::start(data.path(), &["--chat-model", &model_path]);
    let (_, models) = server.get("/v1/models");
    let chat = models["data"].as_array().unwrap().iter().find(|m| m["task"] == "chat").unwrap()["id"].clone();
    let chat = chat.as_str().unwrap();

    let coffee = image_path("coffee.jpg").display().to_string();
    let generated = Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["generate", "--model", &model_path, "--image", &coffee, "--prompt", QUESTION])
        .args(["--max-new-tokens", "12", "--json"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let generated: Value = serde_json::from_slice(&generated.stdout).unwrap();

    // Straight to the LLaVA, then through a second `lens serve` that sends chat to the first
    // (`--chat-provider openai`): the same text, the same deltas, the same usage and the same refusal.
    let direct = run_client(&server, chat, &coffee);
    check(&direct, &generated);
    let key = "sk-lens-test-0123456789";
    let proxy_data = tempfile::tempdir().unwrap();
    let upstream = server.url("/v1");
    let proxy = Server::spawn(
        &fixture_model(),
        proxy_data.path(),
        ["--chat-provider", "openai", "--chat-base-url", &upstream, "--chat-remote-model", chat]
            .into_iter()
            .chain(["--chat-api-key-env", "LENS_TEST_UPSTREAM_KEY", "--chat-allow-private-upstream"])
            .map(str::to_string)
            .collect(),
        vec![("LENS_TEST_UPSTREAM_KEY".to_string(), key.to_string())],
    );
    let proxied = run_client(&proxy, chat, &coffee);
    check(&proxied, &generated);
    assert_eq!(deltas(&proxied), deltas(&direct), "the upstream's chunks, one for one");
    assert!(!proxy.log().contains(key), "the API key is never logged");
}

fn run_client(server: &Server, chat: &str, coffee: &str) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai/client.py");
    let run = Command::new("lens-test-python")
        .arg(&script)
        .args([&server.url("/v1"), chat, coffee, QUESTION, "12"])
        .output()
        .expect("lens-test-python (OpenAI's client): run scripts/setup.sh --native-tests");
    assert!(run.status.success(), "client.py failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let out: Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("openai {}", out["openai"]);
    out
}

/// The content of each streamed chunk.
fn deltas(out: &Value) -> Vec<Value> {
    out["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk"]["choices"].get(0).map_or(Value::Null, |c| c["delta"].clone()))
        .collect()
}

/// What the client got equals `lens generate`'s answer.
fn check(out: &Value, generated: &Value) {
    let whole = &out["whole"];
    assert_eq!(whole["content"], generated["text"]);
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["finish_reason"], generated["finish_reason"]);
    let completion_tokens = generated["token_ids"].as_array().unwrap().len();
    assert_eq!(whole["usage"]["prompt_tokens"], generated["prompt_tokens"]);
    assert_eq!(whole["usage"]["completion_tokens"], completion_tokens);

    let chunks = out["chunks"].as_array().unwrap();
    let chunk = |i: usize| &chunks[i]["chunk"];
    assert_eq!(chunk(0)["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["chunk"]["choices"].get(0)?["delta"]["content"].as_str())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(text, generated["text"].as_str().unwrap(), "streamed text");
    let n = chunks.len();
    assert!(n >= 4, "{n} chunks");
    assert_eq!(chunk(n - 2)["choices"][0]["finish_reason"], generated["finish_reason"]);
    assert_eq!(chunk(n - 1)["usage"]["completion_tokens"], completion_tokens);
    assert!(chunks.iter().all(|c| c["chunk"]["id"] == chunk(0)["id"]), "one id for the stream");

    let error = &out["unknown_model"];
    assert_eq!((error["status"].as_u64(), error["code"].as_str()), (Some(400), Some("invalid_request")), "{error}");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("not served here"), "{error}");
}
