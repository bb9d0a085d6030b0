//! `POST /v1/captions`: caption uploads, URLs or stored images with BLIP.

use std::sync::Arc;

use axum::extract::{Extension, FromRequest, Multipart, State};
use axum::http::{HeaderMap, header};
use lens_core::api::{CaptionRequest, CaptionsResponse, ErrorBody, ErrorCode};
use lens_models::blip::pipeline::MAX_PROMPT_BYTES;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::Json;
use super::forms::read_field;
use crate::services::captions::{self as service, CaptionUpload, MAX_CAPTION_IMAGES};
use crate::services::{Caller, Lens};

/// The option fields a form may carry beside `file`.
const FORM_FIELDS: [&str; 11] = [
    "prompt",
    "beams",
    "max_new_tokens",
    "min_new_tokens",
    "repetition_penalty",
    "length_penalty",
    "early_stopping",
    "temperature",
    "top_k",
    "top_p",
    "seed",
];

/// The multipart form of `POST /v1/captions` (for the OpenAPI document): the files and the option
/// fields of the JSON body as text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CaptionForm {
    /// Up to 16 image files.
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    prompt: Option<String>,
    beams: Option<usize>,
    max_new_tokens: Option<usize>,
    min_new_tokens: Option<usize>,
    repetition_penalty: Option<f32>,
    length_penalty: Option<f32>,
    early_stopping: Option<bool>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    seed: Option<u64>,
}

/// Caption images with BLIP, cache first: uploads, URLs or stored ids; all are checked before any
/// model runs; a failed request stores and caches nothing.
#[utoipa::path(post, path = "/v1/captions", operation_id = "create_captions", tag = "captions",
    request_body(content((CaptionForm = "multipart/form-data"), (CaptionRequest = "application/json"))),
    responses((status = 200, description = "one caption per image, uploads first", body = CaptionsResponse), (status = 400, description = "invalid request (the error's code says what)", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody),
        (status = 413, description = "over a size or count limit", body = ErrorBody), (status = 415, description = "unsupported image format or content type", body = ErrorBody), (status = 422, description = "a corrupt image, too many pixels, or a URL whose fetch failed", body = ErrorBody),
        (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody), (status = 504, description = "a URL fetch timed out", body = ErrorBody)))]
pub async fn create(
    State(lens): State<Arc<Lens>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<axum::Json<CaptionsResponse>> {
    if let Err(e) = service::captioning(&lens) {
        // Read the body (within the body limit) so that a client still sending gets the answer.
        let _ = axum::body::to_bytes(request.into_body(), lens.config.max_body_bytes).await;
        return Err(e.into());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (caption_request, uploads) = if content_type.starts_with("multipart/form-data") {
        read_form(&lens, Multipart::from_request(request, &()).await?).await?
    } else if content_type.starts_with("application/json") {
        let Json(body): Json<CaptionRequest> = Json::from_request(request, &()).await?;
        (body, Vec::new())
    } else {
        return Err(ApiError::coded(
            ErrorCode::UnsupportedMediaType,
            "send multipart/form-data with `file` fields, or application/json with {\"images\": [...]}",
        ));
    };
    Ok(axum::Json(service::caption(&lens, &caller, caption_request, uploads).await?))
}

/// Form fields: `file` (repeatable) and the option fields of [`CaptionRequest`] as text.
async fn read_form(lens: &Lens, mut multipart: Multipart) -> ApiResult<(CaptionRequest, Vec<CaptionUpload>)> {
    let mut files = Vec::new();
    let mut fields = serde_json::Map::new();
    let mut extra_files = 0usize;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if files.len() == MAX_CAPTION_IMAGES {
                // Read on (the body limit bounds it) so the client, still sending, gets the 413.
                while field.chunk().await?.is_some() {}
                extra_files += 1;
                continue;
            }
            let file_name = field.file_name().unwrap_or("upload").chars().take(200).collect::<String>();
            let bytes = read_field(&mut field, lens.config.max_file_bytes).await?;
            files.push(CaptionUpload { name: file_name, bytes });
        } else if FORM_FIELDS.contains(&name.as_str()) && !fields.contains_key(&name) {
            let text = field.text().await?;
            if text.len() > MAX_PROMPT_BYTES * 2 {
                return Err(ApiError::coded(ErrorCode::TooLarge, format!("form field `{name}` is too long")));
            }
            let value = if name == "prompt" {
                Value::String(text)
            } else {
                serde_json::from_str(text.trim())
                    .map_err(|_| ApiError::bad_request(format!("form field `{name}` is not valid")))?
            };
            fields.insert(name, value);
        } else {
            return Err(ApiError::bad_request(format!(
                "unexpected form field `{}` (expected `file` or one of {})",
                name.chars().take(64).collect::<String>(),
                FORM_FIELDS.join(", ")
            )));
        }
    }
    if extra_files > 0 {
        return Err(ApiError::coded(
            ErrorCode::TooLarge,
            format!("{} images, at most {MAX_CAPTION_IMAGES} per request", MAX_CAPTION_IMAGES + extra_files),
        ));
    }
    let request = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("form fields: {e}")))?;
    Ok((request, files))
}
