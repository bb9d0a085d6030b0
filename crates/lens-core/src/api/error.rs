//! The one error body of the API, `{"error": {"code", "message", "type", "param"}}` (OpenAI's shape, so its
//! SDKs raise the right exception with the message), and its stable codes.

use serde::{Deserialize, Serialize};

/// A machine-readable error code. Stable: clients branch on these, so one is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field is missing, malformed or out of range.
    InvalidRequest,
    /// The JSON body does not parse or has the wrong shape.
    InvalidJson,
    /// The multipart body cannot be read as a form.
    InvalidMultipart,
    /// A page cursor this server did not give.
    InvalidCursor,
    /// Not a URL.
    InvalidUrl,
    NotFound,
    MethodNotAllowed,
    /// No API key, or one this server does not know (or revoked): send `Authorization: Bearer KEY`.
    Unauthorized,
    /// The key's scope does not cover the route, or a browser request from another site or for another host.
    Forbidden,
    /// The name is taken (collection names are shared by every tenant).
    Conflict,
    /// Over the key's (or the address's) request or byte rate: retry after `Retry-After` seconds.
    RateLimited,
    /// A body, file, text or count over its limit.
    TooLarge,
    /// An image over the pixel or side limit.
    TooManyPixels,
    /// Not a JPEG, PNG, GIF or WebP file, or a format this server does not accept.
    UnsupportedFormat,
    /// A body of the wrong content type.
    UnsupportedMediaType,
    /// The bytes look like an image but are truncated or malformed.
    CorruptImage,
    /// The ingest safety check (moderation) scored the image over its threshold for a refused label.
    ContentRejected,
    /// A URL the server will not fetch (scheme, private address, redirect).
    UrlRefused,
    /// The remote server failed or answered with an error.
    FetchFailed,
    FetchTimeout,
    /// The stored image has no embedding by the loaded model yet.
    NotEmbedded,
    /// The models are loading or the index is being built.
    NotReady,
    /// This server has no caption model.
    CaptioningDisabled,
    /// This server has no chat model.
    ChatDisabled,
    /// The model queue is full: retry after the `Retry-After` seconds.
    Overloaded,
    /// The request took longer than the server's limit.
    Timeout,
    /// The remote chat provider refused the request or failed (its message is quoted).
    UpstreamFailed,
    /// The remote chat provider did not answer in time.
    UpstreamTimeout,
    /// The edge's model is not the one the index was embedded with (or is missing): its vectors would not
    /// compare, so it does not search.
    ModelMismatch,
    /// The edge could not reach the origin server it forwards this request to; nothing was stored.
    OriginUnavailable,
    Internal,
    /// A code this build does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidJson => "invalid_json",
            Self::InvalidMultipart => "invalid_multipart",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidUrl => "invalid_url",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::TooManyPixels => "too_many_pixels",
            Self::UnsupportedFormat => "unsupported_format",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::CorruptImage => "corrupt_image",
            Self::ContentRejected => "content_rejected",
            Self::UrlRefused => "url_refused",
            Self::FetchFailed => "fetch_failed",
            Self::FetchTimeout => "fetch_timeout",
            Self::NotEmbedded => "not_embedded",
            Self::NotReady => "not_ready",
            Self::CaptioningDisabled => "captioning_disabled",
            Self::ChatDisabled => "chat_disabled",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::UpstreamFailed => "upstream_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::ModelMismatch => "model_mismatch",
            Self::OriginUnavailable => "origin_unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }

    /// The HTTP status an error with this code is answered with, unless the layer that found it
    /// knows better (a JSON body of the wrong shape is 422, one that does not parse 400).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::InvalidJson
            | Self::InvalidMultipart
            | Self::InvalidCursor
            | Self::InvalidUrl
            | Self::UrlRefused => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::NotEmbedded | Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::UnsupportedFormat | Self::UnsupportedMediaType => 415,
            Self::TooManyPixels | Self::CorruptImage | Self::ContentRejected | Self::FetchFailed => 422,
            Self::Overloaded | Self::RateLimited => 429,
            Self::NotReady | Self::CaptioningDisabled | Self::ChatDisabled | Self::Timeout | Self::ModelMismatch => 503,
            Self::UpstreamFailed | Self::OriginUnavailable => 502,
            Self::FetchTimeout | Self::UpstreamTimeout => 504,
            Self::Internal | Self::Unknown => 500,
        }
    }
}

impl ErrorCode {
    /// OpenAI's `type` for an error of this code: `invalid_request_error` (4xx but 401, 403, 404 and 429),
    /// `authentication_error`, `permission_error`, `not_found_error`, `rate_limit_error` (429), `server_error` (5xx).
    pub fn kind(self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": {"code", "message", "type", "param"}}`: every error the API answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what was wrong and, where it helps, what to do.
    pub message: String,
    /// OpenAI's error class ([`ErrorCode::kind`]), for clients written against OpenAI's API.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The request field at fault, when the server names one (OpenAI's `param`).
    #[serde(default)]
    pub param: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code, message: message.into(), kind: code.kind().to_string(), param: None } }
    }
}

/// A request refused for what it asks (a 4xx): the code and the message the client gets. The
/// validation shared by every target (limits, ids, tags, search options) returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// [`ErrorCode::InvalidRequest`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// [`ErrorCode::TooLarge`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn codes_serialize_as_their_names_and_unknown_ones_parse() {
        for code in
            [ErrorCode::InvalidRequest, ErrorCode::TooManyPixels, ErrorCode::RateLimited, ErrorCode::Unauthorized]
        {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        let body: ErrorBody = serde_json::from_str(r#"{"error":{"code":"brand_new","message":"m"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::Unknown);
        let json = serde_json::to_string(&ErrorBody::new(ErrorCode::NotFound, "no image `x`")).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":"not_found","message":"no image `x`","type":"not_found_error","param":null}}"#
        );
    }
}
