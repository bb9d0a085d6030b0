//! The browser-sync change feed, `GET /v1/sync?since=&limit=`: the latest state of every image changed
//! after a cursor, each once, in change order. The server writes it; the browser app's worker reads it.

use serde::{Deserialize, Serialize};

/// `GET /v1/sync` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// A `next_cursor`; absent: from the beginning.
    pub since: Option<String>,
    /// 1 to 500 (default 200).
    pub limit: Option<usize>,
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncPage {
    /// The model whose embeddings the page carries: embeddings of other models must not be mixed in.
    pub model: SyncModel,
    /// Ascending `seq`.
    pub changes: Vec<SyncChange>,
    /// The `since` of the next page (the last `seq` returned; `since` itself when none).
    pub next_cursor: String,
    /// More changes follow `next_cursor` now.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncModel {
    pub id: String,
    pub dims: usize,
}

/// An image's latest state, or its deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SyncChange {
    Upsert { seq: u64, image: SyncImage },
    Delete { seq: u64, id: String },
}

impl SyncChange {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Upsert { seq, .. } | Self::Delete { seq, .. } => *seq,
        }
    }
}

/// An image in the feed, with the server model's embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncImage {
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub caption: Option<String>,
    /// The text of the image's analysis.
    #[serde(default)]
    pub analysis: Option<String>,
    /// The server model's L2-normalised image embedding.
    pub embedding: Vec<f32>,
    pub thumbnail_url: String,
}
