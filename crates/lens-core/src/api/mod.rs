//! The HTTP API's wire types: one definition of every request and response body, the sync feed and
//! the error body with its stable codes. `lens serve` serializes them, the browser app (and the edge)
//! deserialize them, and with the `openapi` feature they carry the schemas the server's OpenAPI
//! document is generated from. Plain serde structs: no HTTP framework here.
//!
//! Field names, optionality and defaults are the contract: a field added later must be optional
//! (`#[serde(default)]`) so older clients and servers keep understanding each other.

mod analysis;
mod captions;
mod chat;
mod error;
mod history;
mod images;
mod jobs;
mod knowledge;
mod models;
mod search;
mod sync;

pub use analysis::{AnalyzeRequest, AnalyzeResponse, ImageAnalysis, IngestQuery};
pub use captions::{CaptionEntry, CaptionImage, CaptionRequest, CaptionsResponse};
pub use chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessageIn,
    ChunkChoice, ContentPart, Delta, ImageUrl, MessageContent, StopSequences, StreamOptions, Usage,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, RequestError};
pub use history::{ChatList, ChatsQuery, DeletedChats, StoredChat};
pub use images::{Image, ImageBatch, ImageList, LabelScore, ListQuery, Moderation, ThumbnailQuery, UrlIngest};
pub use jobs::{IngestJobRequest, Job, JobList, JobState, JobsQuery};
pub use knowledge::{
    ChatRetrieval, ChatSources, CollectionInfo, CollectionList, CollectionSearchRequest, CollectionSearchResponse,
    DocumentsAdded, Passage,
};
pub use models::{Health, IndexInfo, ModelCard, ModelList, ModelTask, Ready};
pub use search::{
    DuplicatesQuery, DuplicatesResponse, EmbeddingData, EmbeddingsRequest, EmbeddingsResponse, SearchRequest,
    SearchResponse, SearchResult,
};
pub use sync::{SyncChange, SyncImage, SyncModel, SyncPage, SyncQuery};

/// The path of an image's bytes.
pub fn blob_path(id: &str) -> String {
    format!("/v1/images/{id}/blob")
}

/// The path of an image's thumbnail.
pub fn thumbnail_path(id: &str) -> String {
    format!("/v1/images/{id}/thumbnail")
}
