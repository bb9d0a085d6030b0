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
        503 => "not ready (model loading), overloaded, timed out, or captioning disabled (`captioning_disabled`)",
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

/// How text search scores (also in the README's search section and `search.rs`).
const HYBRID: &str = "Weight w of the caption score for a text query (default: the server's --hybrid-weight, 0.3). \
score = (1 - w) * vector_score + w * caption_score for an image with a caption, vector_score for one without; \
vector_score = cosine(CLIP text embedding of the query, CLIP image embedding); \
caption_score = (keyword + semantic) / 2, keyword = the caption's FTS5 bm25 score for the query's words divided by \
the best among the candidates (1 for the best keyword match, 0 for none), semantic = max(0, cosine(query text \
embedding, caption text embedding)) (0 until the caption is embedded); candidates = the vector top N and the \
caption keyword top N, N = max(4k, 50). w = 0 is the plain vector search.";

fn caption_options_properties() -> Value {
    json!({
        "prompt": {"type": "string", "maxLength": 512, "description": "the caption continues this text"},
        "beams": {"type": "integer", "minimum": 1, "maximum": 16, "description": "beam search; 1 is greedy (default --caption-beams, 3)"},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 256, "description": "default --caption-max-new-tokens, 30"},
        "min_new_tokens": {"type": "integer", "minimum": 0},
        "repetition_penalty": {"type": "number", "exclusiveMinimum": 0},
        "length_penalty": {"type": "number"},
        "early_stopping": {"type": "boolean"},
        "temperature": {"type": "number", "exclusiveMinimum": 0, "description": "any of temperature, top_k, top_p, seed: sample (beams must be 1)"},
        "top_k": {"type": "integer", "minimum": 0},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0}
    })
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
        "tag": {"type": "string"},
        "hybrid_weight": {"type": "number", "minimum": 0, "maximum": 1, "description": HYBRID}},
        "description": "exactly one of text, image_url, image_id; `threshold` applies to the final `score`"}}});
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
    let mut thumbnail_path = json!({"get": {"summary": "A JPEG thumbnail (quality 80) of the image fitted in size x size: aspect kept, \
never enlarged, EXIF orientation applied. Content-addressed: Cache-Control immutable, an ETag, 304 on If-None-Match.",
        "responses": error_responses(&[400, 404, 422])}});
    thumbnail_path["get"]["responses"]["200"] = json!({"description": "the thumbnail", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}});
    thumbnail_path["get"]["responses"]["304"] = json!({"description": "not modified (If-None-Match)"});
    thumbnail_path["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 32, "maximum": 512, "default": 256}}]);
    let mut sync_path = json!({"get": op("Browser sync: the change feed. The latest state of every image changed after `since` \
(added, captioned, tags changed, embedded by the server's model, deleted), each once, ascending seq; an image without an \
embedding by the server's model is left out until it has one. Pass next_cursor back as since; pages stay consistent while \
ingest runs. A malformed cursor is 400 invalid_cursor; one ahead of the log gives an empty page.", None,
        ("200", schema("SyncPage")), &[400, 503])});
    sync_path["get"]["parameters"] = json!([
        {"name": "since", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "a next_cursor; absent: from the beginning"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 200}}]);
    let mut job_path = json!({"get": op("One job", None, ("200", schema("Job")), &[404])});
    job_path["parameters"] = id_param();
    let mut jobs_path = json!({"get": op("Recent jobs, newest first; ?kind=caption&state=dead is the dead-letter queue", None,
        ("200", json!({"type": "object", "properties": {"jobs": {"type": "array", "items": schema("Job")}}})), &[400])});
    jobs_path["get"]["parameters"] = json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "kind", "in": "query", "schema": {"type": "string", "examples": ["caption", "ingest", "index_rebuild"]}},
        {"name": "state", "in": "query", "schema": {"enum": ["queued", "running", "succeeded", "failed", "dead", "cancelled"]}}]);
    let mut json_caption = caption_options_properties();
    json_caption["images"] = json!({"type": "array", "minItems": 1, "maxItems": 16, "items": {"oneOf": [
        {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}, "required": ["url"], "additionalProperties": false},
        {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false}]}});
    json_caption["store"] = json!({"type": "boolean", "default": false,
        "description": "store the captions (and their CLIP text embeddings) on the images, which must all be given by id; their queued caption jobs are cancelled"});
    let mut form_caption = caption_options_properties();
    form_caption["file"] = json!({"type": "array", "maxItems": 16, "items": {"type": "string", "format": "binary"}});
    let caption_body = json!({
        "multipart/form-data": {"schema": {"type": "object", "properties": form_caption, "required": ["file"]}},
        "application/json": {"schema": {"type": "object", "properties": json_caption, "required": ["images"], "additionalProperties": false}}
    });
    let captions_ok = json!({"type": "object", "properties": {
        "captions": {"type": "array", "items": {"type": "object", "properties": {
            "input": {"type": "string", "description": "the file name, URL or id"}, "caption": {"type": "string"},
            "cached": {"type": "boolean", "description": "from the caption cache (same bytes, model and options): no model run"},
            "model": {"type": "string"}, "stored": {"type": "boolean"}}}},
        "model": {"type": "string"}, "options": {"type": "object", "description": "the options used, defaults filled in"}}});
    let results =
        json!({"type": "object", "properties": {"results": {"type": "array", "items": schema("SearchResult")}}});
    let colors = json!({"type": ["array", "null"], "description": "dominant colours, largest share first", "items": {"type": "object", "properties": {
        "rgb": {"type": "array", "items": {"type": "integer"}}, "hex": {"type": "string"}, "lab": {"type": "array", "items": {"type": "number"}}, "share": {"type": "number"}}}});
    let metadata = json!({"type": ["object", "null"], "description": "read from the headers at ingest", "properties": {
        "format": {"type": "string"}, "mime": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
        "orientation": {"type": "integer"}, "exif": {"type": "object", "properties": {"date_time_original": {"type": "string"}, "date_time": {"type": "string"},
            "make": {"type": "string"}, "model": {"type": "string"}, "software": {"type": "string"}, "lens_model": {"type": "string"}}}}});

    let sync_page = json!({"type": "object", "required": ["model", "changes", "next_cursor", "more"], "properties": {
                "model": {"type": "object", "properties": {"id": {"type": "string", "description": "ModelInfo.id: embeddings of other models must not be mixed in"},
                    "dims": {"type": "integer"}}},
                "changes": {"type": "array", "items": {"oneOf": [
                    {"type": "object", "required": ["seq", "op", "image"], "properties": {"seq": {"type": "integer"}, "op": {"const": "upsert"},
                        "image": {"type": "object", "properties": {"id": {"type": "string"}, "sha256": {"type": "string"}, "mime": {"type": "string"},
                            "width": {"type": "integer"}, "height": {"type": "integer"}, "bytes": {"type": "integer"},
                            "created_at": {"type": "integer", "description": "ms since the Unix epoch"},
                            "tags": {"type": "array", "items": {"type": "string"}}, "caption": {"type": ["string", "null"]},
                            "embedding": {"type": "array", "items": {"type": "number"}, "description": "the server model's L2-normalised image embedding (f32)"},
                            "thumbnail_url": {"type": "string"}}}}},
                    {"type": "object", "required": ["seq", "op", "id"], "properties": {"seq": {"type": "integer"}, "op": {"const": "delete"}, "id": {"type": "string"}}}]}},
                "next_cursor": {"type": "string", "description": "the since of the next page (the last seq returned; since itself when none)"},
                "more": {"type": "boolean", "description": "more changes follow next_cursor now"}}});

    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Lens", "version": env!("CARGO_PKG_VERSION"), "description": "Image ingest, BLIP captions and hybrid CLIP + caption search. Errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": {
            "/v1/images": images_path,
            "/v1/images/{id}": image_path,
            "/v1/images/{id}/blob": blob_path,
            "/v1/images/{id}/duplicates": dup_path,
            "/v1/images/{id}/thumbnail": thumbnail_path,
            "/v1/sync": sync_path,
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
            "/v1/jobs": jobs_path,
            "/v1/captions": {"post": op("Caption images with BLIP (cache first). Uploads, URLs or stored ids; all are checked before any model runs; a failed request stores and caches nothing.",
                Some(caption_body), ("200", captions_ok), &[400, 404, 413, 415, 422, 503, 504])},
            "/v1/jobs/{id}": job_path,
            "/v1/models": {"get": op("The loaded models (CLIP, and BLIP with its default options when captioning is on), index and blob store", None, ("200", json!({"type": "object"})), &[503])},
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
                "tags": {"type": "array", "items": {"type": "string"}}, "caption": {"type": ["string", "null"], "description": "set by the caption job (BLIP)"},
                "colors": colors.clone(), "metadata": metadata.clone(), "url": {"type": "string"}}},
            "SearchResult": {"type": "object", "properties": {"id": {"type": "string"},
                "score": {"type": "number", "description": HYBRID}, "vector_score": {"type": "number", "description": "CLIP cosine of the query and the image"},
                "caption_score": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": "null without a caption, or when not computed (weight 0, image queries)"},
                "caption": {"type": ["string", "null"]}, "tags": {"type": "array", "items": {"type": "string"}},
                "colors": colors, "metadata": metadata, "url": {"type": "string"}}},
            "SyncPage": sync_page,
            "Job": {"type": "object", "properties": {"id": {"type": "string"}, "kind": {"type": "string", "description": "ingest, index_rebuild, caption"},
                "state": {"enum": ["queued", "running", "succeeded", "failed", "dead", "cancelled"],
                    "description": "dead: a caption job that failed --caption-max-attempts times (kept with its last_error); cancelled: its image was deleted or captioned by request"},
                "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"}, "error": {"type": ["string", "null"]},
                "params": {"description": "caption: {image, options}"}, "result": {"description": "caption: {caption, cached, model}"},
                "attempts": {"type": "integer"}, "next_run_at": {"type": ["string", "null"], "format": "date-time", "description": "when a queued job (a retry after back-off) may run"},
                "last_error": {"type": ["string", "null"]}, "started_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}
        }}
    }))
}
