//! Chat under concurrent clients on a real `lens serve`: time to first token and tokens/s with 1, 4 and 8
//! clients streaming `/v1/chat/completions` at once, beside transformers' `generate()` on the same weights and
//! prompt in the same run. Prints a markdown table.
//!
//! cargo bench -p lens --bench chat_load -- [--checkpoint DIR] [--reference-python .venv-ref/bin/python]
//!     [--clients 1,4,8] [--new 32]
//! cargo bench -p lens --bench chat_load -- --smoke       # the tiny LLaVA, 1 and 2 clients, 4 tokens
//!
//! Models: the tiny LLaVA fixture (an image and a question), and with `--checkpoint DIR` a TinyLlama-1.1B-shaped
//! LLaMA with random weights that `models/bench_chat_reference.py --write DIR` writes (float32, the real LLaMA
//! SentencePiece vocabulary, TinyLlama-Chat's template; a text question). Every client sends the same
//! conversation, greedy, with `max_tokens = min_tokens = --new`, so every answer has exactly that many tokens.
//!
//! Ours: all clients start together (a barrier), each reads its stream; TTFT is the time from its request to
//! its first text (HTTP, image decoding, template, tokenizing, waiting and the prefill included); a client's
//! tokens/s is its tokens over its request's whole time; the total is all tokens over the wall time from the
//! first request to the last answer. The server decodes the conversations together (continuous batching):
//! those that arrive while it is busy are prefilled together in its next forward pass.
//!
//! Each row is the best of 3 runs for the tiny LLaVA, one run for the TinyLlama shape, on both sides.
//!
//! transformers (`--reference-python`: run by this bench after the server has stopped, so they never share
//! the cores): `generate()` on a batch of N copies of the same prompt ids (its way of serving N at once),
//! greedy, `min_new_tokens = max_new_tokens = --new`, 2 threads; its TTFT is `generate(max_new_tokens=1)` on
//! that batch (every client waits for the batch's prefill; no HTTP, image decoding or tokenizing counted), a
//! client's tokens/s new over `generate()`'s time, the total N × new over it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::files::{data_url, fixture_model, llava_dir};
use common::server::Server;
use serde_json::{Value, json};

struct Options {
    smoke: bool,
    checkpoint: Option<PathBuf>,
    python: Option<PathBuf>,
    clients: Vec<usize>,
    new: usize,
}

fn options() -> Options {
    let mut o = Options { smoke: false, checkpoint: None, python: None, clients: vec![1, 4, 8], new: 32 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--smoke" => o.smoke = true,
            "--checkpoint" => o.checkpoint = Some(value().into()),
            "--reference-python" => o.python = Some(value().into()),
            "--clients" => o.clients = value().split(',').map(|c| c.parse().expect("--clients 1,4,8")).collect(),
            "--new" => o.new = value().parse().expect("--new N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if o.smoke {
        (o.clients, o.new, o.checkpoint, o.python) = (vec![1, 2], 4, None, None);
    }
    // `cargo bench` runs in native/: paths given from the workspace root are found there too. (Not
    // canonicalized: a virtualenv's python is a symlink that must stay one.)
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let resolve = |p: PathBuf| if p.is_absolute() || p.exists() { p } else { root.join(p) };
    o.checkpoint = o.checkpoint.map(resolve);
    o.python = o.python.map(resolve);
    o
}

/// One client's streamed answer.
struct Answer {
    ttft: f64,
    /// Seconds from the first text to the end.
    after_first: f64,
    tokens: usize,
    finished: Instant,
}

/// Sends `body` (streamed, usage included) and reads the answer's events as they come.
fn stream_answer(http: &reqwest::blocking::Client, url: &str, body: &Value) -> Answer {
    let sent = Instant::now();
    let response = http.post(url).json(body).send().expect("the server answers");
    assert_eq!(response.status(), 200, "{}", response.text().unwrap_or_default());
    let (mut first, mut tokens) = (None, None);
    for line in BufReader::new(response).lines() {
        let line = line.expect("a stream line");
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).expect("a JSON chunk");
        assert!(chunk.get("error").is_none(), "{chunk}");
        if chunk["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()) {
            first.get_or_insert_with(Instant::now);
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n as usize);
        }
    }
    let finished = Instant::now();
    let first = first.expect("some text");
    Answer {
        ttft: (first - sent).as_secs_f64(),
        after_first: (finished - first).as_secs_f64(),
        tokens: tokens.expect("a usage chunk"),
        finished,
    }
}

/// `clients` answers of `body`, all requested at once; and the wall time from the first request to the last
/// answer.
fn run_clients(server: &Server, body: &Value, clients: usize) -> (Vec<Answer>, f64) {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let url = server.url("/v1/chat/completions");
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (barrier, url, body, http) = (Arc::clone(&barrier), url.clone(), body.clone(), server.http.clone());
            std::thread::spawn(move || {
                barrier.wait();
                stream_answer(&http, &url, &body)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let answers: Vec<Answer> = handles.into_iter().map(|h| h.join().expect("a client")).collect();
    let wall = answers.iter().map(|a| a.finished - started).max().unwrap_or(Duration::ZERO).as_secs_f64();
    (answers, wall)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// A model to measure: its directory, the conversation, and how the reference script loads it.
struct Case {
    name: &'static str,
    dir: PathBuf,
    messages: Value,
    /// `llava` (with `image`) or `llama`.
    kind: &'static str,
    image: Option<PathBuf>,
    /// Runs per row, both sides; the best total kept (a tiny model's rows take milliseconds).
    iters: usize,
}

/// One row of the table.
struct Row {
    clients: usize,
    ttft_median: f64,
    ttft_max: f64,
    per_client: f64,
    total: f64,
}

fn measure(case: &Case, o: &Options) -> (Vec<Row>, usize, String) {
    let data = tempfile::tempdir().unwrap();
    let new = o.new.to_string();
    let parallel = o.clients.iter().max().copied().unwrap_or(1).to_string();
    let args = ["--chat-model", case.dir.to_str().unwrap(), "--chat-parallel", &parallel, "--chat-queue", "64"];
    let args = args.iter().map(|s| s.to_string()).chain(["--chat-max-tokens".into(), new]).collect();
    let mut server = Server::spawn(&fixture_model(), data.path(), args, vec![]);
    let (_, models) = server.get("/v1/models");
    let chat = models["data"].as_array().unwrap().iter().find(|m| m["task"] == "chat").expect("a chat model");
    let backend = format!("{} on {}", chat["backend"].as_str().unwrap_or("?"), chat["device"].as_str().unwrap_or("?"));
    let body = json!({
        "model": chat["id"], "messages": case.messages, "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": o.new, "min_tokens": o.new, "temperature": 0, "store": false,
    });
    let mut probe = body.clone();
    probe.as_object_mut().unwrap().remove("stream_options");
    (probe["stream"], probe["max_tokens"], probe["min_tokens"]) = (json!(false), json!(1), json!(1));
    let (_, usage) = server.post_json("/v1/chat/completions", &probe);
    let prompt_tokens = usage["usage"]["prompt_tokens"].as_u64().expect("usage") as usize;
    run_clients(&server, &body, 1); // warm-up
    let rows = o
        .clients
        .iter()
        .map(|&clients| {
            let (answers, wall) = (0..case.iters)
                .map(|_| run_clients(&server, &body, clients))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("one run");
            assert!(answers.iter().all(|a| a.tokens == o.new), "every answer has --new tokens");
            let per_client = answers.iter().map(|a| a.tokens as f64 / (a.ttft + a.after_first)).collect();
            Row {
                clients,
                ttft_median: median(answers.iter().map(|a| a.ttft).collect()),
                ttft_max: answers.iter().map(|a| a.ttft).fold(0.0, f64::max),
                per_client: median(per_client),
                total: (clients * o.new) as f64 / wall,
            }
        })
        .collect();
    server.stop();
    (rows, prompt_tokens, backend)
}

/// transformers' numbers for `case`, from `models/bench_chat_reference.py` (a JSON object keyed by clients).
fn reference(case: &Case, o: &Options, prompt_tokens: usize) -> Option<Value> {
    let python = o.python.as_ref()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/bench_chat_reference.py");
    let clients: Vec<String> = o.clients.iter().map(usize::to_string).collect();
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .args(["--model", case.dir.to_str().unwrap(), "--kind", case.kind])
        .args(["--messages", &case.messages.to_string(), "--clients", &clients.join(",")])
        .args(["--new", &o.new.to_string(), "--prompt-tokens", &prompt_tokens.to_string()])
        .args(["--iters", &case.iters.to_string()])
        .env("HF_HUB_OFFLINE", "1");
    if let Some(image) = &case.image {
        command.args(["--image", image.to_str().unwrap()]);
    }
    let out = command.output().expect("the reference script runs");
    assert!(out.status.success(), "reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("the reference's JSON"))
}

fn main() {
    let o = options();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/images");
    let llava = llava_dir();
    let mut cases = vec![Case {
        name: "tiny LLaVA (fixture)",
        dir: llava.path().to_path_buf(),
        messages: json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url("coffee.jpg")}},
            {"type": "text", "text": "What is shown in this image? Describe it."}]}]),
        kind: "llava",
        image: Some(images.join("coffee.jpg")),
        iters: if o.smoke { 1 } else { 3 },
    }];
    if let Some(dir) = &o.checkpoint {
        cases.push(Case {
            name: "TinyLlama-1.1B shape, random weights",
            dir: dir.clone(),
            messages: json!([{"role": "user", "content": "Tell me a story about a lighthouse keeper and a storm."}]),
            kind: "llama",
            image: None,
            iters: 1,
        });
    }
    println!(
        "\n## Chat under concurrent clients: {} new tokens per answer (greedy), streamed, {} threads available\n",
        o.new,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| model | prompt tokens | clients | TTFT median ms | TTFT max ms | tokens/s per client | tokens/s total | \
         transformers TTFT ms | tokens/s per client | tokens/s total | ours ÷ transformers (total) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for case in &cases {
        let (rows, prompt_tokens, backend) = measure(case, &o);
        let reference = reference(case, &o, prompt_tokens);
        for r in rows {
            let theirs = reference.as_ref().map(|j| &j["clients"][r.clients.to_string()]);
            let theirs = theirs.and_then(|t| Some((t["ttft_s"].as_f64()?, t["total_s"].as_f64()?)));
            let [ref_ttft, ref_client, ref_total, ratio] = match theirs {
                Some((ttft, total_s)) => {
                    let total = (r.clients * o.new) as f64 / total_s;
                    let client = o.new as f64 / total_s;
                    let ratio = r.total / total;
                    [
                        format!("{:.0}", ttft * 1000.0),
                        format!("{client:.2}"),
                        format!("{total:.2}"),
                        format!("{ratio:.2}"),
                    ]
                }
                None => ["–".to_string(), "–".into(), "–".into(), "–".into()],
            };
            println!(
                "| {} ({backend}) | {prompt_tokens} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {ref_ttft} | {ref_client} | {ref_total} | {ratio} |",
                case.name,
                r.clients,
                r.ttft_median * 1000.0,
                r.ttft_max * 1000.0,
                r.per_client,
                r.total
            );
        }
        if let Some(j) = &reference {
            println!("<!-- transformers: {} -->", j["about"]);
        }
    }
}
