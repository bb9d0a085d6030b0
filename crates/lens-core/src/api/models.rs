//! The loaded models (`GET /v1/models`, OpenAI-shaped) and the health routes.

use serde::{Deserialize, Serialize};

/// What a model does here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelTask {
    /// CLIP: image and text embeddings (search).
    Embedding,
    /// BLIP: captions.
    Captioning,
    /// LLaMA or LLaVA: chat completions (`POST /v1/chat/completions`).
    Chat,
    /// A sentence embedder (BERT, MiniLM): the knowledge base's passages and queries.
    TextEmbedding,
}

/// One loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCard {
    /// Stable identity of the weights: `repo@commit` when pulled, else the directory name and a hash
    /// of the weight files. Embeddings of different models are never mixed.
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub task: ModelTask,
    pub name: String,
    pub revision: Option<String>,
    /// The burn backend (`NdArray`, `Wgpu`, `Cuda`).
    pub backend: String,
    pub device: String,
    pub image_size: usize,
    /// Embedding models: the embedding's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// Embedding models: the text tower's context; chat models: the decoder's (prompt and answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_text_tokens: Option<usize>,
    /// Embedding models: the index of their embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexInfo>,
    /// Embedding models: where image bytes are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_store: Option<String>,
    /// Caption models: the options caption jobs use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<serde_json::Value>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The embedding model first.
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IndexInfo {
    /// `hnsw` or `exact`.
    pub kind: String,
    pub vectors: usize,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub uptime_s: u64,
}

/// `GET /readyz` once the models are loaded and the index built (503 `not_ready` before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    pub model: String,
    pub caption_model: Option<String>,
    pub index: IndexInfo,
}
