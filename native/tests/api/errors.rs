//! Bad input gets its status and stable code, and changes nothing: no blob, row or index entry.

use serde_json::json;

use crate::common::app::TestApp;
use crate::common::assert_error;
use crate::common::files::{FileServer, image_bytes, synthetic_png};

/// Small limits, so the fixture photos cross them.
async fn strict() -> TestApp {
    TestApp::with(|s| {
        s.limits.max_file_bytes = Some(300_000);
        s.limits.max_pixels = Some(200_000);
        s.limits.formats = Some(vec!["png".into(), "jpeg".into()]);
        s.limits.max_text_bytes = Some(100);
        s.limits.max_k = Some(50);
        s.fetch.timeout_s = Some(2);
    })
    .await
}

/// Private addresses allowed (local use): redirects are still re-checked, limits still hold.
async fn open() -> TestApp {
    TestApp::with(|s| {
        s.fetch.allow_private_urls = Some(true);
        s.fetch.timeout_s = Some(2);
        s.fetch.max_redirects = Some(2);
        s.limits.max_file_bytes = Some(300_000);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_a_limit_or_in_another_format_are_refused() {
    let app = strict().await;
    let up = |name: &'static str, bytes: Vec<u8>| {
        let app = &app;
        async move { app.upload("/v1/images", &[(name, bytes)], None).await }
    };
    assert_error(&up("n.jpg", image_bytes("not_an_image.jpg")).await, 415, "unsupported_format");
    assert_error(&up("g.gif", image_bytes("coffee_palette.gif")).await, 415, "unsupported_format");
    assert_error(&up("a.png", image_bytes("astronaut.png")).await, 413, "too_large"); // 512x512 PNG > 300 kB
    assert_error(&up("c.jpg", image_bytes("coffee.jpg")).await, 422, "too_many_pixels"); // 400x600 > 200k pixels
    assert_error(&up("e.png", vec![]).await, 400, "invalid_request");
    app.assert_nothing_stored().await;
}

/// A body over the limit is 413 whether its size is declared or not: chunked, it is cut off at the limit
/// while the form is read (this was a 400 `invalid_multipart`), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_too_large() {
    let app = TestApp::with(|s| s.limits.max_body_bytes = Some(100_000)).await;
    let head = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n".to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(Ok(head)).chain((0..20).map(|_| Ok(vec![7u8; 16 << 10]))).collect();
    let request = axum::http::Request::post("/v1/images")
        .header("content-type", "multipart/form-data; boundary=x")
        .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let answer = app.send(request).await;
    assert_error(&(answer.status, answer.json()), 413, "too_large");
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_image_is_corrupt() {
    let app = open().await;
    let truncated = app.upload("/v1/images", &[("t.jpg", image_bytes("corrupt_truncated.jpg"))], None).await;
    assert_error(&truncated, 422, "corrupt_image");
    // Data cut and an end-of-image marker after it: Pillow would accept it, the rest grey.
    let whole = image_bytes("coffee.jpg");
    let sos = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut cut = whole[..sos + 200].to_vec();
    cut.extend([0xFF, 0xD9]);
    let stopped = app.upload("/v1/images", &[("cut.jpg", cut)], None).await;
    assert_error(&stopped, 422, "corrupt_image");
    let search = app.upload("/v1/search/image", &[("c.jpg", image_bytes("corrupt_truncated.jpg"))], None).await;
    assert_error(&search, 422, "corrupt_image");
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_file_among_good_ones_fails_the_whole_request() {
    let app = strict().await;
    let mixed = app
        .upload("/v1/images", &[("a.png", synthetic_png(2)), ("b.jpg", image_bytes("not_an_image.jpg"))], None)
        .await;
    assert_error(&mixed, 415, "unsupported_format");
    let message = mixed.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("file 2 (`b.jpg`)") && message.ends_with("nothing was stored"), "{message}");
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forms_and_bodies_are_refused() {
    let app = strict().await;
    assert_error(&app.upload("/v1/images", &[], None).await, 400, "invalid_request"); // no `file` field
    let answer = app.post_raw("/v1/images", "multipart/form-data; boundary=x", b"garbage".to_vec()).await;
    assert_error(&(answer.status, answer.json()), 400, "invalid_multipart");
    let long_tag = app.upload("/v1/images", &[("ok.png", synthetic_png(1))], Some(&"x".repeat(100))).await;
    assert_error(&long_tag, 400, "invalid_request");
    let odd_field = app.upload_form("/v1/images", &[("ok.png", synthetic_png(1))], &[("colour", "red")]).await;
    assert_error(&odd_field, 400, "invalid_request");
    let raw = |body: &'static str, ct: &'static str| {
        let app = &app;
        async move {
            let answer = app.post_raw("/v1/images", ct, body.as_bytes().to_vec()).await;
            (answer.status, answer.json())
        }
    };
    assert_error(&raw("{not json", "application/json").await, 400, "invalid_json");
    assert_error(&raw(r#"{"url": 5}"#, "application/json").await, 422, "invalid_json");
    assert_error(&raw(r#"{"url": "http://x/", "extra": 1}"#, "application/json").await, 422, "invalid_json");
    assert_error(&raw("hello", "text/plain").await, 415, "unsupported_media_type");
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_into_the_servers_network_are_refused() {
    let files = FileServer::start();
    let app = strict().await;
    let port = files.base.rsplit(':').next().unwrap().to_string();
    for (url, code) in [
        ("file:///etc/passwd".to_string(), "url_refused"),
        ("ftp://example.com/a.png".to_string(), "url_refused"),
        ("not a url".to_string(), "invalid_url"),
        (files.url("/img/rocket.jpg"), "url_refused"), // 127.0.0.1 literal
        (format!("http://localhost:{port}/img/rocket.jpg"), "url_refused"), // resolves to loopback
        ("http://169.254.169.254/latest/meta-data/".to_string(), "url_refused"),
        ("http://[::1]/".to_string(), "url_refused"),
        // IPv4 inside IPv6 and other special-purpose IPv6 ranges: refused before any connection.
        (format!("http://[::127.0.0.1]:{port}/img/rocket.jpg"), "url_refused"),
        (format!("http://[::ffff:127.0.0.1]:{port}/img/rocket.jpg"), "url_refused"),
        ("http://[2002:7f00:1::1]/".to_string(), "url_refused"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/".to_string(), "url_refused"),
        ("http://[fec0::1]/".to_string(), "url_refused"),
        ("http://[64:ff9b::7f00:1]/".to_string(), "url_refused"),
    ] {
        let result = app.post_json("/v1/images", &json!({"url": url})).await;
        assert_error(&result, 400, code);
        assert!(!result.1["error"]["message"].as_str().unwrap().contains("connect"), "{url}: {}", result.1);
    }
    app.assert_nothing_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_private_urls_allowed_redirects_sizes_and_time_are_still_checked() {
    let files = FileServer::start();
    let app = open().await;
    for (path, status, code) in [
        ("/to?http://169.254.169.254/latest/meta-data/", 400, "url_refused"),
        ("/to?file:///etc/passwd", 400, "url_refused"),
        ("/redirect/5/rocket.jpg", 400, "url_refused"), // over 2 redirects
        ("/big", 413, "too_large"),
        ("/slow", 504, "fetch_timeout"),
        ("/missing", 422, "fetch_failed"),
    ] {
        assert_error(&app.post_json("/v1/images", &json!({"url": files.url(path)})).await, status, code);
    }
    // A closed port says only that the connection failed: no reason (refused, reset, unreachable) to tell
    // closed ports from filtered ones.
    let nothing_listens = app.post_json("/v1/images", &json!({"url": "http://127.0.0.1:1/a.png"})).await;
    assert_error(&nothing_listens, 422, "fetch_failed");
    assert_eq!(nothing_listens.1["error"]["message"], "could not connect to 127.0.0.1");
    app.assert_nothing_stored().await;
    let (status, ok) = app.post_json("/v1/images", &json!({"url": files.url("/redirect/1/rocket.jpg")})).await;
    assert_eq!(status, 201, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_requests_are_checked() {
    let app = strict().await;
    let search = |body: serde_json::Value| {
        let app = &app;
        async move { app.post_json("/v1/search", &body).await }
    };
    assert_error(&search(json!({"text": "x".repeat(101)})).await, 413, "too_large");
    assert_error(&search(json!({"text": "   "})).await, 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "k": 0})).await, 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "k": 51})).await, 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "threshold": 2.0})).await, 400, "invalid_request");
    assert_error(&search(json!({"text": "a", "image_id": "b"})).await, 400, "invalid_request");
    assert_error(&search(json!({})).await, 400, "invalid_request");
    assert_error(&search(json!({"image_id": "0123"})).await, 404, "not_found");
    assert_error(&search(json!({"text": "a", "k": "ten"})).await, 422, "invalid_json");
    assert_error(&search(json!({"text": "a", "hybrid_weight": 1.5})).await, 400, "invalid_request");
    let too_big = app.upload("/v1/search/image", &[("a.png", image_bytes("astronaut.png"))], None).await;
    assert_error(&too_big, 413, "too_large");
    let bad_k = app.upload_form("/v1/search/image", &[("a.png", synthetic_png(1))], &[("k", "many")]).await;
    assert_error(&bad_k, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_requests_are_checked() {
    let app = strict().await;
    let post = |body: serde_json::Value| {
        let app = &app;
        async move { app.post_json("/v1/embeddings", &body).await }
    };
    assert_error(&post(json!({"input": []})).await, 400, "invalid_request");
    assert_error(&post(json!({"input": 5})).await, 400, "invalid_request");
    assert_error(&post(json!({"input": [{"image_url": "a", "image_id": "b"}]})).await, 400, "invalid_request");
    assert_error(&post(json!({"input": "a", "model": "gpt-4"})).await, 404, "not_found");
    assert_error(&post(json!({"input": "a", "encoding_format": "base64"})).await, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_queries_and_routes() {
    let app = strict().await;
    assert_error(&app.get("/v1/images/nope").await, 404, "not_found");
    assert_error(&app.get(&format!("/v1/images/{}", "x".repeat(200))).await, 400, "invalid_request");
    assert_error(&app.get("/v1/images?limit=0").await, 400, "invalid_request");
    assert_error(&app.get("/v1/images?limit=x").await, 400, "invalid_request");
    assert_error(&app.get("/v1/images?cursor=zz").await, 400, "invalid_request");
    assert_error(&app.get("/v1/images?colour=red").await, 400, "invalid_request");
    assert_error(&app.get("/v1/jobs/nope").await, 404, "not_found");
    assert_error(&app.get("/v2/anything").await, 404, "not_found");
    let put = app.send(axum::http::Request::put("/v1/search").body(axum::body::Body::empty()).unwrap()).await;
    assert_error(&(put.status, put.json()), 405, "method_not_allowed");
    assert_error(&app.post_json("/v1/ingest", &json!({"urls": []})).await, 400, "invalid_request");
    assert_error(&app.post_json("/v1/ingest", &json!({"urls": ["not a url"]})).await, 400, "invalid_request");
}
