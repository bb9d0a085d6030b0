//! `POST /v1/captions`: caption uploads, URLs or stored images with BLIP, cache first.

use serde::{Deserialize, Serialize};

/// The JSON body (and, minus `images` and `store`, the multipart form's fields). Options left out take
/// the server's defaults; any of `temperature`, `top_k`, `top_p`, `seed` samples (with `beams` 1)
/// instead of searching.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptionRequest {
    /// Images by URL or stored id (1 to 16 with the uploads).
    #[serde(default)]
    pub images: Vec<CaptionImage>,
    /// Store the captions (and their CLIP text embeddings) on the images, which must all be given by
    /// id; their queued caption jobs are cancelled.
    #[serde(default)]
    pub store: bool,
    /// The caption continues this text, e.g. "a picture of".
    pub prompt: Option<String>,
    pub beams: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub min_new_tokens: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub length_penalty: Option<f32>,
    pub early_stopping: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

/// One image of [`CaptionRequest::images`]: exactly one of `url`, `id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptionImage {
    pub url: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptionsResponse {
    /// One per image, uploads first, then `images` in order.
    pub captions: Vec<CaptionEntry>,
    /// The caption model's id.
    pub model: String,
    /// The options used, defaults filled in.
    pub options: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptionEntry {
    /// The file name, URL or id.
    pub input: String,
    pub caption: String,
    /// From the caption cache (same bytes, model and options): no model run.
    pub cached: bool,
    pub model: String,
    /// Present (true) when the request asked to `store`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
}
