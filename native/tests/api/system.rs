//! Health, readiness, the models, metrics and the OpenAPI document.

use serde_json::json;

use crate::common::app::TestApp;
use crate::common::files::synthetic_png;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_models() {
    let app = TestApp::with(|s| s.index.kind = Some(lens::config::IndexKind::Exact)).await;
    app.upload_one("s.png", synthetic_png(1)).await;
    let (status, health) = app.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["index"], json!({"kind": "exact", "vectors": 1}));
    let (status, models) = app.get("/v1/models").await;
    assert_eq!(status, 200);
    let clip = &models["data"][0];
    assert_eq!(
        (models["object"].as_str(), clip["object"].as_str(), clip["task"].as_str()),
        (Some("list"), Some("model"), Some("embedding"))
    );
    assert_eq!(clip["dims"], 24);
    assert_eq!(clip["id"], ready["model"]);
    assert!(clip["id"].as_str().unwrap().starts_with("clip-tiny-quickgelu@sha256:"), "{clip}");
    assert_eq!(clip["index"]["kind"], "exact");
    assert_eq!(clip["backend"], "NdArray");
    assert!(clip["blob_store"].as_str().unwrap().contains("blobs"), "{clip}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_inference() {
    let app = TestApp::start().await;
    app.upload_one("s.png", synthetic_png(1)).await;
    app.post_json("/v1/embeddings", &json!({"input": "a cat"})).await;
    let metrics = String::from_utf8(app.get_raw("/metrics").await.body.to_vec()).unwrap();
    // The recorder is the process's: other tests count too, so these are lines, not exact values.
    for needle in [
        "lens_http_requests_total{method=\"POST\",route=\"/v1/images\",status=\"201\"}",
        "lens_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/embeddings\"",
        "lens_inference_seconds_count{input=\"text\"}",
        "lens_index_vectors",
        "lens_catalog_images",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
}

/// The document is generated from the handlers and the wire types: every route is in it, with the
/// shared schemas. (That it validates as OpenAPI 3.1 is checked by scripts/test.sh with a validator.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_schema() {
    let app = TestApp::start().await;
    let (status, doc) = app.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for (path, method) in [
        ("/v1/images", "post"),
        ("/v1/images", "get"),
        ("/v1/images/{id}", "get"),
        ("/v1/images/{id}", "delete"),
        ("/v1/images/{id}/blob", "get"),
        ("/v1/images/{id}/thumbnail", "get"),
        ("/v1/images/{id}/duplicates", "get"),
        ("/v1/search", "post"),
        ("/v1/search/image", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/captions", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/analyze", "post"),
        ("/v1/chats", "get"),
        ("/v1/chats", "delete"),
        ("/v1/chats/{id}", "get"),
        ("/v1/chats/{id}", "delete"),
        ("/v1/collections", "get"),
        ("/v1/collections/{name}", "get"),
        ("/v1/collections/{name}", "delete"),
        ("/v1/collections/{name}/documents", "post"),
        ("/v1/collections/{name}/documents/{id}", "delete"),
        ("/v1/collections/{name}/search", "post"),
        ("/v1/ingest", "post"),
        ("/v1/index/rebuild", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/sync", "get"),
        ("/v1/models", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["SearchResult"]["properties"]["caption_score"].is_object(), "{schemas}");
    assert!(schemas["Image"]["properties"]["colors"].is_object());
    assert!(schemas["SyncPage"]["properties"]["changes"].is_object());
    assert!(
        schemas["ErrorCode"]["enum"].as_array().unwrap().iter().any(|c| c == "captioning_disabled"),
        "{}",
        schemas["ErrorCode"]
    );
    assert!(doc["paths"]["/v1/images/{id}/thumbnail"]["get"]["responses"]["304"].is_object());
    assert!(doc["paths"]["/v1/sync"]["get"]["parameters"].is_array());
    // Every route the router answers is documented, and nothing else.
    let routes = doc["paths"].as_object().unwrap().len();
    assert!(schemas["ChatCompletionChunk"]["properties"]["choices"].is_object(), "{schemas}");
    assert!(schemas["ErrorDetail"]["properties"]["type"].is_object(), "{schemas}");
    assert!(schemas["AnalyzeResponse"]["properties"]["analysis"].is_object(), "{schemas}");
    assert!(schemas["Image"]["properties"]["analysis"].is_object(), "{schemas}");
    assert!(doc["paths"]["/v1/images"]["post"]["parameters"].is_array(), "?analyze=true is documented");
    assert_eq!(routes, 27, "{:?}", doc["paths"].as_object().unwrap().keys().collect::<Vec<_>>());
}
