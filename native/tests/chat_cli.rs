//! `lens chat` against a real `lens serve --chat-model` (the tiny LLaVA): the streamed answer about a photo
//! equals `lens generate`'s greedy output, `--json` prints the whole completion, a conversation read from
//! stdin keeps its history (and `/reset` drops it), and refusals are one line on stderr.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::files::{image_path, llava_dir};
use crate::common::server::Server;

const QUESTION: &str = "What is shown in this image?";

fn lens(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `lens generate`'s greedy answer (`--json`) to the question about the coffee photo.
fn generated(model: &str, coffee: &str) -> Value {
    let out = lens(
        &["generate", "--model", model, "--image", coffee, "--prompt", QUESTION, "--max-new-tokens", "12", "--json"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn lens_chat_streams_lens_generates_answer_and_keeps_a_conversation() {
    let model = llava_dir();
    let model_path = model.path().display().to_string();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--chat-model", &model_path]);
    let base = server.url("");
    let coffee = image_path("coffee.jpg").display().to_string();
    let expected = generated(&model_path, &coffee);
    let answer = expected["text"].as_str().unwrap();
    let line = if answer.ends_with('\n') { answer.to_string() } else { format!("{answer}\n") };

    // One turn, streamed; the chat model found through GET /v1/models.
    let chat = |extra: &[&str], stdin: &str| {
        let mut args = vec!["chat", "--server", &base, "--image", &coffee, "--max-tokens", "12"];
        args.extend_from_slice(extra);
        lens(&args, stdin)
    };
    let out = chat(&[QUESTION], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), line);

    // The whole completion as JSON.
    let out = chat(&["--json", QUESTION], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let completion: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["message"]["content"], answer);
    assert_eq!(completion["usage"]["prompt_tokens"], expected["prompt_tokens"]);

    // A conversation from stdin: the image goes with its first message; a second message is answered with
    // the first exchange in the history (a longer prompt, so not the first answer's tokens); /reset starts
    // over, so the question asked again gets the first answer; /exit ends before the last line.
    let stdin = format!("{QUESTION}\nAnd what colour is it?\n/reset\n{QUESTION}\n/exit\nnever sent\n");
    let out = chat(&[], &stdin);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&line), "first answer:\n{stdout}");
    assert!(stdout.ends_with(&line), "the answer after /reset:\n{stdout}");
    assert!(stdout.len() > 2 * line.len(), "three answers:\n{stdout}");
    assert!(!text(&out.stderr).contains("error"), "{}", text(&out.stderr));
}

#[test]
fn lens_chat_refusals_are_one_line() {
    let model = llava_dir();
    let model_path = model.path().display().to_string();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--chat-model", &model_path]);
    let base = server.url("");
    let not_an_image = image_path("coffee.jpg").with_extension("txt");
    let not_an_image = not_an_image.display().to_string();

    let refused = |args: &[&str], expected: &str| {
        let out = lens(args, "");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: printed {}", text(&out.stdout));
    };
    refused(&["chat", "--server", &base, "--model", "nope", QUESTION], "(invalid_request)");
    refused(&["chat", "--server", &base, "--image", &not_an_image, QUESTION], "cannot read");
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    refused(&["chat", "--server", &base, "--image", readme, QUESTION], "is not a JPEG, PNG, GIF or WebP image");
    refused(&["chat", "--server", &base, "--max-tokens", "0", QUESTION], "(invalid_request)");

    // A server without a chat model.
    let plain_data = tempfile::tempdir().unwrap();
    let plain = Server::start(plain_data.path(), &[]);
    refused(&["chat", "--server", &plain.url(""), QUESTION], "has no chat model");
    refused(&["chat", "--server", &plain.url(""), "--model", "any", QUESTION], "(chat_disabled)");
}
