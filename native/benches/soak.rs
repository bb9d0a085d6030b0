//! Soak: a real `lens serve` under mixed search and ingest from many clients, killed with SIGKILL every
//! so often and restarted on the same data. Prints, per minute, requests, latencies, errors and the
//! server's resident memory (it must level off), then what crashes must not do: acknowledged images
//! lost (0), blobs left without a row once the restart's orphan sweep ran (0). Loopback only, bounded.
//!
//! cargo bench -p lens --bench soak -- [--smoke] [--minutes 10] [--clients 16] [--kill-every-s 120]
//!     [--uploads-per-10 3]
//!
//! Clients: 3 in 10 requests upload (one new image, or four in one request), the rest search by text
//! (`--uploads-per-10 0 --kill-every-s 0`: search only, no kills, to watch memory alone).
//! A request cut by a kill counts as an error of that minute; an upload counts as acknowledged only
//! once its 201 was read. The server runs with `--orphan-grace-s 0`, so each start sweeps what the
//! kill left. Exits non-zero when an acknowledged image is missing or an orphan stays.

mod common {
    #![allow(dead_code)]
    #[path = "../../tests/common/files.rs"]
    pub mod files;
    #[path = "../../tests/common/server.rs"]
    pub mod server;
}

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::files::{collect_files, synthetic_png};
use common::server::Server;
use serde_json::{Value, json};

struct Options {
    minutes: f64,
    clients: usize,
    /// Zero: no kills.
    kill_every: Duration,
    uploads_per_10: usize,
    /// Rows of the table: one per this much time.
    period: Duration,
}

fn options() -> Options {
    let mut o = Options {
        minutes: 10.0,
        clients: 16,
        kill_every: Duration::from_secs(120),
        uploads_per_10: 3,
        period: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--smoke" => {
                o = Options {
                    minutes: 0.75,
                    clients: 4,
                    kill_every: Duration::from_secs(15),
                    uploads_per_10: 3,
                    period: Duration::from_secs(15),
                }
            }
            "--minutes" => o.minutes = value().parse().expect("--minutes M"),
            "--clients" => o.clients = value().parse().expect("--clients N"),
            "--kill-every-s" => o.kill_every = Duration::from_secs(value().parse().expect("--kill-every-s S")),
            "--uploads-per-10" => o.uploads_per_10 = value().parse().expect("--uploads-per-10 N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// What happened in one period of the run.
#[derive(Default)]
struct Period {
    search_ms: Vec<f64>,
    ingest_ms: Vec<f64>,
    errors: u64,
    rss_max: u64,
}

struct Shared {
    base: RwLock<String>,
    pid: RwLock<u32>,
    periods: Mutex<Vec<Period>>,
    acknowledged: Mutex<Vec<String>>,
    stop: AtomicBool,
    started: Instant,
    period: Duration,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut Period)) {
        let index = (self.started.elapsed().as_secs_f64() / self.period.as_secs_f64()) as usize;
        let mut periods = self.periods.lock().unwrap();
        if periods.len() <= index {
            periods.resize_with(index + 1, Period::default);
        }
        f(&mut periods[index]);
    }
}

fn resident(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `"p50 / p99"` of `values`, or `-` when there are none (a search-only run has no ingest).
fn p50_p99(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize];
    format!("{:.1} / {:.1}", at(0.5), at(0.99))
}

const QUERIES: [&str; 6] = ["a red rocket", "a cat", "the sea at night", "an astronaut", "coffee", "green leaves"];

fn client(shared: &Shared, number: usize, uploads_per_10: usize) {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut seed = 1_000_000 * (number as u32 + 1);
    for i in 0usize.. {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let base = shared.base.read().unwrap().clone();
        let started = Instant::now();
        if i % 10 < uploads_per_10 {
            let files = if i % 20 == 0 { 4 } else { 1 };
            let mut form = reqwest::blocking::multipart::Form::new();
            for _ in 0..files {
                seed += 1;
                let part = reqwest::blocking::multipart::Part::bytes(synthetic_png(seed)).file_name("s.png");
                form = form.part("file", part);
            }
            let answer = http.post(format!("{base}/v1/images")).multipart(form).send().and_then(|r| {
                let status = r.status().as_u16();
                r.json::<Value>().map(|body| (status, body))
            });
            match answer {
                Ok((201, body)) => {
                    let ids: Vec<String> = match body["images"].as_array() {
                        Some(images) => images.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect(),
                        None => vec![body["id"].as_str().unwrap().to_string()],
                    };
                    shared.acknowledged.lock().unwrap().extend(ids);
                    shared.record(|p| p.ingest_ms.push(started.elapsed().as_secs_f64() * 1e3));
                }
                _ => shared.record(|p| p.errors += 1),
            }
        } else {
            let query = json!({"text": QUERIES[i % QUERIES.len()], "k": 10});
            let answered = http
                .post(format!("{base}/v1/search"))
                .json(&query)
                .send()
                .is_ok_and(|r| r.status() == 200 && r.bytes().is_ok());
            if answered {
                shared.record(|p| p.search_ms.push(started.elapsed().as_secs_f64() * 1e3));
            } else {
                shared.record(|p| p.errors += 1);
                // The server is down (killed): wait for the next one.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Every image id the server lists.
fn listed(server: &Server) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/images?limit=1000&cursor={c}"),
            None => "/v1/images?limit=1000".to_string(),
        };
        let (status, page) = server.get(&path);
        assert_eq!(status, 200, "{page}");
        ids.extend(page["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

fn blob_count(server: &Server) -> usize {
    let mut names = Vec::new();
    collect_files(&server.data.join("blobs"), &mut names);
    names.iter().filter(|n| !n.starts_with('.')).count()
}

fn main() {
    let o = options();
    let data = tempfile::tempdir().unwrap();
    let flags = ["--orphan-grace-s", "0"];
    let mut server = Server::start(data.path(), &flags);
    let shared = Arc::new(Shared {
        base: RwLock::new(server.base.clone()),
        pid: RwLock::new(server.pid()),
        periods: Mutex::new(Vec::new()),
        acknowledged: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        period: o.period,
    });
    let clients: Vec<_> = (0..o.clients)
        .map(|n| {
            let shared = Arc::clone(&shared);
            let uploads = o.uploads_per_10;
            std::thread::spawn(move || client(&shared, n, uploads))
        })
        .collect();
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let mut next_kill = o.kill_every;
    let mut kills = 0;
    while shared.started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(500));
        let rss = resident(*shared.pid.read().unwrap());
        shared.record(|p| p.rss_max = p.rss_max.max(rss));
        let due = !o.kill_every.is_zero() && shared.started.elapsed() >= next_kill;
        if due && shared.started.elapsed() + Duration::from_secs(5) < total {
            server.kill9();
            server = server.restart_after_kill();
            *shared.base.write().unwrap() = server.base.clone();
            *shared.pid.write().unwrap() = server.pid();
            kills += 1;
            next_kill += o.kill_every;
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }

    println!(
        "\n### lens serve soak: {} clients, {} uploads in 10 requests, {:.1} min, kill -9 every {} s ({kills} kills)\n",
        o.clients,
        o.uploads_per_10,
        o.minutes,
        o.kill_every.as_secs()
    );
    println!("| from (s) | requests | search p50 / p99 (ms) | ingest p50 / p99 (ms) | errors | resident max (MiB) |");
    println!("|---|---|---|---|---|---|");
    let mut periods = std::mem::take(&mut *shared.periods.lock().unwrap());
    for (i, p) in periods.iter_mut().enumerate() {
        let requests = p.search_ms.len() + p.ingest_ms.len() + p.errors as usize;
        println!(
            "| {} | {requests} | {} | {} | {} | {:.0} |",
            i as u64 * o.period.as_secs(),
            p50_p99(&mut p.search_ms),
            p50_p99(&mut p.ingest_ms),
            p.errors,
            p.rss_max as f64 / (1 << 20) as f64,
        );
    }

    // One more kill in the middle of whatever is in flight, then the checks on a fresh start.
    server.kill9();
    let server = server.restart_after_kill();
    let acknowledged: HashSet<String> = shared.acknowledged.lock().unwrap().iter().cloned().collect();
    let present = listed(&server);
    let lost: Vec<&String> = acknowledged.difference(&present).collect();
    // The start's sweep runs in the background: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_count(&server) != present.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let orphans = blob_count(&server) as i64 - present.len() as i64;
    println!("\n| acknowledged | present | lost | rows | blobs | orphans |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {orphans} |",
        acknowledged.len(),
        acknowledged.len() - lost.len(),
        lost.len(),
        present.len(),
        blob_count(&server)
    );
    assert!(lost.is_empty(), "acknowledged images lost: {lost:?}");
    assert_eq!(orphans, 0, "blobs without a row after the sweep");
}
