//! Basic metadata from the headers alone: format, upright size, orientation and a few EXIF tags.
//!
//! Nothing is decoded: [`probe_image`] reads the format, the stored size and the orientation (applying
//! the [`DecodeLimits`]), and the EXIF reader of [`crate::image`] (the one that finds the orientation)
//! reads the descriptive tags. Malformed EXIF is never an error: the tags it spoils are `None`.

use serde::{Deserialize, Serialize};

use crate::Result;
pub use crate::image::ExifFields;
use crate::image::{DecodeLimits, ImageFormat, probe_image, read_tags};

/// What the image service stores on ingest and returns with each image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageMetadata {
    /// `"jpeg"`, `"png"`, `"gif"` or `"webp"`.
    pub format: String,
    /// The IANA media type (`"image/jpeg"`, ...).
    pub mime: String,
    /// Width once the orientation is applied (what [`decode_image`](crate::image::decode_image) returns).
    pub width: u32,
    /// Height once the orientation is applied.
    pub height: u32,
    /// The EXIF (or, failing that, XMP) orientation, 1..=8; `None` when the file has none or the value is
    /// outside 1..=8 (which means no transform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
    /// The descriptive EXIF tags; `None` when the file has no EXIF block or none of these tags in it (an
    /// EXIF block holding only the orientation, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exif: Option<ExifFields>,
}

/// Reads an image's metadata from its headers, without decoding it.
///
/// # Errors
/// As [`probe_image`]: [`Error::TooLarge`](crate::Error::TooLarge) and the other limit errors,
/// [`Error::UnsupportedFormat`](crate::Error::UnsupportedFormat), or
/// [`Error::Corrupt`](crate::Error::Corrupt) when the size cannot be read.
pub fn image_metadata(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageMetadata> {
    let info = probe_image(bytes, limits)?;
    let tags = read_tags(info.format, bytes);
    let (width, height) = info.oriented_dimensions();
    let format = match info.format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
    };
    Ok(ImageMetadata {
        format: format.to_owned(),
        mime: info.format.mime_type().to_owned(),
        width,
        height,
        orientation: tags.orientation.filter(|o| (1..=8).contains(o)),
        exif: (!tags.exif.is_empty()).then_some(tags.exif),
    })
}
