//! The Worker itself (wasm32 only): routes, R2 and KV, the model loaded once per isolate, forwarding to the
//! origin, and the scheduled sync. What it decides is in the pure modules ([`crate::search`],
//! [`crate::index`], [`crate::sync`], [`crate::upload`]); this file moves bytes.
//!
//! Bindings (`wrangler.toml`): R2 `LENS_BUCKET`, KV `LENS_KV`; vars `ORIGIN_URL`, `MODEL_KEY`; secrets
//! `ORIGIN_SYNC_KEY` (an admin key of the origin, for `/v1/sync`), `DEBUG_TOKEN` (the debug routes),
//! `SEARCH_TOKEN` (when set, edge searches need it: the index mirrors every tenant the sync key sees).

use std::cell::RefCell;
use std::rc::Rc;

use futures::FutureExt;
use futures::future::{LocalBoxFuture, Shared};
use lens_core::api::{EmbeddingData, EmbeddingsResponse, ErrorBody, ErrorCode, RequestError, SearchResponse, SyncPage};
use lens_models::artifact::{Artifact, PREFIX_BYTES};
use lens_models::clip::ClipTextPipeline;
use serde::Serialize;
use worker::{
    Bucket, Conditional, Context, Date, Env, Fetch, FormEntry, Headers, Method, Range, Request, RequestInit, Response,
    Result, ScheduleContext, ScheduledEvent, event,
};

use crate::index::{MANIFEST_KEY, Manifest, SHARD_PREFIX, Shard};
use crate::search::{EdgeSearchResponse, Limits, Ranking, Route, route};
use crate::sync::{apply, check_page, shards_needed};
use crate::upload::{self, UploadLimits};

type Backend = burn::backend::NdArray;

/// Where the text artifact lives unless `MODEL_KEY` says.
const DEFAULT_MODEL_KEY: &str = "models/clip-text.lens";
/// Model bytes are read from R2 this many at a time into one buffer sized up front: `bytes()` copies a
/// JS buffer into wasm memory, so one whole-object read would need the model's size twice.
const READ_CHUNK: u64 = 8 << 20;
/// Largest model artifact loaded (`MAX_MODEL_BYTES`): it is read into one buffer of its size, and the
/// isolate has 128 MB for everything.
const DEFAULT_MAX_MODEL_BYTES: u64 = 96 << 20;
/// Bytes of decoded shards kept between requests.
const SHARD_CACHE_BYTES: usize = 24 << 20;
/// Sync pages pulled per scheduled run (500 images each).
const SYNC_PAGES_PER_RUN: usize = 20;
const SYNC_PAGE_SIZE: usize = 500;
const CURSOR_KEY: &str = "sync_cursor";
const SYNC_STATUS_KEY: &str = "sync_status";
/// Where uploaded images are kept: `images/<id>`.
const IMAGE_PREFIX: &str = "images/";
/// Request headers passed to the origin (the key is the origin's to check).
const FORWARDED_HEADERS: [&str; 6] = ["authorization", "x-api-key", "content-type", "accept", "if-none-match", "range"];

// ---- state kept by the isolate between requests ----------------------------------------------------

/// The text model, loaded once per isolate and shared by concurrent requests (single flight).
struct LoadedModel {
    pipeline: ClipTextPipeline<Backend>,
    id: String,
    name: String,
    etag: String,
    load_ms: u64,
    bytes: usize,
}

type ModelLoad = Shared<LocalBoxFuture<'static, std::result::Result<Rc<LoadedModel>, String>>>;

#[derive(Default)]
struct State {
    /// The load in flight or done, for one version (etag) of the artifact.
    model: Option<(String, ModelLoad)>,
    manifest: Option<(String, Rc<Manifest>)>,
    /// Most recently used first.
    shards: Vec<(String, Rc<Shard>)>,
    searches: u64,
    model_loads: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

// ---- errors ----------------------------------------------------------------------------------------

/// A refusal with the API's error body.
struct Failure {
    status: u16,
    code: ErrorCode,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: code.status(), code, message: message.into() }
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, message.to_string())
    }

    fn response(&self) -> Result<Response> {
        Ok(Response::from_json(&ErrorBody::new(self.code, &self.message))?.with_status(self.status))
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Self::internal(e)
    }
}

type Answer = std::result::Result<Response, Failure>;

fn served_by_edge(mut response: Response) -> Result<Response> {
    response.headers_mut().set("lens-served-by", "edge")?;
    Ok(response)
}

fn json<T: Serialize>(status: u16, value: &T) -> Answer {
    Ok(served_by_edge(Response::from_json(value)?.with_status(status))?)
}

// ---- configuration ------------------------------------------------------------------------------------

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.is_empty())
}

fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name).ok().map(|v| v.to_string()).filter(|v| !v.is_empty())
}

fn number(env: &Env, name: &str, default: usize) -> usize {
    var(env, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn limits(env: &Env) -> Limits {
    let d = Limits::default();
    Limits {
        max_k: number(env, "MAX_K", d.max_k),
        max_text_bytes: number(env, "MAX_TEXT_BYTES", d.max_text_bytes),
        max_body_bytes: d.max_body_bytes,
    }
}

fn upload_limits(env: &Env) -> UploadLimits {
    let d = UploadLimits::default();
    UploadLimits {
        max_body_bytes: number(env, "MAX_UPLOAD_BYTES", d.max_body_bytes),
        max_file_bytes: number(env, "MAX_FILE_BYTES", d.max_file_bytes),
        max_pixels: number(env, "MAX_PIXELS", d.max_pixels as usize) as u64,
        max_side: number(env, "MAX_SIDE", d.max_side as usize) as u32,
        max_files: number(env, "MAX_FILES", d.max_files),
    }
}

fn model_key(env: &Env) -> String {
    var(env, "MODEL_KEY").unwrap_or_else(|| DEFAULT_MODEL_KEY.to_string())
}

fn origin(env: &Env) -> std::result::Result<String, Failure> {
    var(env, "ORIGIN_URL")
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| Failure::new(ErrorCode::OriginUnavailable, "this edge has no ORIGIN_URL to forward to"))
}

fn bearer(req: &Request) -> Option<String> {
    let auth = req.headers().get("authorization").ok().flatten()?;
    auth.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

/// `Some(token)` when the token secret is set and the request carries it; constant-time comparison.
fn token_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

// ---- entry points --------------------------------------------------------------------------------------

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    match handle(req, &env).await {
        Ok(response) => Ok(response),
        Err(failure) => {
            if failure.code == ErrorCode::Internal {
                worker::console_error!("lens-edge: {}", failure.message);
            }
            served_by_edge(failure.response()?)
        }
    }
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let report = sync(&env).await;
    match &report.error {
        Some(e) => worker::console_error!("lens-edge sync: {e}"),
        None => worker::console_log!("lens-edge sync: {} changes, {} images", report.changes, report.images),
    }
    if let Ok(kv) = env.kv("LENS_KV")
        && let Ok(put) = kv.put(SYNC_STATUS_KEY, serde_json::to_string(&report).unwrap_or_default())
    {
        let _ = put.execute().await;
    }
}

async fn handle(mut req: Request, env: &Env) -> Answer {
    let path = req.path();
    let method = req.method();
    match (method.clone(), path.as_str()) {
        (Method::Get, "/healthz") => json(200, &serde_json::json!({ "status": "ok", "served_by": "edge" })),
        (Method::Post, "/v1/search") => search(&mut req, env).await,
        (Method::Post, "/v1/embeddings") => embeddings(&mut req, env).await,
        (Method::Post, "/v1/images") => upload(&mut req, env).await,
        (Method::Get, "/v1/_debug/memory") => debug(&req, env).await,
        (Method::Post, "/v1/_debug/panic") => {
            debug_token(&req, env)?;
            // What a bug would do: the instance traps, the shim starts a fresh one for the next event.
            panic!("lens-edge: panic requested by POST /v1/_debug/panic");
        }
        (Method::Get | Method::Head, p) if p.starts_with("/v1/images/") && p.ends_with("/blob") => {
            let id = &p["/v1/images/".len()..p.len() - "/blob".len()];
            blob(&req, env, id).await
        }
        (_, p) if p.starts_with("/v1/") => forward(&mut req, env, None).await,
        _ => Err(Failure::new(ErrorCode::NotFound, format!("no route {path}"))),
    }
}

// ---- the model -----------------------------------------------------------------------------------------

/// The model for the artifact now in R2: loaded by the first request that needs it (the others wait for
/// the same load), again when the artifact changes. Missing artifact: 503 `model_mismatch`.
async fn model(env: &Env) -> std::result::Result<Rc<LoadedModel>, Failure> {
    let bucket = env.bucket("LENS_BUCKET")?;
    let key = model_key(env);
    let Some(head) = bucket.head(&key).await? else {
        // The artifact is gone: let the loaded copy go too (wasm memory is kept, but reused later).
        STATE.with(|s| s.borrow_mut().model = None);
        return Err(Failure::new(
            ErrorCode::ModelMismatch,
            format!("the edge has no text model: nothing at `{key}` in its R2 bucket (see README, \"The edge\")"),
        ));
    };
    let etag = head.etag();
    let size = head.size();
    let max = number(env, "MAX_MODEL_BYTES", DEFAULT_MAX_MODEL_BYTES as usize) as u64;
    if size > max {
        return Err(Failure::new(
            ErrorCode::ModelMismatch,
            format!(
                "the model at `{key}` is {size} bytes, over this edge's limit of {max} (MAX_MODEL_BYTES): an isolate \
                 has 128 MB, and a ViT-B/32 text artifact is 68 MB"
            ),
        ));
    }
    let load = STATE.with(|s| {
        let mut s = s.borrow_mut();
        match &s.model {
            Some((loaded, load)) if *loaded == etag => load.clone(),
            _ => {
                // Drop the old model before loading the new one: two would not fit.
                s.model = None;
                let load = load_model(bucket, key, etag.clone(), size).boxed_local().shared();
                s.model = Some((etag.clone(), load.clone()));
                s.model_loads += 1;
                load
            }
        }
    });
    match load.await {
        Ok(model) => Ok(model),
        Err(message) => {
            // A failed load is not kept: the next request tries again.
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                if s.model.as_ref().is_some_and(|(e, _)| *e == etag) {
                    s.model = None;
                }
            });
            Err(Failure::new(ErrorCode::ModelMismatch, message))
        }
    }
}

async fn load_model(
    bucket: Bucket,
    key: String,
    etag: String,
    size: u64,
) -> std::result::Result<Rc<LoadedModel>, String> {
    let started = Date::now().as_millis();
    let bytes = read_in_chunks(&bucket, &key, &etag, size).await.map_err(|e| format!("reading `{key}`: {e}"))?;
    let len = bytes.len();
    let artifact = Artifact::parse(bytes).map_err(|e| format!("`{key}` is not a usable model artifact: {e}"))?;
    let id = artifact.header().source.id.clone();
    let name = artifact.header().source.name.clone();
    let pipeline = ClipTextPipeline::from_artifact(artifact, &Default::default())
        .map_err(|e| format!("`{key}` is not a CLIP text model: {e}"))?;
    let load_ms = Date::now().as_millis() - started;
    worker::console_log!("lens-edge: loaded {key} ({len} bytes, model {id}) in {load_ms} ms");
    Ok(Rc::new(LoadedModel { pipeline, id, name, etag, load_ms, bytes: len }))
}

/// The object's bytes, read in ranged chunks into one buffer of its size; refused if it changes meanwhile.
async fn read_in_chunks(bucket: &Bucket, key: &str, etag: &str, size: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    let mut offset = 0;
    while offset < size {
        let length = READ_CHUNK.min(size - offset);
        let only_if = Conditional { etag_matches: Some(etag.to_string()), ..Default::default() };
        let object = bucket
            .get(key)
            .range(Range::OffsetWithLength { offset, length })
            .only_if(only_if)
            .execute()
            .await?
            .ok_or_else(|| worker::Error::RustError("the object was deleted while being read".into()))?;
        let body =
            object.body().ok_or_else(|| worker::Error::RustError("the object changed while being read".into()))?;
        let chunk = body.bytes().await?;
        if chunk.len() as u64 != length {
            return Err(worker::Error::RustError(format!("{} bytes at {offset}, expected {length}", chunk.len())));
        }
        out.extend_from_slice(&chunk);
        offset += length;
    }
    Ok(out)
}

// ---- the index ------------------------------------------------------------------------------------------

/// The manifest now in R2 (re-read only when its etag changed); `None` before the first sync.
async fn manifest(bucket: &Bucket) -> std::result::Result<Option<Rc<Manifest>>, Failure> {
    let cached = STATE.with(|s| s.borrow().manifest.clone());
    let only_if = Conditional { etag_does_not_match: cached.as_ref().map(|(e, _)| e.clone()), ..Default::default() };
    let Some(object) = bucket.get(MANIFEST_KEY).only_if(only_if).execute().await? else {
        STATE.with(|s| s.borrow_mut().manifest = None);
        return Ok(None);
    };
    let Some(body) = object.body() else {
        // Unchanged (the condition failed): the cached copy is current.
        return Ok(cached.map(|(_, m)| m));
    };
    let manifest = Rc::new(Manifest::from_json(&body.bytes().await?).map_err(Failure::internal)?);
    STATE.with(|s| s.borrow_mut().manifest = Some((object.etag(), manifest.clone())));
    Ok(Some(manifest))
}

/// A shard (immutable under its key), from the cache or R2; `None` when a sync has just retired it.
async fn shard(bucket: &Bucket, key: &str) -> std::result::Result<Option<Rc<Shard>>, Failure> {
    let hit = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let pos = s.shards.iter().position(|(k, _)| k == key)?;
        let entry = s.shards.remove(pos);
        let shard = entry.1.clone();
        s.shards.insert(0, entry);
        Some(shard)
    });
    if let Some(shard) = hit {
        return Ok(Some(shard));
    }
    let Some(object) = bucket.get(key).execute().await? else { return Ok(None) };
    let Some(body) = object.body() else { return Ok(None) };
    let shard = Rc::new(Shard::decode(&body.bytes().await?).map_err(Failure::internal)?);
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.shards.insert(0, (key.to_string(), shard.clone()));
        let mut total = 0;
        s.shards.retain(|(_, sh)| {
            total += sh.memory_bytes();
            total <= SHARD_CACHE_BYTES
        });
    });
    Ok(Some(shard))
}

// ---- routes -----------------------------------------------------------------------------------------

async fn search(req: &mut Request, env: &Env) -> Answer {
    let limits = limits(env);
    let body = read_body(req, limits.max_body_bytes).await?;
    let (text, options) = match route(&body, &limits)? {
        Route::Origin => return forward(req, env, Some(body)).await,
        Route::Edge { text, options } => (text, options),
    };
    if let Some(token) = secret(env, "SEARCH_TOKEN")
        && !token_matches(&token, bearer(req).as_deref())
    {
        return Err(Failure::new(ErrorCode::Unauthorized, "this edge's searches need its search token"));
    }
    let model = model(env).await?;
    let bucket = env.bucket("LENS_BUCKET")?;
    // Once, whichever manifest the shards are read under.
    let query = model
        .pipeline
        .embed_texts(&[text.as_str()])
        .map_err(|e| Failure::new(ErrorCode::InvalidRequest, e.to_string()))?
        .remove(0);
    let tag = options.tag.clone();
    let keep = |r: &crate::index::Record| tag.as_ref().is_none_or(|t| r.tags.contains(t));
    let mut ranking = Ranking::new(options.clone());
    'attempt: for attempt in 0..2 {
        ranking = Ranking::new(options.clone());
        let Some(manifest) = manifest(&bucket).await? else { break };
        if manifest.model.id != model.id {
            return Err(Failure::new(
                ErrorCode::ModelMismatch,
                format!(
                    "the edge's text model is `{}` but its index holds vectors of `{}`: they do not compare \
                     (put the text artifact of `{}` in R2)",
                    model.id, manifest.model.id, manifest.model.id
                ),
            ));
        }
        for entry in &manifest.shards {
            let Some(shard) = shard(&bucket, &entry.key).await? else {
                // Retired by a sync that finished since the manifest was read: read the new one.
                if attempt == 0 {
                    continue 'attempt;
                }
                return Err(Failure::new(ErrorCode::NotReady, "the edge index is being rewritten: retry"));
            };
            let hits = shard.search(&query, options.k, &keep).map_err(Failure::internal)?;
            ranking.offer(hits.into_iter().map(|(score, record)| record.result(score)));
        }
        break;
    }
    STATE.with(|s| s.borrow_mut().searches += 1);
    let response = SearchResponse { results: ranking.finish() };
    json(200, &EdgeSearchResponse { response, served_by: "edge".into(), model: model.id.clone() })
}

/// `POST /v1/embeddings` of texts (a string or an array of strings) at the edge; anything else (images)
/// goes to the origin.
async fn embeddings(req: &mut Request, env: &Env) -> Answer {
    let limits = limits(env);
    let body = read_body(req, limits.max_body_bytes).await?;
    let Some((texts, asked)) = crate::search::embedding_texts(&body, &limits)? else {
        return forward(req, env, Some(body)).await;
    };
    let model = model(env).await?;
    if let Some(asked) = asked
        && asked != model.id
        && asked != model.name
    {
        return Err(Failure::new(
            ErrorCode::InvalidRequest,
            format!("model `{asked}` is not the edge's text model `{}`", model.id),
        ));
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors =
        model.pipeline.embed_texts(&refs).map_err(|e| Failure::new(ErrorCode::InvalidRequest, e.to_string()))?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| EmbeddingData { object: "embedding".into(), index, embedding })
        .collect();
    json(200, &EmbeddingsResponse { object: "list".into(), data, model: model.id.clone() })
}

async fn read_body(req: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, Failure> {
    if let Some(len) = req.headers().get("content-length")?.and_then(|l| l.parse::<usize>().ok())
        && len > limit
    {
        return Err(Failure::new(ErrorCode::TooLarge, format!("the body is {len} bytes, over the limit of {limit}")));
    }
    let body = req.bytes().await?;
    if body.len() > limit {
        return Err(Failure::new(ErrorCode::TooLarge, format!("the body is over the limit of {limit} bytes")));
    }
    Ok(body)
}

/// `POST /v1/images`: checked here (size, format, header dimensions), sent to the origin, which checks
/// the key and embeds, and once it has answered 2xx kept in R2 under the image's id. The origin down:
/// 502 and nothing stored; the origin refusing (a bad key): its answer and nothing stored.
async fn upload(req: &mut Request, env: &Env) -> Answer {
    let content_type = req.headers().get("content-type")?.unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        // A URL ingest (JSON): the origin fetches it; nothing for the edge to keep.
        return forward(req, env, None).await;
    }
    let limits = upload_limits(env);
    let body = read_body(req, limits.max_body_bytes).await?;
    // The form parsed by the runtime from a copy of the bytes (the bytes themselves go to the origin).
    let mut init = RequestInit::new();
    let headers = Headers::new();
    headers.set("content-type", &content_type)?;
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    let mut copy = Request::new_with_init("https://edge.invalid/form", &init)?;
    let form = copy
        .form_data()
        .await
        .map_err(|_| Failure::new(ErrorCode::InvalidMultipart, "the body is not a multipart form"))?;
    let mut files = Vec::new();
    for entry in form.get_all("file").unwrap_or_default() {
        match entry {
            FormEntry::File(file) => files.push(file.bytes().await?),
            FormEntry::Field(_) => return Err(Failure::new(ErrorCode::InvalidRequest, "`file` must be a file")),
        }
    }
    let checked = upload::check_files(&files, &limits)?;

    let mut response = forward(req, env, Some(body)).await?;
    let status = response.status_code();
    if !(200..300).contains(&status) {
        return Ok(response);
    }
    let bucket = env.bucket("LENS_BUCKET")?;
    let mut new = 0;
    for (image, bytes) in &checked {
        let key = format!("{IMAGE_PREFIX}{}", image.id);
        if bucket.head(&key).await?.is_some() {
            continue;
        }
        let metadata = worker::HttpMetadata { content_type: Some(image.mime.to_string()), ..Default::default() };
        let put = bucket
            .put(&key, (*bytes).clone())
            .http_metadata(metadata)
            .sha256(image.sha256_bytes.clone())
            .execute()
            .await;
        if put.is_err() {
            return Err(Failure::internal(format!(
                "the origin stored image {} but the edge could not keep a copy: send it again",
                image.id
            )));
        }
        new += 1;
    }
    let status = if status == 201 || new > 0 { 201 } else { status };
    let body = response.bytes().await?;
    let mut out = Response::from_bytes(body)?.with_status(status);
    out.headers_mut().set("content-type", "application/json")?;
    out.headers_mut().set("lens-served-by", "origin+edge")?;
    out.headers_mut().set("lens-edge-stored", &new.to_string())?;
    Ok(out)
}

/// `GET /v1/images/{id}/blob`: the bytes from R2 when the edge holds them (after the origin says the key
/// may read the image: images belong to tenants), else the origin's answer.
async fn blob(req: &Request, env: &Env, id: &str) -> Answer {
    lens_core::limits::check_id(id, "image id")?;
    let bucket = env.bucket("LENS_BUCKET")?;
    let key = format!("{IMAGE_PREFIX}{id}");
    let Some(head) = bucket.head(&key).await? else {
        let mut copy = req.clone()?;
        return forward(&mut copy, env, None).await;
    };
    // The origin decides who may read it: the image's metadata with the caller's key.
    let mut check = origin_request(req, env, Method::Get, &format!("/v1/images/{id}"), None)?;
    let _ = check.headers_mut()?.delete("if-none-match");
    let verdict = send(check).await?;
    if verdict.status_code() != 200 {
        return Ok(verdict);
    }
    let etag = head.http_etag();
    let not_modified =
        req.headers().get("if-none-match")?.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if not_modified {
        Response::empty()?.with_status(304)
    } else if req.method() == Method::Head {
        let mut r = Response::empty()?;
        r.headers_mut().set("content-length", &head.size().to_string())?;
        r
    } else {
        let Some(object) = bucket.get(&key).execute().await? else {
            return Err(Failure::new(ErrorCode::NotFound, format!("no image {id}")));
        };
        let Some(body) = object.body() else { return Err(Failure::internal("an R2 object without a body")) };
        Response::from_body(body.response_body()?)?
    };
    let headers = response.headers_mut();
    headers.set("etag", &etag)?;
    headers.set("cache-control", "private, max-age=31536000, immutable")?;
    if let Some(mime) = head.http_metadata().content_type {
        headers.set("content-type", &mime)?;
    }
    Ok(served_by_edge(response)?)
}

/// The request to the origin: same method, path and query, the headers in [`FORWARDED_HEADERS`].
fn origin_request(
    req: &Request,
    env: &Env,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> std::result::Result<Request, Failure> {
    let base = origin(env)?;
    let query = req.url()?.query().map(|q| format!("?{q}")).unwrap_or_default();
    let headers = Headers::new();
    for name in FORWARDED_HEADERS {
        if let Some(value) = req.headers().get(name)? {
            headers.set(name, &value)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = body {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    Ok(Request::new_with_init(&format!("{base}{path}{query}"), &init)?)
}

async fn send(request: Request) -> Answer {
    Fetch::Request(request)
        .send()
        .await
        .map_err(|e| Failure::new(ErrorCode::OriginUnavailable, format!("the origin server could not be reached: {e}")))
}

/// Sends the request on to the origin and returns its answer as it is (with `lens-served-by: origin`).
async fn forward(req: &mut Request, env: &Env, body: Option<Vec<u8>>) -> Answer {
    let body = match body {
        Some(body) => Some(body),
        None if matches!(req.method(), Method::Get | Method::Head) => None,
        None => Some(read_body(req, upload_limits(env).max_body_bytes).await?),
    };
    let request = origin_request(req, env, req.method(), &req.path(), body)?;
    let response = send(request).await?;
    let mut response = Response::from_body(response.body().clone())?
        .with_status(response.status_code())
        .with_headers(response.headers().clone());
    response.headers_mut().set("lens-served-by", "origin")?;
    Ok(response)
}

/// The debug routes' gate: 404 without the `DEBUG_TOKEN` secret, 401 without that token.
fn debug_token(req: &Request, env: &Env) -> std::result::Result<(), Failure> {
    let Some(token) = secret(env, "DEBUG_TOKEN") else {
        return Err(Failure::new(ErrorCode::NotFound, format!("no route {}", req.path())));
    };
    if !token_matches(&token, bearer(req).as_deref()) {
        return Err(Failure::new(ErrorCode::Unauthorized, "the debug routes need the edge's DEBUG_TOKEN"));
    }
    Ok(())
}

/// Figures for operators (behind [`debug_token`]).
async fn debug(req: &Request, env: &Env) -> Answer {
    debug_token(req, env)?;
    let bucket = env.bucket("LENS_BUCKET")?;
    let manifest = manifest(&bucket).await?;
    let sync = match env.kv("LENS_KV") {
        Ok(kv) => kv
            .get(SYNC_STATUS_KEY)
            .text()
            .await
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()),
        Err(_) => None,
    };
    let model = STATE.with(|s| s.borrow().model.as_ref().and_then(|(_, load)| load.peek().cloned()));
    let model = match model {
        Some(Ok(m)) => serde_json::json!({ "id": m.id, "etag": m.etag, "bytes": m.bytes, "load_ms": m.load_ms }),
        _ => serde_json::Value::Null,
    };
    let (searches, model_loads, cached_shards) = STATE.with(|s| {
        let s = s.borrow();
        (s.searches, s.model_loads, s.shards.len())
    });
    let user_agent = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"userAgent".into()))
        .ok()
        .and_then(|u| u.as_string());
    json(
        200,
        &serde_json::json!({
            "wasm_memory_bytes": core::arch::wasm32::memory_size(0) * 65536,
            "model": model,
            "model_loads": model_loads,
            "searches": searches,
            "index": manifest.as_ref().map(|m| serde_json::json!({
                "model": m.model.id, "dims": m.model.dims, "vectors": m.len(), "shards": m.shards.len(),
            })),
            "cached_shards": cached_shards,
            "last_sync": sync,
            "user_agent": user_agent,
        }),
    )
}

// ---- the scheduled sync ----------------------------------------------------------------------------------

/// What a sync run did (kept in KV for the debug route).
#[derive(Debug, Default, Serialize)]
struct SyncReport {
    at_ms: u64,
    pages: usize,
    changes: usize,
    images: usize,
    cursor: Option<String>,
    error: Option<String>,
}

async fn sync(env: &Env) -> SyncReport {
    let mut report = SyncReport { at_ms: Date::now().as_millis(), ..Default::default() };
    if let Err(e) = sync_pages(env, &mut report).await {
        report.error = Some(e);
    }
    report
}

/// The model id in the text artifact's header (read alone: a few kilobytes, not the weights).
async fn artifact_model_id(bucket: &Bucket, key: &str) -> std::result::Result<String, String> {
    let read = |offset: u64, length: u64| async move {
        let object = bucket
            .get(key)
            .range(Range::OffsetWithLength { offset, length })
            .execute()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no text model at `{key}` in R2: nothing was synced"))?;
        object.body().ok_or("empty")?.bytes().await.map_err(|e| e.to_string())
    };
    let prefix = read(0, PREFIX_BYTES as u64).await?;
    let len = Artifact::header_len(&prefix).map_err(|e| format!("`{key}`: {e}"))?;
    let mut all = prefix;
    all.extend(read(PREFIX_BYTES as u64, len as u64).await?);
    Ok(Artifact::read_header(&all).map_err(|e| format!("`{key}`: {e}"))?.source.id)
}

async fn sync_pages(env: &Env, report: &mut SyncReport) -> std::result::Result<(), String> {
    let e = |e: worker::Error| e.to_string();
    let bucket = env.bucket("LENS_BUCKET").map_err(e)?;
    let kv = env.kv("LENS_KV").map_err(|e| e.to_string())?;
    let base = origin(env).map_err(|f| f.message)?;
    let model_id = artifact_model_id(&bucket, &model_key(env)).await?;
    let mut cursor = kv.get(CURSOR_KEY).text().await.map_err(|e| e.to_string())?;
    for _ in 0..SYNC_PAGES_PER_RUN {
        let mut url = format!("{base}/v1/sync?limit={SYNC_PAGE_SIZE}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&since={c}"));
        }
        let headers = Headers::new();
        if let Some(key) = secret(env, "ORIGIN_SYNC_KEY") {
            headers.set("authorization", &format!("Bearer {key}")).map_err(e)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let request = Request::new_with_init(&url, &init).map_err(e)?;
        let mut response =
            Fetch::Request(request).send().await.map_err(|err| format!("the origin could not be reached: {err}"))?;
        if response.status_code() != 200 {
            return Err(format!(
                "the origin answered {} to {url}: {}",
                response.status_code(),
                response.text().await.unwrap_or_default()
            ));
        }
        let page: SyncPage = response.json().await.map_err(|err| format!("the sync page does not parse: {err}"))?;

        // The manifest as it is now, with the etag the new one is conditional on.
        let current = bucket.get(MANIFEST_KEY).execute().await.map_err(e)?;
        let (manifest, etag) = match current {
            Some(object) => {
                let etag = object.etag();
                let body = object.body().ok_or("manifest without a body")?.bytes().await.map_err(e)?;
                (Some(Manifest::from_json(&body)?), Some(etag))
            }
            None => (None, None),
        };
        check_page(&page, &model_id, manifest.as_ref())?;
        if !page.changes.is_empty() {
            let manifest = manifest.unwrap_or_else(|| Manifest::new(page.model.clone()));
            let mut loaded = std::collections::HashMap::new();
            for key in shards_needed(&manifest, &page.changes) {
                let object = bucket.get(&key).execute().await.map_err(e)?.ok_or(format!("shard {key} is missing"))?;
                let bytes = object.body().ok_or("shard without a body")?.bytes().await.map_err(e)?;
                loaded.insert(key, Shard::decode(&bytes)?);
            }
            let last_seq = page.changes.last().map(|c| c.seq()).unwrap_or_default();
            let nonce = nonce();
            let mut n = 0;
            let mut new_key = || {
                n += 1;
                format!("{SHARD_PREFIX}{last_seq:012}-{nonce}-{n}")
            };
            let update = apply(&manifest, loaded, &page.changes, &mut new_key)?;
            for (key, shard) in &update.writes {
                bucket.put(key, shard.encode()).execute().await.map_err(e)?;
            }
            let put = bucket.put(MANIFEST_KEY, update.manifest.to_json());
            let put = match etag {
                Some(etag) => put.only_if(Conditional { etag_matches: Some(etag), ..Default::default() }),
                None => put,
            };
            if put.execute().await.map_err(e)?.is_none() {
                // Another sync changed the manifest meanwhile: leave this page to the next run.
                for (key, _) in &update.writes {
                    let _ = bucket.delete(key).await;
                }
                return Err("the index manifest changed during the sync (another run?): retried next time".into());
            }
            for key in &update.retired {
                let _ = bucket.delete(key).await;
            }
            report.changes += page.changes.len();
            report.images = update.manifest.len();
        } else {
            report.images = manifest.as_ref().map_or(0, Manifest::len);
        }
        report.pages += 1;
        kv.put(CURSOR_KEY, page.next_cursor.clone())
            .map_err(|e| e.to_string())?
            .execute()
            .await
            .map_err(|e| e.to_string())?;
        cursor = Some(page.next_cursor.clone());
        report.cursor = cursor.clone();
        if !page.more {
            break;
        }
    }
    Ok(())
}

/// 64 random bits as hex (shard keys are never reused, even by two runs applying the same page).
fn nonce() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the JS crypto source");
    lens_core::ids::hex_lower(&bytes)
}
