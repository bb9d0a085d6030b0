//! The knowledge base: collections of text documents (`/v1/collections`), searched by keywords and
//! sentence embeddings, and the retrieval a chat request asks for with its `lens` field.

use serde::{Deserialize, Serialize};

/// A collection and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionInfo {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
}

/// `GET /v1/collections`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}

/// `POST /v1/collections/{name}/documents`: what was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentsAdded {
    pub collection: String,
    /// The documents' ids, in upload order (generated ones included).
    pub ids: Vec<String>,
    pub chunks: u64,
    /// The text model that embedded the chunks; `null`: keyword search only.
    pub embedder: Option<String>,
}

/// `POST /v1/collections/{name}/search`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectionSearchRequest {
    pub query: String,
    /// 1 to 50 (default 5).
    pub k: Option<usize>,
}

/// A retrieved passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Passage {
    pub collection: String,
    pub document_id: String,
    pub title: Option<String>,
    /// The chunk's position in its document, from 0.
    pub chunk: u32,
    pub text: String,
    /// `(keyword_score + semantic_score) / 2`, 0 to 1.
    pub score: f32,
    /// bm25 of the query's words in the chunk over the best among the candidates (0 to 1).
    pub keyword_score: f32,
    /// Cosine of the query's and the chunk's sentence embeddings, floored at 0; `null` without a text model.
    pub semantic_score: Option<f32>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /v1/collections/{name}/search`'s answer: best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectionSearchResponse {
    pub results: Vec<Passage>,
}

/// A chat request's `lens` field: retrieve passages for the last user message and give them to the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChatRetrieval {
    /// 1 to 8 collections.
    pub collections: Vec<String>,
    /// Passages in all (default 4, at most 16).
    pub top_k: Option<usize>,
}

/// The `lens` field of a chat answer (and of a stream's first chunk): the passages the model was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatSources {
    pub sources: Vec<Passage>,
}
