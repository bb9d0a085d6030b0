//! Load on a real `lens serve`: search latency (p50/p99) and requests/s with N images indexed, the
//! start-up index build from the catalog, the ingest rate, and restarts (after kill -9 and SIGTERM)
//! with the graph loaded from its snapshot. Prints markdown tables.
//!
//! cargo bench -p lens --bench serve_load -- [--smoke] [--n 100000] [--seconds 10]
//!     [--concurrency 1,8,32] [--model DIR] [--index hnsw|exact]
//!
//! The catalog is seeded directly (random clustered unit vectors stored as the model's embeddings,
//! as ingest would store them), then the server is started on it: it rebuilds its index from the
//! catalog exactly as after a crash. The load generator runs in this process (tokio + reqwest), on the
//! same machine as the server: both share the cores.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::files::synthetic_png_sized;
use common::server::Server;
use lens_store::{Catalog, NewImage};
use serde_json::{Value, json};
use sha2::Digest;

struct Options {
    smoke: bool,
    n: usize,
    seconds: f64,
    concurrency: Vec<usize>,
    model: std::path::PathBuf,
    index: String,
    ingest: usize,
}

fn options() -> Options {
    let mut o = Options {
        smoke: false,
        n: 100_000,
        seconds: 10.0,
        concurrency: vec![1, 8, 32],
        model: common::files::fixture_model(),
        index: "hnsw".into(),
        ingest: 300,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--smoke" => o.smoke = true,
            "--n" => o.n = value().parse().expect("--n N"),
            "--seconds" => o.seconds = value().parse().expect("--seconds S"),
            "--concurrency" => {
                o.concurrency = value().split(',').map(|c| c.parse().expect("--concurrency 1,8")).collect()
            }
            "--model" => o.model = value().into(),
            "--index" => o.index = value(),
            "--ingest" => o.ingest = value().parse().expect("--ingest N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if o.smoke {
        (o.n, o.seconds, o.concurrency, o.ingest) = (2000, 1.0, vec![4], 10);
    }
    o
}

/// Deterministic unit vectors around 1000 centres (a splitmix64 stream through Box-Muller).
struct Clustered {
    state: u64,
    centres: Vec<Vec<f32>>,
}

impl Clustered {
    fn new(dim: usize, clusters: usize) -> Self {
        let mut s = Clustered { state: 42, centres: vec![] };
        s.centres = (0..clusters).map(|_| unit((0..dim).map(|_| s.normal()).collect())).collect();
        s
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn normal(&mut self) -> f32 {
        let u1 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 + 1e-300;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
    fn point(&mut self) -> Vec<f32> {
        let c = (self.next_u64() % self.centres.len() as u64) as usize;
        let dim = self.centres[c].len();
        let spread = 0.6 / (dim as f32).sqrt();
        let v: Vec<f32> = (0..dim).map(|i| self.centres[c][i] + spread * self.normal()).collect();
        unit(v)
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn fake_sha(i: usize) -> String {
    hex::encode(sha2::Sha256::digest(format!("lens-bench-{i}")))
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The JSON body of request number `i`.
type MakeBody = Arc<dyn Fn(usize) -> Value + Send + Sync>;

struct LoadResult {
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies: Vec<f64>,
}

impl LoadResult {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] * 1000.0
    }
}

/// `concurrency` clients sending `make(i)` bodies to `POST url` back to back for `seconds`.
async fn load(
    url: &str,
    concurrency: usize,
    seconds: f64,
    make: Arc<dyn Fn(usize) -> Value + Send + Sync>,
) -> LoadResult {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url, make) = (client.clone(), url.to_string(), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0usize, worker * 1_000_003);
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.post(&url).json(&make(i)).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64());
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut result = LoadResult { requests: 0, errors: 0, seconds: 0.0, latencies: vec![] };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        result.requests += lat.len();
        result.errors += errors;
        result.latencies.extend(lat);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.latencies.sort_by(f64::total_cmp);
    result
}

const QUERIES: &[&str] = &[
    "a photo of a cat",
    "a red car on a street",
    "two people hiking in the mountains",
    "a bowl of soup",
    "an astronaut",
    "a rocket launch at night",
    "coins on a table",
    "a black and white portrait",
    "a dog catching a frisbee",
    "a city skyline at sunset",
    "a cup of coffee",
    "children playing football",
];

fn main() {
    let o = options();
    let data = tempfile::tempdir().unwrap();
    let index_flag = ["--index", o.index.as_str()];

    // 1. The model id and dims the server will store embeddings under.
    let mut first = Server::start_model(&o.model, data.path(), &index_flag);
    let (_, models) = first.get("/v1/models");
    let model_id = models["data"][0]["id"].as_str().unwrap().to_string();
    let dims = models["data"][0]["dims"].as_u64().unwrap() as usize;
    let backend = models["data"][0]["backend"].as_str().unwrap_or("?").to_string();
    first.stop();
    drop(first);

    // 2. Seed the catalog.
    let seed_started = Instant::now();
    let catalog = Catalog::open(&data.path().join("catalog.sqlite3")).unwrap();
    let mut points = Clustered::new(dims, 1000);
    let batch = 5000;
    let mut i = 0;
    while i < o.n {
        let end = (i + batch).min(o.n);
        let rows: Vec<(NewImage, Vec<f32>)> = (i..end)
            .map(|j| {
                let image = NewImage {
                    sha256: fake_sha(j),
                    mime: "image/png".into(),
                    width: 224,
                    height: 224,
                    bytes: 1000,
                    source_url: None,
                    tags: if j % 10 == 0 { vec!["tenth".into()] } else { vec![] },
                    ..Default::default()
                };
                (image, points.point())
            })
            .collect();
        let refs: Vec<(&NewImage, &[f32])> = rows.iter().map(|(im, v)| (im, v.as_slice())).collect();
        catalog.insert_images(&refs, &model_id).unwrap();
        i = end;
    }
    drop(catalog);
    let seed_s = seed_started.elapsed().as_secs_f64();

    // 3. Start on the seeded catalog: the index is rebuilt from stored embeddings (no snapshot matches).
    let start = Instant::now();
    let server = Server::start_model(&o.model, data.path(), &index_flag);
    let startup_s = start.elapsed().as_secs_f64();
    let (_, ready) = server.get("/readyz");
    assert_eq!(ready["index"]["vectors"].as_u64(), Some(o.n as u64), "{ready}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let search_url = server.url("/v1/search");
    println!(
        "\n## lens serve under load: {} images indexed ({}, {dims}-d), model {model_id} on {backend}\n",
        o.n, o.index
    );
    println!(
        "catalog seeded in {seed_s:.1} s; server start-up to ready (index rebuilt from the catalog): {startup_s:.1} s\n"
    );
    println!("| query | clients | requests | errors | req/s | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let n = o.n;
    let scenarios: Vec<(&str, MakeBody)> = vec![
        ("text (model + index + catalog)", Arc::new(|i| json!({"text": QUERIES[i % QUERIES.len()], "k": 10}))),
        (
            "image_id (index + catalog)",
            Arc::new(move |i| json!({"image_id": &fake_sha((i * 7919) % n)[..32], "k": 10})),
        ),
        (
            "text, tag filter (1 in 10)",
            Arc::new(|i| json!({"text": QUERIES[i % QUERIES.len()], "k": 10, "tag": "tenth"})),
        ),
    ];
    for (name, make) in &scenarios {
        for &c in &o.concurrency {
            let r = runtime.block_on(load(&search_url, c, o.seconds, Arc::clone(make)));
            let mean = r.latencies.iter().sum::<f64>() / r.latencies.len().max(1) as f64 * 1000.0;
            println!(
                "| {name} | {c} | {} | {} | {:.0} | {:.2} | {:.2} | {mean:.2} |",
                r.requests,
                r.errors,
                r.requests as f64 / r.seconds,
                r.percentile(0.5),
                r.percentile(0.99)
            );
        }
    }

    // 4. Ingest: distinct 256x256 PNGs, 4 uploads at a time.
    let pngs: Vec<Vec<u8>> = (0..o.ingest as u32).map(|i| synthetic_png_sized(1_000_000 + i, 256)).collect();
    let total_bytes: usize = pngs.iter().map(Vec::len).sum();
    let url = server.url("/v1/images");
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let http = reqwest::blocking::Client::new();
                while let Some(png) = pngs.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
                    let form = reqwest::blocking::multipart::Form::new()
                        .part("file", reqwest::blocking::multipart::Part::bytes(png.clone()).file_name("x.png"));
                    let ok = http.post(&url).multipart(form).send().map(|r| r.status() == 201).unwrap_or(false);
                    if !ok {
                        failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let ingest_s = started.elapsed().as_secs_f64();
    println!("\n| ingest | images | failed | seconds | images/s | MB/s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| 256x256 PNG, 4 clients (decode, embed, blob fsync, catalog commit, index) | {} | {} | {ingest_s:.1} | {:.1} | {:.2} |",
        o.ingest,
        failures.into_inner(),
        o.ingest as f64 / ingest_s,
        total_bytes as f64 / 1e6 / ingest_s
    );
    println!("\nserver RSS after the run: {:.0} MB", rss_mb(server.pid()));

    // 5. Restarts. After kill -9 the snapshot saved at start-up is loaded and the images ingested since
    // are caught up from the catalog; after SIGTERM the snapshot saved at shutdown is loaded as it was.
    let mut server = server;
    server.kill9();
    let start = Instant::now();
    let mut server = server.restart_after_kill();
    let after_kill_s = start.elapsed().as_secs_f64();
    let after_kill = snapshot_loaded(&server.log());
    server.stop();
    let start = Instant::now();
    let server = server.restart_after_kill();
    let after_stop_s = start.elapsed().as_secs_f64();
    let after_stop = snapshot_loaded(&server.log());
    println!("\n| restart | to ready, s | index |");
    println!("|---|---|---|");
    println!("| first start on the seeded catalog | {startup_s:.1} | built from the catalog |");
    println!("| after kill -9 | {after_kill_s:.1} | {after_kill} |");
    println!("| after SIGTERM | {after_stop_s:.1} | {after_stop} |");
}

/// What the server's "index loaded from its snapshot" log line says, or that it built the index.
fn snapshot_loaded(log: &str) -> String {
    let Some(line) = log.lines().find(|l| l.contains("index loaded from its snapshot")) else {
        return "built from the catalog (no snapshot loaded)".into();
    };
    let fields = &serde_json::from_str::<Value>(line).unwrap()["fields"];
    format!(
        "snapshot loaded: {} vectors, {} inserted and {} removed to catch up",
        fields["vectors"], fields["inserted"], fields["removed"]
    )
}
