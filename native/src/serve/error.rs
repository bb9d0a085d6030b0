//! The one error shape of the HTTP API: `{"error": {"code", "message"}}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as the client sees it. `code` is stable and machine-readable; `message` is for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For internal errors: what went wrong, for the log and for background jobs' `last_error`
    /// (never sent to the client).
    pub detail: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), detail: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the model is loading or the index is being built; retry shortly",
        )
    }
    pub fn internal(err: impl std::fmt::Display) -> Self {
        // Details go to the log; the client gets a stable message without internals.
        tracing::error!(error = %err, "internal error");
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error (see the server log)");
        e.detail = Some(err.to_string());
        e
    }

    /// The whole story, for logs and job records: the detail of an internal error, else the message.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.code, self.detail.as_deref().unwrap_or(&self.message))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// Bad image bytes are the client's fault: each kind gets its own code.
impl From<lens_core::Error> for ApiError {
    fn from(err: lens_core::Error) -> Self {
        use lens_core::Error as E;
        let (status, code) = match &err {
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            E::TooManyPixels { .. } | E::DimensionTooLarge { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels")
            }
            E::UnsupportedFormat { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
            E::Corrupt { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image"),
            _ => return ApiError::internal(err),
        };
        ApiError::new(status, code, err.to_string())
    }
}

impl From<lens_models::Error> for ApiError {
    fn from(err: lens_models::Error) -> Self {
        match err {
            lens_models::Error::InvalidInput { message } => ApiError::bad_request(message),
            lens_models::Error::Tokenizer { message } => ApiError::bad_request(format!("text: {message}")),
            lens_models::Error::Image(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<lens_store::StoreError> for ApiError {
    fn from(err: lens_store::StoreError) -> Self {
        match err {
            // e.g. a malformed page cursor
            lens_store::StoreError::InvalidInput(message) => ApiError::bad_request(message),
            lens_store::StoreError::NotFound(message) => ApiError::not_found(message),
            other => ApiError::internal(other),
        }
    }
}

impl From<lens_index::IndexError> for ApiError {
    fn from(err: lens_index::IndexError) -> Self {
        ApiError::internal(err)
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(err: axum::extract::multipart::MultipartError) -> Self {
        let status = err.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "invalid_multipart" };
        ApiError::new(status, code, err.body_text())
    }
}

/// A multipart body that cannot be read as a form (no boundary, wrong content type).
impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(err: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::new(err.status(), "invalid_multipart", err.body_text())
    }
}

/// Query strings with unknown keys or values of the wrong type.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(err: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(err.body_text())
    }
}

/// Ids in paths are short; anything longer is refused before it reaches the catalog.
pub fn check_id(id: &str, what: &str) -> ApiResult<()> {
    if id.len() > 128 {
        return Err(ApiError::bad_request(format!("{what} id too long")));
    }
    Ok(())
}

/// JSON bodies that do not parse, or have the wrong shape or content type.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(err: axum::extract::rejection::JsonRejection) -> Self {
        let status = err.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_json",
        };
        ApiError::new(status, code, err.body_text())
    }
}
