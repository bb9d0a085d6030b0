//! Image analysis: a chat model's answer to a prompt about one image (`POST /v1/analyze`), and the
//! analysis an image keeps once its analysis job (or a request with `store`) ran.

use serde::{Deserialize, Serialize};

use super::Usage;

/// The analysis stored with an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageAnalysis {
    /// The chat model's answer.
    pub text: String,
    /// The prompt it answered.
    pub prompt: String,
    /// The chat model's id.
    pub model: String,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
}

/// `POST /v1/analyze` as JSON (a multipart form has a `file` field instead of `image` or `image_id`, and the
/// other fields as form fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The image as chat's `image_url` takes it: a `data:image/...;base64,` URL, an `http(s)` URL, or
    /// `lens://images/{id}`.
    pub image: Option<String>,
    /// A stored image (the same as `image: "lens://images/{id}"`).
    pub image_id: Option<String>,
    /// What to ask about the image; default: the server's `--analyze-prompt`.
    pub prompt: Option<String>,
    /// Most tokens of the answer; default and most: the server's `--analysis-max-tokens`.
    pub max_tokens: Option<u32>,
    /// Store the answer as the image's analysis (needs a stored image: `image_id` or `lens://images/{id}`).
    #[serde(default)]
    pub store: bool,
    /// Answer as server-sent `chat.completion.chunk`s, as `/v1/chat/completions` streams.
    #[serde(default)]
    pub stream: bool,
    /// The end user, kept with the analysis in the history (`GET /v1/chats?kind=analysis`).
    pub user: Option<String>,
}

/// `POST /v1/analyze`'s answer (without `stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyzeResponse {
    /// The answer (greedy decoding: the same image and prompt always get the same answer).
    pub analysis: String,
    pub prompt: String,
    /// The chat model's id.
    pub model: String,
    /// `stop` (the model ended its answer) or `length` (`max_tokens` reached).
    pub finish_reason: String,
    pub usage: Usage,
    /// The stored image, when the image was one.
    pub image_id: Option<String>,
    /// The answer is now the image's analysis (`store`).
    pub stored: bool,
}

/// `POST /v1/images` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    /// Queue an analysis job for each image (a server with `--analyze-prompt` analyses every upload anyway).
    pub analyze: Option<bool>,
    /// The prompt of those jobs; default: the server's `--analyze-prompt`.
    pub analyze_prompt: Option<String>,
}
