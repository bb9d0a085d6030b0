//! Images: the record every route answers with, uploads by URL, listing, thumbnails.

use serde::{Deserialize, Serialize};

use crate::colors::DominantColor;
use crate::metadata::ImageMetadata;

/// An image as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Image {
    /// The first 32 hex characters of `sha256`: the same bytes always get the same id.
    pub id: String,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// The URL it was fetched from, for URL ingests.
    pub source_url: Option<String>,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    pub tags: Vec<String>,
    /// Set by the caption job (BLIP) when captioning is on.
    pub caption: Option<String>,
    /// Set by the image's analysis job (the chat model), or by `POST /v1/analyze` with `store`.
    #[serde(default)]
    pub analysis: Option<super::ImageAnalysis>,
    /// Dominant colours, largest share first.
    pub colors: Option<Vec<DominantColor>>,
    /// Read from the headers at ingest.
    pub metadata: Option<ImageMetadata>,
    /// The ingest safety check's verdict, when the server runs one (`--moderation-label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Moderation>,
    /// The path of the bytes ([`super::blob_path`]).
    pub url: String,
}

/// The ingest safety check: CLIP zero-shot probabilities over the configured labels (the refused ones and
/// the neutral ones, softmax together), and whether a refused label reached the threshold. A flagged image
/// that was kept is hidden from search and sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Moderation {
    pub flagged: bool,
    /// Each refused label's probability, in the configured order.
    pub scores: Vec<LabelScore>,
    /// The threshold the scores were held against.
    pub threshold: f32,
}

/// One label's zero-shot probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// `POST /v1/images` with several files: every stored image, in the order sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageBatch {
    pub images: Vec<Image>,
}

/// `POST /v1/images` as JSON: ingest the image at a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UrlIngest {
    pub url: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `GET /v1/images` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 1000 (default 50).
    pub limit: Option<usize>,
    /// A `next_cursor` of an earlier page.
    pub cursor: Option<String>,
    /// Only images carrying this tag.
    pub tag: Option<String>,
}

/// `GET /v1/images`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageList {
    pub images: Vec<Image>,
    /// The `cursor` of the next page; `null` on the last one.
    pub next_cursor: Option<String>,
    /// Images in the catalog.
    pub total: u64,
}

/// `GET /v1/images/{id}/thumbnail` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ThumbnailQuery {
    /// The box the thumbnail fits in: 32, 64, 128, 256 or 512 pixels (default 256).
    pub size: Option<u32>,
}
