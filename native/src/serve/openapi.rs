//! `GET /v1/openapi.json`: the API as OpenAPI 3.1, written out by hand next to the handlers it describes.

use axum::Json;
use serde_json::{Value, json};

fn error_responses(codes: &[u16]) -> Value {
    let mut out = serde_json::Map::new();
    for code in codes {
        out.insert(code.to_string(), json!({"description": reason(*code), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    Value::Object(out)
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "invalid request (bad JSON, bad field, refused URL)",
        404 => "not found",
        409 => "conflict",
        413 => "over a size limit",
        415 => "unsupported media type or image format",
        422 => "corrupt image, too many pixels, or the URL's server answered with an error",
        503 => "not ready (model loading), overloaded, or timed out",
        504 => "URL fetch timed out",
        _ => "error",
    }
}

fn op(summary: &str, body: Option<Value>, ok: (&str, Value), errors: &[u16]) -> Value {
    let mut responses = error_responses(errors);
    let (status, schema) = ok;
    responses[status] = json!({"description": "success", "content": {"application/json": {"schema": schema}}});
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(body) = body {
        o["requestBody"] = json!({"required": true, "content": body});
    }
    o
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn id_param() -> Value {
    json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}])
}

pub async fn document() -> Json<Value> {
    let upload = json!({
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "tags": {"type": "string", "description": "comma-separated"}}, "required": ["file"]}},
        "application/json": {"schema": {"type": "object", "properties": {
            "url": {"type": "string", "format": "uri"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["url"]}}
    });
    let search_body = json!({"application/json": {"schema": {"type": "object", "properties": {
        "text": {"type": "string"}, "image_url": {"type": "string", "format": "uri"}, "image_id": {"type": "string"},
        "k": {"type": "integer", "minimum": 1, "default": 10}, "threshold": {"type": "number", "minimum": -1, "maximum": 1},
        "tag": {"type": "string"}}, "description": "exactly one of text, image_url, image_id"}}});
    let mut images_path = json!({
        "post": op("Ingest images (multipart upload, or a URL). Same bytes, same id: 200 with the existing record; new: 201.",
            Some(upload), ("201", json!({"oneOf": [schema("Image"), {"type": "object", "properties": {"images": {"type": "array", "items": schema("Image")}}}]})), &[400, 413, 415, 422, 503, 504]),
        "get": op("List images, newest first", None, ("200", json!({"type": "object", "properties": {
            "images": {"type": "array", "items": schema("Image")}, "next_cursor": {"type": ["string", "null"]}, "total": {"type": "integer"}}})), &[400])
    });
    images_path["get"]["parameters"] = json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {"name": "tag", "in": "query", "schema": {"type": "string"}}]);
    let mut image_path = json!({
        "get": op("One image", None, ("200", schema("Image")), &[404]),
        "delete": {"summary": "Delete an image: catalog row, index entry and blob", "responses": error_responses(&[404, 503])}
    });
    image_path["delete"]["responses"]["204"] = json!({"description": "deleted"});
    image_path["parameters"] = id_param();
    let mut blob_path = json!({"get": {"summary": "The image bytes (or a 307 to a presigned URL when configured)", "responses": error_responses(&[404])}});
    blob_path["get"]["responses"]["200"] =
        json!({"description": "the bytes", "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}});
    blob_path["parameters"] = id_param();
    let mut dup_path = json!({"get": op("Near-duplicates by cosine threshold", None, ("200", json!({"type": "object", "properties": {
        "id": {"type": "string"}, "duplicates": {"type": "array", "items": schema("SearchResult")}}})), &[400, 404])});
    dup_path["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "threshold", "in": "query", "schema": {"type": "number", "default": 0.95}},
        {"name": "k", "in": "query", "schema": {"type": "integer", "default": 20}}]);
    let mut job_path = json!({"get": op("One job", None, ("200", schema("Job")), &[404])});
    job_path["parameters"] = id_param();
    let results =
        json!({"type": "object", "properties": {"results": {"type": "array", "items": schema("SearchResult")}}});

    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Lens", "version": env!("CARGO_PKG_VERSION"), "description": "Image ingest and CLIP search. Errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": {
            "/v1/images": images_path,
            "/v1/images/{id}": image_path,
            "/v1/images/{id}/blob": blob_path,
            "/v1/images/{id}/duplicates": dup_path,
            "/v1/search": {"post": op("Search by text, image URL or stored image", Some(search_body), ("200", results.clone()), &[400, 404, 413, 422, 503, 504])},
            "/v1/search/image": {"post": op("Search by an uploaded image", Some(json!({"multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}, "k": {"type": "integer"}, "threshold": {"type": "number"}, "tag": {"type": "string"}}, "required": ["file"]}}})),
                ("200", results), &[400, 413, 415, 422, 503])},
            "/v1/embeddings": {"post": op("Embeddings of texts and images (OpenAI-shaped)", Some(json!({"application/json": {"schema": {"type": "object", "properties": {
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [{"type": "string"},
                    {"type": "object", "properties": {"image_url": {"type": "string"}}}, {"type": "object", "properties": {"image_id": {"type": "string"}}}]}}]},
                "model": {"type": "string"}}, "required": ["input"]}}})),
                ("200", json!({"type": "object", "properties": {"object": {"const": "list"}, "model": {"type": "string"}, "data": {"type": "array", "items": {"type": "object", "properties": {
                    "object": {"const": "embedding"}, "index": {"type": "integer"}, "embedding": {"type": "array", "items": {"type": "number"}}}}}}})), &[400, 404, 413, 422, 503])},
            "/v1/ingest": {"post": op("Batch-ingest URLs as a job", Some(json!({"application/json": {"schema": {"type": "object", "properties": {
                "urls": {"type": "array", "items": {"type": "string"}}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["urls"]}}})),
                ("202", schema("Job")), &[400, 503])},
            "/v1/index/rebuild": {"post": op("Rebuild the index from the catalog, as a job", None, ("202", schema("Job")), &[503])},
            "/v1/jobs": {"get": op("Recent jobs", None, ("200", json!({"type": "object", "properties": {"jobs": {"type": "array", "items": schema("Job")}}})), &[400])},
            "/v1/jobs/{id}": job_path,
            "/v1/models": {"get": op("The loaded model, index and blob store", None, ("200", json!({"type": "object"})), &[503])},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
            "/readyz": {"get": {"summary": "Readiness: model loaded and index built", "responses": {"200": {"description": "ready"}, "503": {"description": "loading"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Image": {"type": "object", "required": ["id", "sha256"], "properties": {
                "id": {"type": "string"}, "sha256": {"type": "string"}, "mime": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                "bytes": {"type": "integer"}, "source_url": {"type": ["string", "null"]}, "created_at": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "string"}}, "caption": {"type": ["string", "null"]}, "url": {"type": "string"}}},
            "SearchResult": {"type": "object", "properties": {"id": {"type": "string"}, "score": {"type": "number"},
                "caption": {"type": ["string", "null"]}, "tags": {"type": "array", "items": {"type": "string"}}, "url": {"type": "string"}}},
            "Job": {"type": "object", "properties": {"id": {"type": "string"}, "kind": {"type": "string"},
                "state": {"enum": ["queued", "running", "succeeded", "failed"]}, "total": {"type": "integer"}, "done": {"type": "integer"},
                "failed": {"type": "integer"}, "error": {"type": ["string", "null"]}, "result": {}, "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
        }}
    }))
}
