//! `/v1/images`: ingest (multipart uploads or a URL), list, one image, its bytes, its thumbnail,
//! near-duplicates, delete.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, FromRequest, Multipart, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lens_core::api::{
    DuplicatesQuery, DuplicatesResponse, ErrorBody, ErrorCode, Image, ImageBatch, ImageList, IngestQuery, ListQuery,
    ThumbnailQuery, UrlIngest,
};
use lens_core::limits::{MAX_TAGS_FIELD_BYTES, clean_tags};
use lens_core::thumbnail::DEFAULT_SIZE;

use super::error::{ApiError, ApiResult};
use super::extract::{Json, Path, Query};
use super::forms::read_field;
use crate::services::images::{self as service, Blob, to_api};
use crate::services::ingest::{Upload, ingest_all, ingest_url};
use crate::services::search;
use crate::services::{Caller, Lens, analysis};

/// The multipart form of `POST /v1/images` (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// One or more image files (JPEG, PNG, GIF, WebP).
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    /// Comma-separated tags for every file.
    tags: Option<String>,
}

/// Ingest: multipart (`file`, repeatable; `tags`, comma-separated) or JSON `{"url", "tags"}`. Same
/// bytes, same image: 200 with the stored one instead of 201. One file answers its image, several
/// `{"images": [...]}`; if any file fails, nothing is stored. `?analyze=true` queues an analysis job per
/// image (the chat model answers `analyze_prompt` about it; the job's outcome is in `GET /v1/jobs`).
#[utoipa::path(post, path = "/v1/images", operation_id = "create_images", tag = "images", params(IngestQuery),
    request_body(content((UploadForm = "multipart/form-data"), (UrlIngest = "application/json"))),
    responses(
        (status = 201, description = "stored (one file or a URL; several files: {\"images\": [...]})", body = Image),
        (status = 200, description = "already stored (same bytes)", body = Image),
        (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 413, description = "over a size or count limit", body = ErrorBody), (status = 415, description = "unsupported image format or content type", body = ErrorBody),
        (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or analysis asked of a server without a chat model (chat_disabled)", body = ErrorBody), (status = 504, description = "a URL fetch timed out", body = ErrorBody)))]
pub async fn create(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<IngestQuery>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let analyze = analysis::requested(&lens, &query)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &()).await?;
        let (files, tags) = read_upload_form(&lens, multipart).await?;
        if files.is_empty() {
            return Err(ApiError::bad_request("no `file` field in the form"));
        }
        let single = files.len() == 1;
        let uploads = files
            .into_iter()
            .map(|(name, bytes)| Upload { name, bytes, source_url: None, tags: tags.clone(), analyze: analyze.clone() })
            .collect();
        let ingested = ingest_all(&lens, &caller, uploads).await?;
        let status = if ingested.iter().any(|i| i.created) { StatusCode::CREATED } else { StatusCode::OK };
        if single {
            return Ok((status, axum::Json(to_api(&ingested[0].record))).into_response());
        }
        let images = ingested.iter().map(|i| to_api(&i.record)).collect();
        Ok((status, axum::Json(ImageBatch { images })).into_response())
    } else if content_type.starts_with("application/json") {
        let Json(body): Json<UrlIngest> = Json::from_request(request, &()).await?;
        let tags = clean_tags(body.tags)?;
        let ingested = ingest_url(&lens, &caller, body.url, tags, analyze).await?;
        let status = if ingested.created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, axum::Json(to_api(&ingested.record))).into_response())
    } else {
        Err(ApiError::coded(
            ErrorCode::UnsupportedMediaType,
            "send multipart/form-data with `file` fields, or application/json with {\"url\": ...}",
        ))
    }
}

/// Every `file` field (bounded by the file and count limits) and the optional `tags` field.
async fn read_upload_form(lens: &Lens, mut multipart: Multipart) -> ApiResult<(Vec<(String, Bytes)>, Vec<String>)> {
    let mut files = Vec::new();
    let mut tags = Vec::new();
    while let Some(mut field) = multipart.next_field().await? {
        match field.name().unwrap_or("") {
            "file" => {
                if files.len() == lens.config.max_files {
                    return Err(ApiError::coded(
                        ErrorCode::TooLarge,
                        format!("more than {} files in one request", lens.config.max_files),
                    ));
                }
                let name = field.file_name().unwrap_or("upload").chars().take(200).collect::<String>();
                let bytes = read_field(&mut field, lens.config.max_file_bytes).await?;
                files.push((name, bytes));
            }
            "tags" => {
                let text = field.text().await?;
                if text.len() > MAX_TAGS_FIELD_BYTES {
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

/// Images, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/images", operation_id = "list_images", tag = "images", params(ListQuery),
    responses((status = 200, description = "a page of images, newest first", body = ImageList), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody)))]
pub async fn list(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<ImageList>> {
    Ok(axum::Json(service::list(&lens, &caller, query).await?))
}

/// One image.
#[utoipa::path(get, path = "/v1/images/{id}", operation_id = "get_image", tag = "images", params(("id" = String, Path)),
    responses((status = 200, description = "the image", body = Image), (status = 404, description = "not found", body = ErrorBody)))]
pub async fn get(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Image>> {
    Ok(axum::Json(to_api(&service::find(&lens, &caller, &id).await?)))
}

/// The image's bytes (or a 307 to a presigned URL with `--blob-redirect`); immutable, with an ETag (304
/// on `If-None-Match`); HEAD answers from the catalog, without reading the blob.
#[utoipa::path(get, path = "/v1/images/{id}/blob", operation_id = "get_image_blob", tag = "images", params(("id" = String, Path)),
    responses((status = 200, description = "the bytes", content_type = "image/*", body = [u8]),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 307, description = "to a presigned URL of the store"), (status = 404, description = "not found", body = ErrorBody)))]
pub async fn blob(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // The record first (cheap): a HEAD or a client holding the bytes (304) never reads the blob.
    let record = service::find(&lens, &caller, &id).await?;
    let tag = format!("\"{}\"", record.sha256);
    let cache_headers = [(header::CACHE_CONTROL, cache_control(&lens).to_string()), (header::ETAG, tag.clone())];
    if if_none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    if method == Method::HEAD {
        let mut response = (cache_headers, [(header::CONTENT_TYPE, record.mime.clone())]).into_response();
        response.headers_mut().insert(header::CONTENT_LENGTH, record.bytes.into());
        return Ok(response);
    }
    Ok(match service::blob(&lens, record).await? {
        Blob::Redirect(url) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response(),
        Blob::Bytes { record, bytes } => {
            (cache_headers, [(header::CONTENT_TYPE, record.mime.clone())], Body::from(bytes)).into_response()
        }
    })
}

/// Images and thumbnails never change under their URL (the id is their content's hash), but they belong
/// to tenants: with keys required, only the client may keep them, never a shared cache.
fn cache_control(lens: &Lens) -> &'static str {
    if lens.config.security.auth_required {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    }
}

/// Bumped when the rendering changes, so that clients' cached copies (immutable) are not reused.
const RENDER_VERSION: u32 = 1;

/// The entity tag of the thumbnail of the bytes `sha256` at `size`.
fn etag(sha256: &str, size: u32) -> String {
    format!("\"{sha256}-{size}-v{RENDER_VERSION}\"")
}

/// A JPEG thumbnail (quality 80) of the image fitted in size x size: aspect kept, never enlarged, EXIF
/// orientation applied. Content-addressed: `Cache-Control: immutable`, an ETag, 304 on `If-None-Match`.
#[utoipa::path(get, path = "/v1/images/{id}/thumbnail", operation_id = "get_image_thumbnail", tag = "images", params(("id" = String, Path), ThumbnailQuery),
    responses((status = 200, description = "the thumbnail", content_type = "image/jpeg", body = [u8]),
        (status = 304, description = "not modified (If-None-Match)"), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody),
        (status = 404, description = "not found", body = ErrorBody), (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody)))]
pub async fn thumbnail(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    let size = query.size.unwrap_or(DEFAULT_SIZE);
    service::check_thumbnail_size(size)?;
    // The record first (cheap), so a client holding the thumbnail gets its 304 without a render.
    let record = service::find(&lens, &caller, &id).await?;
    let tag = etag(&record.sha256, size);
    let cache_headers = [(header::CACHE_CONTROL, cache_control(&lens).to_string()), (header::ETAG, tag.clone())];
    if if_none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    let (_, jpeg) = service::thumbnail(&lens, &caller, &id, size).await?;
    let mut response = (cache_headers, Body::from(jpeg)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("image/jpeg"));
    Ok(response)
}

/// `If-None-Match` lists `tag` (or is `*`); weak comparison, as RFC 9110 asks for GET.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag))
}

/// Other images whose embedding is within the cosine threshold. (Byte-identical uploads are already
/// one image: ingest dedups by sha256.)
#[utoipa::path(get, path = "/v1/images/{id}/duplicates", operation_id = "get_image_duplicates", tag = "search", params(("id" = String, Path), DuplicatesQuery),
    responses((status = 200, description = "the near-duplicates, closest first", body = DuplicatesResponse), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody)))]
pub async fn duplicates(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<DuplicatesQuery>,
) -> ApiResult<axum::Json<DuplicatesResponse>> {
    Ok(axum::Json(search::duplicates(&lens, &caller, &id, query).await?))
}

/// Deletes an image: catalog row, index entry and blob.
#[utoipa::path(delete, path = "/v1/images/{id}", operation_id = "delete_image", tag = "images", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "not found", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or analysis asked of a server without a chat model (chat_disabled)", body = ErrorBody)))]
pub async fn delete(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service::delete(&lens, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = etag("ab", 64);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, v.parse().unwrap());
            if_none_match(&h, &tag)
        };
        assert!(with(&tag));
        assert!(with(&format!("\"x\", W/{tag}")));
        assert!(with("*"));
        assert!(!with("\"ab-128-v1\""));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }
}
