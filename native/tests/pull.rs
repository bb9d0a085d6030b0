//! `lens models pull` against a local server with the hub's layout (see `hub_server.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::hub_server::{self, Faults, HubServer};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/clip-tiny-gelu")
}

fn pull(server: &HubServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["models", "pull"])
        .args(args)
        .env("HF_ENDPOINT", &server.endpoint)
        .env_remove("HF_TOKEN")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pull_downloads_checks_and_resumes() {
    let server = HubServer::start(
        "tiny/clip",
        &fixture_dir(),
        Faults { cut_once: vec!["model.safetensors".into()], ..Default::default() },
    );
    let dir = tempfile::tempdir().unwrap();
    let out = pull(&server, &["tiny/clip", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir.path().display().to_string());

    for name in
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]
    {
        let ours = std::fs::read(dir.path().join(name)).unwrap();
        let theirs = std::fs::read(fixture_dir().join(name)).unwrap();
        assert!(ours == theirs, "{name} differs from the served file");
    }
    assert!(!dir.path().join("model.safetensors.part").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lens-manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["commit"], hub_server::COMMIT);

    // The cut transfer was resumed with a Range request for the missing half, through the CDN redirect.
    let log = server.log.lock().unwrap();
    let resumed = log
        .requests
        .iter()
        .any(|(path, range)| path.starts_with("/cdn/") && range.as_deref().is_some_and(|r| r != "bytes=0-"));
    assert!(resumed, "no resumed range request in {:?}", log.requests);
    drop(log);

    // A second pull finds everything in place and downloads nothing.
    let before = server.log.lock().unwrap().requests.len();
    let out = pull(&server, &["tiny/clip", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("up to date"));
    assert_eq!(server.log.lock().unwrap().requests.len(), before + 1, "only the listing is fetched again");

    // The pulled directory is a working model.
    let embed = Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["embed", "--model", dir.path().to_str().unwrap(), "--text", "a photo of a cat"])
        .output()
        .unwrap();
    assert!(embed.status.success(), "{}", stderr(&embed));
}

#[test]
fn pull_rejects_corrupt_files_and_leaves_nothing() {
    let server = HubServer::start(
        "tiny/clip",
        &fixture_dir(),
        Faults { corrupt: vec!["model.safetensors".into()], ..Default::default() },
    );
    let dir = tempfile::tempdir().unwrap();
    let out = pull(&server, &["tiny/clip", "--dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("model.safetensors") && err.contains("sha256"), "{err}");
    assert!(!dir.path().join("model.safetensors").exists());
    assert!(!dir.path().join("model.safetensors.part").exists());
}

#[test]
fn pull_reports_unknown_repos_and_revisions() {
    let server = HubServer::start("tiny/clip", &fixture_dir(), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = pull(&server, &["tiny/other", "--dir", d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = pull(&server, &["tiny/clip", "--revision", "v9", "--dir", d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = pull(&server, &["../../etc", "--dir", d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid repository id"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "errors are one line");
}

#[test]
fn pull_fetches_one_gguf_file_and_chat_checkpoints_whole() {
    let gguf_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/gguf-llama");
    let server = HubServer::start("tiny/llama-gguf", &gguf_repo, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let out = pull(&server, &["tiny/llama-gguf", "--file", "llama3-q4km.gguf", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.path().join("llama3-q4km.gguf");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), file.display().to_string());
    assert!(std::fs::read(&file).unwrap() == std::fs::read(gguf_repo.join("llama3-q4km.gguf")).unwrap());
    assert!(!dir.path().join("llama-tiny.gguf").exists(), "only the file asked for");
    let generate = Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(["generate", "--model", file.to_str().unwrap(), "--raw", "--prompt", "The cat", "--max-new-tokens", "4"])
        .output()
        .unwrap();
    assert!(generate.status.success(), "{}", stderr(&generate));
    for (file, needle) in
        [("missing.gguf", "no file `missing.gguf`"), ("../x.gguf", "--file takes"), ("a.bin", "--file takes")]
    {
        let out = pull(&server, &["tiny/llama-gguf", "--file", file, "--dir", dir.path().to_str().unwrap()]);
        assert!(!out.status.success() && stderr(&out).contains(needle), "{file}: {}", stderr(&out));
    }

    // A chat checkpoint comes with its template.
    let repo = tempfile::tempdir().unwrap();
    let llama = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/llama-tiny");
    for name in
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
    {
        std::fs::copy(llama.join(name), repo.path().join(name)).unwrap();
    }
    std::fs::write(repo.path().join("chat_template.jinja"), "{{ bos_token }}{{ messages[0]['content'] }}").unwrap();
    let server = HubServer::start("tiny/llama-chat", repo.path(), Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let out = pull(&server, &["tiny/llama-chat", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("chat_template.jinja").exists() && dir.path().join("generation_config.json").exists());
    let generate = Command::new(env!("CARGO_BIN_EXE_lens"))
        .args([
            "generate",
            "--model",
            dir.path().to_str().unwrap(),
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(generate.status.success(), "{}", stderr(&generate));
    let out: serde_json::Value = serde_json::from_slice(&generate.stdout).unwrap();
    assert_eq!(out["prompt_tokens"], 2, "`<s>Hello`: BOS from the template, then one piece");
}
