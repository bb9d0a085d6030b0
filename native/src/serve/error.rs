//! The one error answer of the HTTP API: `{"error": {"code", "message", "type", "param"}}` (lens-core's
//! [`ErrorBody`]) with the status the code calls for (`overloaded`: 429 with `Retry-After`). Service errors are mapped here, once; so are
//! axum's rejections of malformed bodies and queries.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lens_core::api::{ErrorBody, ErrorCode, RequestError};

use crate::services::analysis::AnalysisError;
use crate::services::captions::CaptionError;
use crate::services::chat::ChatError;
use crate::services::errors::{Coded, NotReady};
use crate::services::history::HistoryError;
use crate::services::images::ImageError;
use crate::services::ingest::IngestError;
use crate::services::jobs::JobError;
use crate::services::knowledge::KnowledgeError;
use crate::services::search::SearchError;
use crate::services::sync::SyncError;

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// With the status its code calls for.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(status_of(code), code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::InvalidRequest, message)
    }

    /// A service error: its code's status and its client message; an internal one is logged in full
    /// and answered without internals.
    pub fn service(error: &impl Coded) -> Self {
        let code = error.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = error.describe(), "internal error");
        }
        Self::coded(code, error.client_message())
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let overloaded = self.code == ErrorCode::Overloaded;
        let mut response = (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if overloaded {
            // A model queue drains in about a request's time: a second is a fair first wait.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

macro_rules! from_service {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for ApiError {
            fn from(error: $ty) -> Self {
                ApiError::service(&error)
            }
        })*
    };
}
from_service!(
    RequestError,
    NotReady,
    ImageError,
    IngestError,
    SearchError,
    CaptionError,
    ChatError,
    AnalysisError,
    HistoryError,
    KnowledgeError,
    JobError,
    SyncError
);

impl From<MultipartError> for ApiError {
    fn from(err: MultipartError) -> Self {
        let status = err.status();
        let code =
            if status == StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::TooLarge } else { ErrorCode::InvalidMultipart };
        ApiError::new(status, code, err.body_text())
    }
}

/// A multipart body that cannot be read as a form (no boundary, wrong content type).
impl From<MultipartRejection> for ApiError {
    fn from(err: MultipartRejection) -> Self {
        ApiError::new(err.status(), ErrorCode::InvalidMultipart, err.body_text())
    }
}

/// Query strings with unknown keys or values of the wrong type.
impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        ApiError::bad_request(err.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(err: PathRejection) -> Self {
        ApiError::bad_request(err.body_text())
    }
}

/// JSON bodies that do not parse, or have the wrong shape or content type.
impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> Self {
        let status = err.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::InvalidJson,
        };
        ApiError::new(status, code, err.body_text())
    }
}
