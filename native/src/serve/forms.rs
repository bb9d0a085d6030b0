//! Reading multipart forms within the limits.

use axum::extract::multipart::Field;
use bytes::Bytes;
use lens_core::api::ErrorCode;

use super::error::{ApiError, ApiResult};

/// A file field, at most `limit` bytes. Past the limit the rest of the field is read and dropped
/// (bounded by the body limit), so the client, still sending, receives the 413 instead of a reset.
pub async fn read_field(field: &mut Field<'_>, limit: usize) -> ApiResult<Bytes> {
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = field.chunk().await? {
        seen += chunk.len();
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::coded(ErrorCode::TooLarge, format!("file is {seen} bytes, over the limit of {limit}")));
    }
    Ok(Bytes::from(bytes))
}
