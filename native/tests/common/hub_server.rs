//! A small HTTP server with the HuggingFace hub's layout, serving a model directory, for testing
//! `lens models pull` without a network. Real sockets on 127.0.0.1, real HTTP/1.1.
//!
//! - `GET /api/models/{repo}/revision/{rev}?blobs=true`: the revision listing (blob ids, LFS sha256/size)
//! - `GET /{repo}/resolve/{rev}/{file}`: the file; LFS files (`*.safetensors`) redirect to `/cdn/{sha256}`
//!   as the real hub does
//! - `Range: bytes=N-` answered with 206
//! - faults to inject: cut the first transfer of a file halfway; serve corrupted bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha1::Digest as _;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
pub struct Faults {
    /// Files whose first full transfer is cut after half the bytes.
    pub cut_once: Vec<String>,
    /// Files served with one byte flipped (checksum must catch it).
    pub corrupt: Vec<String>,
}

#[derive(Default)]
pub struct Log {
    pub requests: Vec<(String, Option<String>)>, // (path, range header)
}

pub struct HubServer {
    pub endpoint: String,
    pub log: Arc<Mutex<Log>>,
}

struct State {
    repo: String,
    files: HashMap<String, Vec<u8>>,
    faults: Faults,
    cut_done: Mutex<Vec<String>>,
    log: Arc<Mutex<Log>>,
}

impl HubServer {
    /// Serve every file of `dir` as repository `repo`.
    pub fn start(repo: &str, dir: &Path, faults: Faults) -> HubServer {
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.starts_with("reference") {
                continue; // test outputs, not part of the checkpoint
            }
            files.insert(name, std::fs::read(entry.path()).unwrap());
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let state =
            Arc::new(State { repo: repo.to_string(), files, faults, cut_done: Mutex::new(vec![]), log: log.clone() });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || handle(stream, &state));
            }
        });
        HubServer { endpoint, log }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn git_blob_id(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".gguf")
}

fn handle(mut stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    state.log.lock().unwrap().requests.push((path.clone(), range.clone()));

    let api = format!("/api/models/{}/revision/", state.repo);
    let resolve = format!("/{}/resolve/", state.repo);
    if let Some(rest) = path.strip_prefix(&api) {
        let rev = rest.split('?').next().unwrap();
        if rev != "main" && rev != COMMIT {
            return respond(&mut stream, 404, "Not Found", &[], b"{\"error\":\"Revision not found\"}");
        }
        let siblings: Vec<serde_json::Value> = state
            .files
            .iter()
            .map(|(name, bytes)| {
                let mut s = serde_json::json!({"rfilename": name, "blobId": git_blob_id(bytes), "size": bytes.len()});
                if is_lfs(name) {
                    s["lfs"] =
                        serde_json::json!({"sha256": sha256_hex(bytes), "size": bytes.len(), "pointerSize": 134});
                }
                s
            })
            .collect();
        let body =
            serde_json::to_vec(&serde_json::json!({"id": state.repo, "sha": COMMIT, "siblings": siblings})).unwrap();
        return respond(&mut stream, 200, "OK", &[("Content-Type", "application/json".into())], &body);
    }
    let (name, bytes) = if let Some(rest) = path.strip_prefix(&resolve) {
        let Some((rev, name)) = rest.split_once('/') else { return respond(&mut stream, 404, "Not Found", &[], b"") };
        let Some(bytes) = state.files.get(name).filter(|_| rev == COMMIT || rev == "main") else {
            return respond(&mut stream, 404, "Not Found", &[], b"Entry not found");
        };
        if is_lfs(name) {
            let location = format!("/cdn/{}", sha256_hex(bytes));
            return respond(&mut stream, 302, "Found", &[("Location", location)], b"");
        }
        (name.to_string(), bytes.clone())
    } else if let Some(sha) = path.strip_prefix("/cdn/") {
        match state.files.iter().find(|(_, b)| sha256_hex(b) == sha) {
            Some((name, bytes)) => (name.clone(), bytes.clone()),
            None => return respond(&mut stream, 404, "Not Found", &[], b""),
        }
    } else {
        return respond(&mut stream, 404, "Not Found", &[], b"");
    };

    let mut bytes = bytes;
    if state.faults.corrupt.contains(&name) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(start) = start {
        let body = &bytes[start.min(bytes.len())..];
        let content_range = format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len());
        return respond(&mut stream, 206, "Partial Content", &[("Content-Range", content_range)], body);
    }
    let cut = {
        let mut done = state.cut_done.lock().unwrap();
        let cut = state.faults.cut_once.contains(&name) && !done.contains(&name);
        if cut {
            done.push(name.clone());
        }
        cut
    };
    if cut {
        // Promise the whole file, send half, hang up.
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len());
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&bytes[..bytes.len() / 2]);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    respond(&mut stream, 200, "OK", &[], &bytes);
}

fn respond(stream: &mut TcpStream, code: u16, reason: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let mut sink = [0u8; 1];
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(10)));
    let _ = stream.read(&mut sink);
}
