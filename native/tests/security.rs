//! `lens serve` as a hostile user meets it, against the real binary: API keys made by `lens keys` while
//! the server runs, scopes, what belongs to which tenant, rate limits (429 with `Retry-After`), the `Host`
//! allow-list and cross-site writes.

use std::process::Command;

use reqwest::blocking::RequestBuilder;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::common::files::{image_bytes, synthetic_png};
use crate::common::server::{Server, into_json};

fn keys(data: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lens")).arg("keys").args(args).arg("--data").arg(data).output().unwrap();
    assert!(out.status.success(), "lens keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// `lens keys create`'s secret.
fn create_key(data: &std::path::Path, name: &str, scope: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--name", name, "--scope", scope];
    args.extend(extra);
    let key = keys(data, &args);
    assert!(key["id"].as_str().unwrap().starts_with("key_"), "{key}");
    key["key"].as_str().unwrap().to_string()
}

fn with_key(request: RequestBuilder, key: &str) -> RequestBuilder {
    request.bearer_auth(key)
}

fn send(request: RequestBuilder) -> (u16, Value) {
    into_json(request.send().unwrap())
}

fn upload(server: &Server, key: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::blocking::multipart::Form::new()
        .part("file", reqwest::blocking::multipart::Part::bytes(bytes).file_name(name.to_string()));
    send(with_key(server.http.post(server.url("/v1/images")), key).multipart(form))
}

fn image_ids(server: &Server, key: &str) -> Vec<String> {
    let (status, list) = send(with_key(server.http.get(server.url("/v1/images")), key));
    assert_eq!(status, 200, "{list}");
    list["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

/// Keys, scopes and tenants: nothing but health answers without a key; a key sees and deletes only its
/// tenant's images, jobs, chats' and collections (another's ids are 404), a read key cannot write, only an
/// admin reads the sync feed, metrics or starts a rebuild; identical bytes uploaded by two tenants are one
/// image each lets go of; a revoked key stops working at once.
#[test]
fn keys_scope_routes_and_tenants_see_only_their_own() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--auth", "required"]);
    let admin = create_key(data.path(), "ops", "admin", &[]);
    let ann = create_key(data.path(), "ann", "write", &[]);
    let ann_reader = create_key(data.path(), "ann-dashboard", "read", &["--tenant", "ann"]);
    let bob = create_key(data.path(), "bob", "write", &[]);

    // Without a key: 401 with a challenge, except health and the API's description.
    let r = server.http.get(server.url("/v1/images")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"lens\"");
    assert_eq!(into_json(r).1["error"]["code"], "unauthorized");
    for path in ["/v1/sync", "/metrics", "/v1/jobs", "/v1/chats", "/v1/collections"] {
        assert_eq!(server.get(path).0, 401, "{path}");
    }
    assert_eq!(server.post_json("/v1/index/rebuild", &json!({})).0, 401);
    assert_eq!(send(with_key(server.http.get(server.url("/v1/images")), "lens_not-a-key")).0, 401);
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        assert_eq!(server.get(path).0, 200, "{path}");
    }

    // Ann's image: hers and her read key's, not Bob's.
    let (status, rocket) = upload(&server, &ann, "rocket.jpg", image_bytes("rocket.jpg"));
    assert_eq!(status, 201, "{rocket}");
    let id = rocket["id"].as_str().unwrap().to_string();
    assert_eq!(image_ids(&server, &ann), [id.clone()]);
    assert_eq!(image_ids(&server, &ann_reader), [id.clone()]);
    assert!(image_ids(&server, &bob).is_empty());
    for path in [format!("/v1/images/{id}"), format!("/v1/images/{id}/blob"), format!("/v1/images/{id}/thumbnail")] {
        assert_eq!(send(with_key(server.http.get(server.url(&path)), &bob)).0, 404, "{path}");
        assert_eq!(send(with_key(server.http.get(server.url(&path)), &ann_reader)).0, 200, "{path}");
    }
    assert_eq!(send(with_key(server.http.delete(server.url(&format!("/v1/images/{id}"))), &bob)).0, 404);
    let search = json!({"image_id": id});
    assert_eq!(send(with_key(server.http.post(server.url("/v1/search")).json(&search), &bob)).0, 404);
    let by_text = json!({"text": "a rocket", "k": 10});
    let (_, found) = send(with_key(server.http.post(server.url("/v1/search")).json(&by_text), &bob));
    assert!(found["results"].as_array().unwrap().is_empty(), "{found}");
    let (_, found) = send(with_key(server.http.post(server.url("/v1/search")).json(&by_text), &ann_reader));
    assert_eq!(found["results"][0]["id"], id.as_str());

    // Scopes: a read key cannot write; only an admin reads the feed and metrics or rebuilds.
    let (status, refused) = upload(&server, &ann_reader, "cat.png", synthetic_png(1));
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")), "{refused}");
    for key in [&ann, &ann_reader] {
        assert_eq!(send(with_key(server.http.get(server.url("/v1/sync")), key)).0, 403);
        assert_eq!(send(with_key(server.http.get(server.url("/metrics")), key)).0, 403);
        assert_eq!(send(with_key(server.http.post(server.url("/v1/index/rebuild")), key)).0, 403);
    }
    assert_eq!(send(with_key(server.http.get(server.url("/v1/sync")), &admin)).0, 200);
    let metrics = server.http.get(server.url("/metrics")).bearer_auth(&admin).send().unwrap();
    assert_eq!(metrics.status(), 200);
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_str(&admin).unwrap());
    assert_eq!(send(server.http.get(server.url("/v1/images")).headers(headers)).1["images"][0]["id"], id.as_str());

    // One rebuild at a time: while one runs, the same job comes back.
    let (status, first) = send(with_key(server.http.post(server.url("/v1/index/rebuild")), &admin));
    assert_eq!(status, 202, "{first}");
    let (status, second) = send(with_key(server.http.post(server.url("/v1/index/rebuild")), &admin));
    assert!(status == 200 && second["id"] == first["id"] || status == 202 && second["id"] != first["id"]);
    // Jobs belong to their tenant.
    let job = first["id"].as_str().unwrap();
    assert_eq!(send(with_key(server.http.get(server.url(&format!("/v1/jobs/{job}"))), &bob)).0, 404);
    assert_eq!(send(with_key(server.http.get(server.url(&format!("/v1/jobs/{job}"))), &admin)).0, 200);
    let (_, bob_jobs) = send(with_key(server.http.get(server.url("/v1/jobs")), &bob));
    assert!(bob_jobs["jobs"].as_array().unwrap().is_empty(), "{bob_jobs}");

    // The same bytes from Bob: new to him (201); his delete lets go of it, Ann keeps hers.
    let (status, again) = upload(&server, &bob, "rocket.jpg", image_bytes("rocket.jpg"));
    assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
    assert_eq!(send(with_key(server.http.delete(server.url(&format!("/v1/images/{id}"))), &bob)).0, 204);
    assert!(image_ids(&server, &bob).is_empty());
    let blob = with_key(server.http.get(server.url(&format!("/v1/images/{id}/blob"))), &ann).send().unwrap();
    // A tenant's image: no shared cache may keep it.
    assert_eq!(blob.headers()["cache-control"], "private, max-age=31536000, immutable");
    assert_eq!(blob.bytes().unwrap().to_vec(), image_bytes("rocket.jpg"), "Ann's image is whole");

    // Collections: names are global; Bob neither sees nor adds to Ann's.
    let docs = |key: &str, name: &str| {
        let body = json!({"documents": [{"id": "d1", "text": "The rocket launched at dawn."}]});
        send(with_key(server.http.post(server.url(&format!("/v1/collections/{name}/documents"))).json(&body), key))
    };
    assert_eq!(docs(&ann, "notes").0, 201);
    let (status, taken) = docs(&bob, "notes");
    assert_eq!((status, taken["error"]["code"].as_str()), (409, Some("conflict")), "{taken}");
    assert_eq!(send(with_key(server.http.get(server.url("/v1/collections/notes")), &bob)).0, 404);
    let (_, listed) = send(with_key(server.http.get(server.url("/v1/collections")), &bob));
    assert!(listed["collections"].as_array().unwrap().is_empty(), "{listed}");
    assert_eq!(send(with_key(server.http.delete(server.url("/v1/collections/notes")), &bob)).0, 404);
    assert_eq!(send(with_key(server.http.get(server.url("/v1/collections/notes")), &ann)).1["documents"], 1);

    // Ann's delete removes it; a revoked key is refused from the next request on.
    assert_eq!(send(with_key(server.http.delete(server.url(&format!("/v1/images/{id}"))), &ann)).0, 204);
    assert!(image_ids(&server, &admin).is_empty());
    let listed: Vec<Value> = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_lens"))
            .args(["keys", "list", "--data"])
            .arg(data.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|k| k.get("key").is_none() && !k.to_string().contains(&ann)), "no secret is listed");
    let ann_id = listed.iter().find(|k| k["name"] == "ann").unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(keys(data.path(), &["revoke", &ann_id])["revoked"], true);
    assert_eq!(send(with_key(server.http.get(server.url("/v1/images")), &ann)).0, 401);
    assert_eq!(send(with_key(server.http.get(server.url("/v1/images")), &ann_reader)).0, 200, "other keys work");
}

/// Rate limits: a key over its own rate, an address without a key over the anonymous rate, jobs over the
/// job rate and bodies over the byte rate get 429 with `Retry-After` and `RateLimit-*`; under them the
/// headers count down.
#[test]
fn floods_get_429_with_retry_after() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--auth", "required", "--job-rate-limit", "2"]);
    let slow = create_key(data.path(), "slow", "write", &["--rate", "2"]);
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let r = with_key(server.http.get(server.url("/v1/images")), &slow).send().unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 200 {
            remaining.push(r.headers()["ratelimit-remaining"].to_str().unwrap().parse::<u32>().unwrap());
            assert_eq!(r.headers()["ratelimit-limit"], "4");
        } else if limited.is_none() {
            limited = Some(r);
        }
    }
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    assert_eq!(into_json(limited).1["error"]["code"], "rate_limited");
    assert!(remaining.windows(2).all(|w| w[1] < w[0]), "{remaining:?}");
    assert!(statuses.iter().filter(|&&s| s == 200).count() <= 5, "{statuses:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(with_key(server.http.get(server.url("/v1/images")), &slow).send().unwrap().status(), 200, "refilled");

    // Jobs: two a minute here; the third ingest job is refused, nothing queued for it.
    let busy = create_key(data.path(), "busy", "write", &[]);
    let ingest = json!({"urls": ["http://127.0.0.1:1/a.png"]});
    let job = |key: &str| send(with_key(server.http.post(server.url("/v1/ingest")).json(&ingest), key));
    assert_eq!(job(&busy).0, 202);
    assert_eq!(job(&busy).0, 202);
    let (status, refused) = job(&busy);
    assert_eq!((status, refused["error"]["code"].as_str()), (429, Some("rate_limited")), "{refused}");
    let (_, jobs) = send(with_key(server.http.get(server.url("/v1/jobs")), &busy));
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    drop(server);

    // Without keys (auth off): per client address.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &["--auth", "off", "--anonymous-rate-limit", "3", "--upload-bytes-per-s", "3000", "--max-body-bytes", "4000"],
    );
    let statuses: Vec<u16> = (0..12).map(|_| server.get("/v1/images").0).collect();
    assert!(statuses.contains(&429) && statuses[0] == 200, "{statuses:?}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Bodies: 3000 bytes/s, a burst of one 4000-byte body.
    let body = vec![b'x'; 3500];
    let post =
        || server.http.post(server.url("/v1/search")).header("content-type", "application/json").body(body.clone());
    assert_ne!(post().send().unwrap().status(), 429, "the first body fits the burst");
    let r = post().send().unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

/// A `Host` this server does not answer to (DNS rebinding) is refused; so are state-changing requests a
/// page on another site sends (a form's `text/plain` or multipart POST needs no preflight), and they change
/// nothing. Same-origin pages and `--cors-origin` ones may.
#[test]
fn rebinding_hosts_and_cross_site_writes_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--cors-origin", "http://app.example"]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let r = server.http.get(server.url("/v1/images")).header("host", format!("rebind.attacker.example:{port}"));
    let (status, refused) = send(r);
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")), "{refused}");
    let r = server.http.get(server.url("/v1/images")).header("host", format!("localhost:{port}"));
    assert_eq!(send(r).0, 200);

    let evil = "http://evil.example";
    let (status, _) = send(
        server
            .http
            .post(server.url("/v1/index/rebuild"))
            .header("origin", evil)
            .header("content-type", "text/plain")
            .body("x"),
    );
    assert_eq!(status, 403);
    // A small form, as a page's would be (a large body may still be on its way when the 403 closes the
    // connection).
    let form = reqwest::blocking::multipart::Form::new()
        .part("file", reqwest::blocking::multipart::Part::bytes(synthetic_png(3)).file_name("a.png"));
    assert_eq!(send(server.http.post(server.url("/v1/images")).header("origin", evil).multipart(form)).0, 403);
    let r = server.http.delete(server.url("/v1/chats?user=x")).header("sec-fetch-site", "cross-site");
    assert_eq!(send(r).0, 403);
    assert!(server.get("/v1/images").1["images"].as_array().unwrap().is_empty(), "nothing stored");
    assert!(server.get("/v1/jobs").1["jobs"].as_array().unwrap().is_empty(), "no rebuild started");

    for origin in [server.base.as_str(), "http://app.example"] {
        let form = reqwest::blocking::multipart::Form::new()
            .part("file", reqwest::blocking::multipart::Part::bytes(synthetic_png(7)).file_name("a.png"));
        let (status, body) = send(server.http.post(server.url("/v1/images")).header("origin", origin).multipart(form));
        assert!(status == 201 || status == 200, "{origin}: {status} {body}");
    }
}

/// Slow and hostile connections, against a server allowed 128 open files: 150 connections that send
/// nothing or half a request head (more than it has descriptors) do not keep a normal request from being
/// answered — the server holds at most its cap of them and closes each after the header timeout; a
/// 120 KB request head is answered 431; and SIGTERM with a request half-sent ends after the shutdown
/// deadline with a clean exit, instead of waiting for the client.
#[test]
fn half_open_connections_huge_heads_and_a_stuck_request_at_shutdown() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let data = tempfile::tempdir().unwrap();
    let flags = ["--header-timeout-s", "1", "--shutdown-deadline-s", "2"];
    let mut server = Server::start_with_file_limit(data.path(), &flags, 128);
    assert!(server.log().contains("\"max_connections\":64"), "the cap is half the descriptors: {}", server.log());
    let addr = server.base.trim_start_matches("http://").to_string();

    // Half of them send nothing at all, half stop in the middle of their headers.
    let mut stalled: Vec<TcpStream> = (0..150)
        .map(|i| {
            let mut s = TcpStream::connect(&addr).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            }
            s
        })
        .collect();
    let (status, health) = server.get("/healthz");
    assert_eq!(status, 200, "{health}");
    // Every stalled connection was closed by the server (end of stream or reset), none answered.
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) => assert!(n == 0 || buf.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "a stalled connection stayed open: {e}"
            ),
        }
    }
    drop(stalled);

    // A 120 KB header: 431, and the server goes on.
    let r = server.http.get(server.url("/healthz")).header("x-padding", "a".repeat(120 << 10)).send();
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        // hyper may close before the client has finished writing; then no answer is read.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_eq!(server.get("/healthz").0, 200);

    // A keep-alive connection left idle after its answer is closed after the header timeout too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..n]));
    let answered = Instant::now();
    loop {
        match idle.read(&mut answer) {
            Ok(0) => break,
            Ok(_) => continue, // the rest of the answer
            Err(e) => {
                let open = matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
                assert!(!open, "an idle keep-alive connection stayed open: {e}");
                break;
            }
        }
    }
    assert!(answered.elapsed() >= Duration::from_millis(500), "closed before it was idle: {:?}", answered.elapsed());
    drop(idle);

    // A request whose body never comes, then SIGTERM: the deadline ends it, the index is saved.
    let mut stuck = TcpStream::connect(&addr).unwrap();
    stuck
        .write_all(b"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.stop();
    let took = signalled.elapsed();
    let log = server.log();
    // `stop` asserted a clean exit (status 0: the snapshot was written after the deadline).
    assert!(log.contains("the shutdown deadline passed"), "{log}");
    // Liveness, not speed: before the deadline existed this waited for the client (150 s and more).
    assert!(took < Duration::from_secs(60), "SIGTERM took {took:?}");
    drop(stuck);
}

/// Load shedding by route class: with one upload slot, an upload whose body is still coming holds it, and
/// the next upload is answered 429 `overloaded` at once, with `Retry-After`, while searches and reads go
/// on; once the first ends, uploads are taken again.
#[test]
fn a_full_route_class_is_shed_at_once_and_the_others_go_on() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--max-uploads-in-flight", "1"]);
    let addr = server.base.trim_start_matches("http://").to_string();
    // The slow upload must reach its handler while no other upload is in flight (else it is the one shed):
    // it gets a moment alone; if an upload still passes after it, both go round again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (slow, refused) = (0..)
        .find_map(|i| {
            assert!(Instant::now() < deadline, "no upload was refused while another held the only slot");
            let mut slow = TcpStream::connect(&addr).unwrap();
            slow.write_all(
                b"POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n",
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let form = reqwest::blocking::multipart::Form::new()
                .part("file", reqwest::blocking::multipart::Part::bytes(synthetic_png(500 + i)).file_name("a.png"));
            let response = server.http.post(server.url("/v1/images")).multipart(form).send().unwrap();
            (response.status() == 429).then_some((slow, response))
        })
        .unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, body) = into_json(refused);
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1 uploads in flight"), "{body}");
    // The other classes go on.
    let (status, found) = server.post_json("/v1/search", &json!({"text": "a cat", "k": 3}));
    assert_eq!(status, 200, "{found}");
    assert_eq!(server.get("/v1/images").0, 200);
    assert_eq!(server.get("/healthz").0, 200);
    // The slow client goes away: its slot comes back.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.upload("/v1/images", &[("b.png", synthetic_png(499))], None);
        if status == 201 {
            break;
        }
        assert!(status == 429 && Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = server.http.get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("lens_requests_shed_total{class=\"uploads\"}"), "{metrics}");
}

/// A GIF of about 40 bytes whose screen is `side` × `side` and whose one frame is a single pixel (colour
/// `shade`, so each shade is other bytes).
fn huge_canvas_gif(side: u16, shade: u8) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend(side.to_le_bytes());
    gif.extend(side.to_le_bytes());
    gif.extend([0x80, 0, 0]); // a global colour table of 2 entries
    gif.extend([shade, 0x40, 0x80, 0, 0, 0]);
    gif.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // a 1x1 frame at (0, 0)
    gif.extend([2, 2, 0x44, 0x01, 0]); // LZW (min code 2): clear, index 0, end
    gif.push(0x3B);
    gif
}

/// Peak resident memory of a process, bytes (Linux `VmHWM`).
fn peak_resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Decoded pixels are bounded (the "memory per request" finding: 64 tiny GIFs declaring a 6000² screen
/// took 7.4 GB). One request of 8 GIFs of ~40 bytes, each a 36-megapixel canvas (108 MB as RGB), plus a
/// copy of the first, is stored while the server's peak resident memory grows by far less than 8
/// canvases: each image is reduced to the model's input before the next is decoded, and the copy is
/// decoded once. Two such requests at once share one decoding budget (`--decode-budget-mb`), which
/// here admits one canvas at a time.
#[test]
fn huge_canvases_are_decoded_one_at_a_time_within_the_budget() {
    let data = tempfile::tempdir().unwrap();
    // GIF canvases this large are refused by default (--max-gif-pixels, 16 MP): allowed here.
    let server = Server::start(data.path(), &["--decode-budget-mb", "400", "--max-gif-pixels", "40000000"]);
    let before = peak_resident(server.pid());
    let form = |first: u8| {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (i, shade) in (first..first + 8).chain([first]).enumerate() {
            let part =
                reqwest::blocking::multipart::Part::bytes(huge_canvas_gif(6000, shade)).file_name(format!("g{i}.gif"));
            form = form.part("file", part);
        }
        form
    };
    let (status, body) = send(server.http.post(server.url("/v1/images")).multipart(form(0)));
    assert_eq!(status, 201, "{body}");
    let images = body["images"].as_array().unwrap();
    assert_eq!(images.len(), 9);
    assert_eq!(images[8]["id"], images[0]["id"], "the copy is the same image");
    assert_eq!((images[0]["width"].as_u64(), images[0]["height"].as_u64()), (Some(6000), Some(6000)));
    let grown = peak_resident(server.pid()).saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB for 8 canvases of 108 MiB", grown >> 20);
    assert!(grown < 600 << 20, "peak resident memory grew by {} MiB", grown >> 20);

    // Two requests at once: both stored, one decode at a time between them.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| send(server.http.post(server.url("/v1/images")).multipart(form(100))));
        let b = s.spawn(|| send(server.http.post(server.url("/v1/images")).multipart(form(200))));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((a.0, b.0), (201, 201), "{} {}", a.1, b.1);
    let grown = peak_resident(server.pid()).saturating_sub(before);
    assert!(grown < 600 << 20, "two requests: peak resident memory grew by {} MiB", grown >> 20);
    // An image alone over the budget is refused, not waited for.
    let alone_data = tempfile::tempdir().unwrap();
    let alone = Server::start(alone_data.path(), &["--decode-budget-mb", "100", "--max-gif-pixels", "40000000"]);
    let upload = |server: &Server| {
        let part = reqwest::blocking::multipart::Part::bytes(huge_canvas_gif(6000, 1)).file_name("g.gif");
        let form = reqwest::blocking::multipart::Form::new().part("file", part);
        send(server.http.post(server.url("/v1/images")).multipart(form))
    };
    let (status, body) = upload(&alone);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("too_many_pixels")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("decod"), "the budget refused it: {body}");
    // By default such a GIF is refused from its header, whatever the budget.
    let default_data = tempfile::tempdir().unwrap();
    let default = Server::start(default_data.path(), &[]);
    let (status, body) = upload(&default);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("too_many_pixels")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("16000000 pixels"), "{body}");
}
