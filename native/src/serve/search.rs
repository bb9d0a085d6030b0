//! `POST /v1/search` (text, image URL, stored image), `POST /v1/search/image` (upload),
//! `POST /v1/embeddings` (OpenAI-shaped).

use std::sync::Arc;

use axum::extract::{Extension, Multipart, State};
use lens_core::api::{EmbeddingsRequest, EmbeddingsResponse, ErrorBody, SearchRequest, SearchResponse};
use lens_core::ranking::SearchOptions;

use super::error::{ApiError, ApiResult};
use super::extract::Json;
use super::forms::read_field;
use crate::services::search as service;
use crate::services::{Caller, Lens};

/// Search by text (hybrid with caption matches), by an image URL or by a stored image.
#[utoipa::path(post, path = "/v1/search", operation_id = "search", tag = "search", request_body = SearchRequest,
    responses((status = 200, description = "the results, best first", body = SearchResponse), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody),
        (status = 409, description = "the image has no embedding by the loaded model yet", body = ErrorBody), (status = 413, description = "over a size or count limit", body = ErrorBody), (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody),
        (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody), (status = 504, description = "a URL fetch timed out", body = ErrorBody)))]
pub async fn search(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<SearchRequest>,
) -> ApiResult<axum::Json<SearchResponse>> {
    Ok(axum::Json(service::search(&lens, &caller, request).await?))
}

/// The multipart form of `POST /v1/search/image` (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ImageSearchForm {
    /// The image to search with.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    k: Option<usize>,
    threshold: Option<f32>,
    tag: Option<String>,
}

/// Search by an uploaded image: multipart with `file`, and optional `k`, `threshold`, `tag` fields.
#[utoipa::path(post, path = "/v1/search/image", operation_id = "search_by_image", tag = "search",
    request_body(content_type = "multipart/form-data", content = ImageSearchForm),
    responses((status = 200, description = "the results, best first", body = SearchResponse), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 413, description = "over a size or count limit", body = ErrorBody),
        (status = 415, description = "unsupported image format or content type", body = ErrorBody), (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn search_image(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<axum::Json<SearchResponse>> {
    let mut multipart = multipart?;
    let (mut file, mut k, mut threshold, mut tag) = (None, None, None, None);
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" if file.is_none() => file = Some(read_field(&mut field, lens.config.max_file_bytes).await?),
            "k" | "threshold" | "tag" => {
                let text = field.text().await?;
                let bad = || ApiError::bad_request(format!("form field `{name}` is not valid"));
                match name.as_str() {
                    "k" => k = Some(text.trim().parse().map_err(|_| bad())?),
                    "threshold" => threshold = Some(text.trim().parse().map_err(|_| bad())?),
                    _ => tag = Some(text),
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field `{}`",
                    name.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    let options = SearchOptions::new(k, threshold, tag, lens.config.max_k)?;
    let bytes = file.ok_or_else(|| ApiError::bad_request("no `file` field in the form"))?;
    Ok(axum::Json(service::search_bytes(&lens, &caller, bytes, options).await?))
}

/// Embeddings of texts and images, as OpenAI's API: `input` a string or an array of strings and
/// `{"image_url"}` / `{"image_id"}` objects.
#[utoipa::path(post, path = "/v1/embeddings", operation_id = "create_embeddings", tag = "search", request_body = EmbeddingsRequest,
    responses((status = 200, description = "one embedding per input, in order", body = EmbeddingsResponse), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody),
        (status = 413, description = "over a size or count limit", body = ErrorBody), (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn embeddings(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<EmbeddingsRequest>,
) -> ApiResult<axum::Json<EmbeddingsResponse>> {
    Ok(axum::Json(service::embeddings(&lens, &caller, request).await?))
}
