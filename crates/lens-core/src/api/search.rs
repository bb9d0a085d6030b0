//! Search by text or image, near-duplicates, and OpenAI-shaped embeddings.

use serde::{Deserialize, Serialize};

use crate::colors::DominantColor;
use crate::metadata::ImageMetadata;

/// `POST /v1/search`: exactly one of `text`, `image_url`, `image_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub text: Option<String>,
    /// An image to fetch and search with.
    pub image_url: Option<String>,
    /// A stored image to search with (it scores 1 and is kept).
    pub image_id: Option<String>,
    /// Results wanted, 1 to the server's `max_k` (default 10).
    pub k: Option<usize>,
    /// Lowest `score` returned, -1 to 1.
    pub threshold: Option<f32>,
    /// Only images carrying this tag.
    pub tag: Option<String>,
    /// Weight of the caption score for text queries, 0 to 1 (default: the server's `hybrid_weight`).
    pub hybrid_weight: Option<f32>,
}

/// One ranked image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResult {
    pub id: String,
    /// `(1 - w) * vector_score + w * caption_score` for text queries on images with a caption or an
    /// analysis, else `vector_score`.
    pub score: f32,
    /// CLIP cosine of the query and the image.
    pub vector_score: f32,
    /// 0 to 1: how well the image's texts (caption and analysis) match the query, by keywords and by their
    /// CLIP text embeddings; `null` without either text, or when not computed (weight 0, image queries).
    pub caption_score: Option<f32>,
    pub caption: Option<String>,
    /// The text of the image's analysis.
    #[serde(default)]
    pub analysis: Option<String>,
    pub tags: Vec<String>,
    pub colors: Option<Vec<DominantColor>>,
    pub metadata: Option<ImageMetadata>,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<SearchResult>,
}

/// `GET /v1/images/{id}/duplicates` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DuplicatesQuery {
    /// Lowest cosine similarity (default 0.95).
    pub threshold: Option<f32>,
    /// Most duplicates returned (default 20).
    pub k: Option<usize>,
}

/// Other images whose embedding is within the threshold of this one's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DuplicatesResponse {
    pub id: String,
    pub sha256: String,
    pub duplicates: Vec<SearchResult>,
}

/// `POST /v1/embeddings`, as OpenAI's: `input` is a string, or an array of strings and
/// `{"image_url"}` / `{"image_id"}` objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub input: serde_json::Value,
    /// Must name the loaded model when given.
    pub model: Option<String>,
    /// Only `float`.
    pub encoding_format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// The input's position.
    pub index: usize,
    /// L2-normalised.
    pub embedding: Vec<f32>,
}
