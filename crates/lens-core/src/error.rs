//! The one error type of `lens-core`.

use crate::image::ImageFormat;

/// Everything that can go wrong in `lens-core`: bad input bytes, limits, bad configs.
///
/// Variants carry structured fields so callers (the HTTP layer in `native/`, the CLI) can map them to
/// status codes and messages without parsing strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The encoded input is larger than [`DecodeLimits::max_bytes`](crate::image::DecodeLimits).
    #[error("input is {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },

    /// The header declares more pixels than [`DecodeLimits::max_pixels`](crate::image::DecodeLimits)
    /// (a decompression-bomb guard: checked before any pixel buffer is allocated).
    #[error("image is {width}x{height} ({} pixels), over the limit of {limit} pixels", *width as u64 * *height as u64)]
    TooManyPixels { width: u32, height: u32, limit: u64 },

    /// A side is longer than [`DecodeLimits::max_dimension`](crate::image::DecodeLimits).
    #[error("image is {width}x{height}, a side is over the limit of {limit} pixels")]
    DimensionTooLarge { width: u32, height: u32, limit: u32 },

    /// The bytes are not one of the supported formats (JPEG, PNG, GIF, WebP), or use a feature of
    /// one that is not supported.
    #[error("unsupported image: {detail}")]
    UnsupportedFormat { format: Option<ImageFormat>, detail: String },

    /// The bytes look like a supported format but are truncated or malformed.
    #[error("corrupt {format} image: {detail}")]
    Corrupt { format: ImageFormat, detail: String },

    /// A pre-processor config (`preprocessor_config.json`) that cannot be used.
    #[error("invalid pre-processor config: {detail}")]
    InvalidConfig { detail: String },

    /// Encoding an image (a thumbnail) failed.
    #[error("cannot encode image: {detail}")]
    Encode { detail: String },

    /// A pixel buffer whose length does not match its declared shape.
    #[error("pixel buffer has {len} bytes, {width}x{height} RGB needs {expected}")]
    BufferSize { width: u32, height: u32, len: usize, expected: usize },
}

impl Error {
    /// The API code of an input error (bad image bytes are the client's fault, each kind its own code);
    /// [`ErrorCode::Internal`](crate::api::ErrorCode) for the rest. Server and edge answer with it.
    pub fn code(&self) -> crate::api::ErrorCode {
        use crate::api::ErrorCode;
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::TooManyPixels { .. } | Self::DimensionTooLarge { .. } => ErrorCode::TooManyPixels,
            Self::UnsupportedFormat { .. } => ErrorCode::UnsupportedFormat,
            Self::Corrupt { .. } => ErrorCode::CorruptImage,
            _ => ErrorCode::Internal,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
