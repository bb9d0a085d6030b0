//! Ingest and the image resources: `POST/GET /v1/images`, `GET/DELETE /v1/images/{id}`, the blob.
//!
//! Ingest order, so that a failed request leaves nothing behind and an acknowledged one survives a crash:
//! limits and format from the header -> sha256 (same bytes: the existing record, 200) -> decode,
//! dominant colours, metadata -> embed -> blob written durably -> catalog row committed (WAL,
//! synchronous=FULL) with its caption job when captioning is on -> index -> caption workers woken -> 201.
//! A failure after the blob is written removes the blob again (unless the catalog references it).

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lens_core::image::{ImageFormat, RgbImage, decode_image, probe_image};
use lens_store::{ImageRecord, NewImage};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult, check_id};
use super::state::{AppState, SharedState};

/// Tags per image and characters per tag.
const MAX_TAGS: usize = 32;
/// Dominant colours stored per image.
const DOMINANT_COLORS: usize = 5;
const MAX_TAG_CHARS: usize = 64;

/// Bytes to ingest and where they came from.
pub struct Upload {
    pub bytes: Bytes,
    pub source_url: Option<String>,
    pub tags: Vec<String>,
}

/// Checks size, format and pixel limits from the header, then decodes (on a blocking thread).
pub async fn decode_checked(state: &AppState, bytes: Bytes) -> ApiResult<(ImageFormat, RgbImage, Bytes)> {
    let limits = state.config.decode_limits;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("empty file"));
    }
    let info = probe_image(&bytes, &limits)?;
    if !state.config.formats.contains(&info.format) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            format!("{} images are not accepted by this server", info.format),
        ));
    }
    tokio::task::spawn_blocking(move || {
        let image = decode_image(&bytes, &limits)?;
        Ok((info.format, image, bytes))
    })
    .await
    .map_err(ApiError::internal)?
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Validates tags: trimmed, non-empty, at most [`MAX_TAGS`] of at most [`MAX_TAG_CHARS`] characters.
pub fn clean_tags(tags: impl IntoIterator<Item = String>) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_string();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "tag `{}` is longer than {MAX_TAG_CHARS} characters or has control characters",
                tag.chars().take(80).collect::<String>()
            )));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ApiError::bad_request(format!("{} tags, at most {MAX_TAGS}", out.len())));
    }
    Ok(out)
}

/// An upload that passed every check: limits, format, hash, decode. Nothing is stored yet.
enum Prepared {
    /// The same bytes are already in the catalog.
    Existing(ImageRecord),
    New {
        sha256: String,
        format: ImageFormat,
        image: RgbImage,
        bytes: Bytes,
        source_url: Option<String>,
        tags: Vec<String>,
        analysis: Analysis,
    },
}

/// What ingest stores about an image besides its embedding (JSON; `None` when it could not be read).
#[derive(Default)]
struct Analysis {
    colors: Option<serde_json::Value>,
    metadata: Option<serde_json::Value>,
}

/// Dominant colours and header metadata (format, upright size, orientation, EXIF): one call each.
/// Neither can fail an ingest that decoding accepted: a failure is logged and stored as `null`.
async fn analyze(state: &AppState, bytes: Bytes, image: RgbImage) -> ApiResult<(Analysis, RgbImage)> {
    let limits = state.config.decode_limits;
    tokio::task::spawn_blocking(move || {
        let colors = serde_json::to_value(lens_core::colors::dominant_colors(&image, DOMINANT_COLORS)).ok();
        let metadata = match lens_core::metadata::image_metadata(&bytes, &limits) {
            Ok(m) => serde_json::to_value(m).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read image metadata");
                None
            }
        };
        (Analysis { colors, metadata }, image)
    })
    .await
    .map_err(ApiError::internal)
}

async fn prepare(state: &AppState, upload: Upload) -> ApiResult<Prepared> {
    if upload.bytes.len() > state.config.max_file_bytes {
        return Err(ApiError::too_large(format!(
            "file is {} bytes, over the limit of {}",
            upload.bytes.len(),
            state.config.max_file_bytes
        )));
    }
    let sha256 = {
        let bytes = upload.bytes.clone();
        tokio::task::spawn_blocking(move || sha256_hex(&bytes)).await.map_err(ApiError::internal)?
    };
    let sha = sha256.clone();
    if let Some(existing) = state.catalog(move |c| c.image_by_sha256(&sha)).await? {
        ensure_indexed(state, &existing).await?;
        return Ok(Prepared::Existing(existing));
    }
    let (format, image, bytes) = decode_checked(state, upload.bytes).await?;
    let (analysis, image) = analyze(state, bytes.clone(), image).await?;
    Ok(Prepared::New { sha256, format, image, bytes, source_url: upload.source_url, tags: upload.tags, analysis })
}

/// Blob (durable), then catalog row (committed), then index entry.
async fn store(state: &AppState, new: NewImage, bytes: Bytes, embedding: Vec<f32>) -> ApiResult<(ImageRecord, bool)> {
    let engine = state.engine()?;
    let sha256 = new.sha256.clone();
    state.blobs.put(&sha256, bytes, &new.mime).await?;
    let model = engine.model.id.clone();
    let vector = embedding.clone();
    let inserted = state.catalog(move |c| c.insert_image(&new, &model, &vector)).await;
    let (record, created) = match inserted {
        Ok(done) => done,
        Err(err) => {
            // Nothing acknowledged: take the blob back unless a concurrent ingest of the same bytes owns it.
            let sha = sha256.clone();
            if let Ok(None) = state.catalog(move |c| c.image_by_sha256(&sha)).await
                && let Err(e) = state.blobs.delete(&sha256).await
            {
                tracing::warn!(error = %e, sha256, "could not remove the blob of a failed ingest");
            }
            return Err(err);
        }
    };
    // The row is durable: from here on the image exists. An index failure is repaired by a rebuild.
    if let Err(e) = engine.index.insert(record.key as u64, &embedding) {
        tracing::error!(error = %e, id = record.id, "index insert failed; POST /v1/index/rebuild repairs it");
    }
    if created {
        metrics::counter!("lens_images_ingested_total").increment(1);
    }
    Ok((record, created))
}

/// The whole ingest path for one image. Returns the record and whether it is new.
pub async fn ingest(state: &AppState, upload: Upload) -> ApiResult<(ImageRecord, bool)> {
    ingest_all(state, vec![("upload".into(), upload)]).await.map(|mut v| v.remove(0))
}

/// Ingests several uploads as one request: every file is checked and decoded before anything is
/// stored, the new ones are embedded in one batch, and if storing one fails, those this request
/// created are removed again — a failed request changes nothing.
pub async fn ingest_all(state: &AppState, uploads: Vec<(String, Upload)>) -> ApiResult<Vec<(ImageRecord, bool)>> {
    let engine = state.engine()?;
    let count = uploads.len();
    let mut prepared = Vec::with_capacity(count);
    for (i, (name, upload)) in uploads.into_iter().enumerate() {
        match prepare(state, upload).await {
            Ok(p) => prepared.push(p),
            Err(mut e) if count > 1 => {
                e.message = format!("file {} (`{name}`): {}; nothing was stored", i + 1, e.message);
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    let images: Vec<RgbImage> = prepared
        .iter_mut()
        .filter_map(|p| match p {
            Prepared::New { image, .. } => Some(std::mem::replace(image, RgbImage::filled(1, 1, [0, 0, 0]))),
            Prepared::Existing(_) => None,
        })
        .collect();
    let sizes: Vec<(u32, u32)> = images.iter().map(|i| (i.width, i.height)).collect();
    let mut embeddings = engine.embedder.embed_images(images).await?.into_iter();
    let mut sizes = sizes.into_iter();
    let mut done: Vec<(ImageRecord, bool)> = Vec::with_capacity(count);
    for p in prepared {
        let result = match p {
            Prepared::Existing(record) => Ok((record, false)),
            Prepared::New { sha256, format, bytes, source_url, tags, analysis, .. } => {
                let embedding = embeddings.next().ok_or_else(|| ApiError::internal("missing embedding"))?;
                let (width, height) = sizes.next().ok_or_else(|| ApiError::internal("missing size"))?;
                let mime = format.mime_type().to_string();
                let new = NewImage {
                    sha256,
                    mime,
                    width,
                    height,
                    bytes: bytes.len() as u64,
                    source_url,
                    tags,
                    colors: analysis.colors,
                    metadata: analysis.metadata,
                    caption_options: state.caption_job_options(),
                };
                store(state, new, bytes, embedding).await
            }
        };
        match result {
            Ok(r) => done.push(r),
            Err(e) => {
                for (record, created) in &done {
                    if *created {
                        remove(state, record.id.clone()).await;
                    }
                }
                return Err(e);
            }
        }
    }
    // The request succeeded: images already stored without a caption get a job too, and the
    // caption workers wake up for the new ones (queued with their rows).
    for (record, created) in &done {
        if !created {
            ensure_caption_job(state, record).await?;
        }
    }
    if state.config.caption.is_some() && done.iter().any(|(_, created)| *created) {
        state.caption_wake.notify_waiters();
    }
    Ok(done)
}

/// Best-effort removal of an image this request created (rolling back a failed multi-file upload).
async fn remove(state: &AppState, id: String) {
    if let Ok(Some(record)) = state.catalog(move |c| c.delete_image(&id)).await {
        if let Ok(engine) = state.engine() {
            engine.index.remove(record.key as u64);
        }
        let _ = state.blobs.delete(&record.sha256).await;
    }
}

/// A record found by hash without a caption (ingested before captioning was on, or its job is
/// dead): queue a caption job, unless one is pending.
async fn ensure_caption_job(state: &AppState, record: &ImageRecord) -> ApiResult<()> {
    let Some(options) = state.caption_job_options() else { return Ok(()) };
    if record.caption.is_some() {
        return Ok(());
    }
    let id = record.id.clone();
    let params = lens_store::caption_job_params(&id, &options);
    if state.catalog(move |c| c.enqueue_job(lens_store::CAPTION_JOB, &id, &params)).await?.is_some() {
        state.caption_wake.notify_waiters();
    }
    Ok(())
}

/// A record found by hash is in the catalog; make sure the index has it too (it may have failed before).
async fn ensure_indexed(state: &AppState, record: &ImageRecord) -> ApiResult<()> {
    let engine = state.engine()?;
    if engine.index.contains(record.key as u64) {
        return Ok(());
    }
    let (key, model) = (record.key, engine.model.id.clone());
    if let Some(vector) = state.catalog(move |c| c.embedding(key, &model)).await? {
        engine.index.insert(key as u64, &vector)?;
    }
    Ok(())
}

/// One record as JSON, with its blob URL.
pub fn record_json(record: &ImageRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    value["url"] = json!(blob_path(&record.id));
    value
}

pub fn blob_path(id: &str) -> String {
    format!("/v1/images/{id}/blob")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlIngest {
    url: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /v1/images`: multipart (`file`, repeatable; optional `tags`, comma-separated) or JSON `{"url"}`.
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state).await?;
        let (files, tags) = read_files(&state, multipart).await?;
        if files.is_empty() {
            return Err(ApiError::bad_request("no `file` field in the form"));
        }
        let single = files.len() == 1;
        let uploads =
            files.into_iter().map(|(name, bytes)| (name, Upload { bytes, source_url: None, tags: tags.clone() }));
        let records = ingest_all(&state, uploads.collect()).await?;
        let any_created = records.iter().any(|(_, created)| *created);
        let records: Vec<ImageRecord> = records.into_iter().map(|(r, _)| r).collect();
        let status = if any_created { StatusCode::CREATED } else { StatusCode::OK };
        if single {
            return Ok((status, Json(record_json(&records[0]))).into_response());
        }
        let images: Vec<_> = records.iter().map(record_json).collect();
        Ok((status, Json(json!({"images": images}))).into_response())
    } else if content_type.starts_with("application/json") {
        let Json(body): Json<UrlIngest> = Json::from_request(request, &state).await?;
        let tags = clean_tags(body.tags)?;
        let fetched = state.fetcher.fetch(&body.url).await?;
        let upload = Upload { bytes: fetched.bytes, source_url: Some(body.url), tags };
        let (record, created) = ingest(&state, upload).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(record_json(&record))).into_response())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with `file` fields, or application/json with {\"url\": ...}",
        ))
    }
}

/// Reads every `file` field (bounded by the file and count limits) and the optional `tags` field.
pub async fn read_files(state: &AppState, mut multipart: Multipart) -> ApiResult<(Vec<(String, Bytes)>, Vec<String>)> {
    let mut files = Vec::new();
    let mut tags = Vec::new();
    while let Some(mut field) = multipart.next_field().await? {
        match field.name().unwrap_or("") {
            "file" => {
                if files.len() == state.config.max_files {
                    return Err(ApiError::too_large(format!(
                        "more than {} files in one request",
                        state.config.max_files
                    )));
                }
                let name = field.file_name().unwrap_or("upload").chars().take(200).collect::<String>();
                let bytes = read_field(state, &mut field).await?;
                files.push((name, bytes));
            }
            "tags" => {
                let text = field.text().await?;
                if text.len() > MAX_TAGS * (MAX_TAG_CHARS * 4 + 1) {
                    return Err(ApiError::bad_request("the `tags` field is too long"));
                }
                tags.extend(text.split(',').map(str::to_string));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field `{}` (expected `file` or `tags`)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok((files, clean_tags(tags)?))
}

/// A file field, at most `max_file_bytes`. Past the limit the rest of the field is read and dropped
/// (bounded by the body limit), so the client, still sending, receives the 413 instead of a reset.
pub async fn read_field(state: &AppState, field: &mut axum::extract::multipart::Field<'_>) -> ApiResult<Bytes> {
    let limit = state.config.max_file_bytes;
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = field.chunk().await? {
        seen += chunk.len();
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::too_large(format!("file is {seen} bytes, over the limit of {limit}")));
    }
    Ok(Bytes::from(bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    tag: Option<String>,
}

/// `GET /v1/images?limit=&cursor=&tag=`: newest first.
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let page = state.catalog(move |c| c.list_images(limit, q.cursor.as_deref(), q.tag.as_deref())).await?;
    let images: Vec<_> = page.images.iter().map(record_json).collect();
    let total = state.catalog(|c| c.count_images()).await?;
    Ok(Json(json!({"images": images, "next_cursor": page.next_cursor, "total": total})))
}

pub async fn find(state: &AppState, id: String) -> ApiResult<ImageRecord> {
    check_id(&id, "image")?;
    let shown = id.clone();
    state.catalog(move |c| c.image(&id)).await?.ok_or_else(|| ApiError::not_found(format!("no image `{shown}`")))
}

/// `GET /v1/images/{id}`
pub async fn get(State(state): State<SharedState>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(record_json(&find(&state, id).await?)))
}

/// `GET /v1/images/{id}/blob`: the bytes, or a redirect to a presigned URL when configured.
pub async fn blob(State(state): State<SharedState>, Path(id): Path<String>) -> ApiResult<Response> {
    let record = find(&state, id).await?;
    if state.config.blob_redirect
        && let Some(url) = state.blobs.presigned_get(&record.sha256, Duration::from_secs(900)).await?
    {
        return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response());
    }
    let bytes = state
        .blobs
        .get(&record.sha256)
        .await?
        .ok_or_else(|| ApiError::internal(format!("blob {} of image {} is missing", record.sha256, record.id)))?;
    Ok((
        [
            (header::CONTENT_TYPE, record.mime.clone()),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_string()),
            (header::ETAG, format!("\"{}\"", record.sha256)),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// `DELETE /v1/images/{id}`: row (the source of truth) first, then index entry, then blob.
pub async fn delete(State(state): State<SharedState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let engine = state.engine()?;
    check_id(&id, "image")?;
    let shown = id.clone();
    let record = state
        .catalog(move |c| c.delete_image(&id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no image `{shown}`")))?;
    engine.index.remove(record.key as u64);
    if let Err(e) = state.blobs.delete(&record.sha256).await {
        tracing::warn!(error = %e, id = record.id, "image deleted but its blob could not be removed");
    }
    metrics::counter!("lens_images_deleted_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}
