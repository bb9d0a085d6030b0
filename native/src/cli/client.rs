//! `lens ingest` and `lens search`: the CLI as a client of a running `lens serve` (and what `lens chat`
//! shares with them: the server's address, the HTTP client, error bodies).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lens_core::api::{ErrorBody, Image, IngestJobRequest, Job, SearchRequest, SearchResponse};
use serde_json::json;

/// Files uploaded at once.
const UPLOAD_THREADS: usize = 4;
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "gif", "webp"];

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The `lens serve` to talk to.
    #[arg(long, env = "LENS_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

impl ServerArgs {
    /// The server's base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        self.server.trim_end_matches('/')
    }
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Tags for every image, comma-separated.
    #[arg(long, default_value = "")]
    tags: String,
    /// Image files, folders (walked recursively for .jpg/.jpeg/.png/.gif/.webp) and http(s) URLs.
    #[arg(required = true, value_name = "PATH|URL")]
    inputs: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["text", "image"])))]
pub struct SearchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How many results.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Search with this image file instead of a text.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// The query text.
    text: Option<String>,
}

pub(super) fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?)
}

/// The answer as `T`, or the server's error body (lens-core's [`ErrorBody`]) as the error.
pub(super) fn check<T: serde::de::DeserializeOwned>(response: reqwest::blocking::Response) -> Result<T> {
    let status = response.status();
    let bytes = response.bytes().context("cannot read the server's answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| format!("{} ({})", body.error.message, body.error.code))
            .unwrap_or_else(|_| "no details".into());
        bail!("server answered {status}: {message}");
    }
    serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from the server ({status})"))
}

fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}").expect("template"));
    bar
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let p = entry.path();
            let is_image = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if p.is_dir() || is_image {
                collect_files(&p, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Uploads files (a progress bar, one JSON line per file) and sends URLs as one server-side job whose
/// progress is polled. Exits non-zero if anything failed.
pub fn ingest(args: &IngestArgs) -> Result<()> {
    let base = args.server.url();
    let client = client()?;
    let (urls, paths): (Vec<&String>, Vec<&String>) =
        args.inputs.iter().partition(|i| i.starts_with("http://") || i.starts_with("https://"));
    let mut files = Vec::new();
    for p in paths {
        collect_files(Path::new(p), &mut files)?;
    }
    let tags: Vec<&str> = args.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    let mut failures = 0;

    if !files.is_empty() {
        let bar = bar(files.len() as u64);
        let next = AtomicUsize::new(0);
        let failed = AtomicUsize::new(0);
        let out = Mutex::new(std::io::stdout());
        std::thread::scope(|scope| {
            for _ in 0..UPLOAD_THREADS.min(files.len()) {
                scope.spawn(|| {
                    while let Some(path) = files.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let result = upload(&client, base, path, &tags);
                        let line = match result {
                            Ok(image) => json!({"input": path.display().to_string(), "id": image.id}),
                            Err(e) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                json!({"input": path.display().to_string(), "error": format!("{e:#}")})
                            }
                        };
                        bar.suspend(|| {
                            use std::io::Write;
                            let mut out = out.lock().unwrap();
                            let _ = writeln!(out, "{line}");
                        });
                        bar.inc(1);
                    }
                });
            }
        });
        bar.finish_and_clear();
        failures += failed.into_inner();
    }

    if !urls.is_empty() {
        let request = IngestJobRequest {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let job: Job = check(client.post(format!("{base}/v1/ingest")).json(&request).send()?)?;
        let id = job.id;
        let bar = bar(urls.len() as u64);
        bar.set_message(format!("job {id}"));
        let job = loop {
            let job: Job = check(client.get(format!("{base}/v1/jobs/{id}")).send()?)?;
            bar.set_position(job.done + job.failed);
            if job.state.is_finished() {
                break job;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        bar.finish_and_clear();
        failures += job.failed as usize;
        println!(
            "{}",
            json!({"job": id, "state": job.state, "done": job.done, "failed": job.failed, "result": job.result})
        );
    }
    if failures > 0 {
        bail!("{failures} input(s) failed");
    }
    Ok(())
}

fn upload(client: &reqwest::blocking::Client, base: &str, path: &Path, tags: &[&str]) -> Result<Image> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
    let form = reqwest::blocking::multipart::Form::new()
        .part("file", reqwest::blocking::multipart::Part::bytes(bytes).file_name(name))
        .text("tags", tags.join(","));
    check(client.post(format!("{base}/v1/images")).multipart(form).send()?)
}

/// Prints `{"results": [...]}` for a text or an image query.
pub fn search(args: &SearchArgs) -> Result<()> {
    let base = args.server.url();
    let client = client()?;
    let response: SearchResponse = match (&args.image, &args.text) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "query".into());
            let form = reqwest::blocking::multipart::Form::new()
                .part("file", reqwest::blocking::multipart::Part::bytes(bytes).file_name(name))
                .text("k", args.k.to_string());
            check(client.post(format!("{base}/v1/search/image")).multipart(form).send()?)?
        }
        (None, text) => {
            let request = SearchRequest { text: text.clone(), k: Some(args.k), ..Default::default() };
            check(client.post(format!("{base}/v1/search")).json(&request).send()?)?
        }
    };
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
}
