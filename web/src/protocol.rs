//! The messages between the page and the worker. Each crosses `postMessage` as a JS object
//! `{ msg: "<JSON of Request or Event>", files: [File...] }` (requests) or `{ msg, thumbs: [Blob...] }`
//! (events): the JSON is small, and image bytes and thumbnails travel as Blobs (no copies through JSON).

use serde::{Deserialize, Serialize};

/// Page → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Open the local index and load the model artifact at `model_url` (fetched once, then cached).
    Init { model_url: String },
    /// Add the files sent alongside (their names here, in the same order).
    Add { names: Vec<String> },
    /// Rank the local images against a text; `seq` orders requests so stale answers can be dropped.
    Search { seq: u64, text: String, k: usize },
    /// Rank the local images against the image with this sha256.
    Similar { seq: u64, sha256: String, k: usize },
    /// Remove one image from the local index (and from storage).
    Delete { sha256: String },
    /// Pull the server's images into the local index and send local ones up (`None`: stop syncing).
    Sync { server: Option<String> },
}

/// Worker → page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker is running and listens for requests.
    Started,
    /// Model download progress (`total` 0 when the server sends no length).
    Progress { loaded: u64, total: u64 },
    /// The model is loaded; `cached` says it came from Cache Storage rather than the network, `kernel`
    /// which int8 products this worker's build runs (`relaxed-simd` or `simd128`).
    ModelReady { id: String, dim: usize, cached: bool, kernel: String },
    /// Images now in the local index (new or updated), with one thumbnail Blob each in `thumbs`.
    Items { items: Vec<Item> },
    /// Images removed from the local index.
    Removed { sha256: Vec<String> },
    /// A ranking for request `seq`.
    Results { seq: u64, hits: Vec<Hit> },
    /// Progress of an `Add`: `done` of `total` files handled.
    Adding { done: usize, total: usize },
    /// A file that was not added, and why.
    Rejected { name: String, reason: String },
    /// Sync state, for the status line.
    Sync { state: SyncState, message: String },
    /// Something the user must know: `kind` is `missing_model`, `bad_model`, `quota`, `storage` or `error`.
    Error { kind: String, message: String },
}

/// One image of the local index, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub sha256: String,
    pub name: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// Milliseconds since the Unix epoch when it entered the local index.
    pub added_at: f64,
    pub caption: Option<String>,
    /// The image's id on the sync server, once it is there.
    pub server_id: Option<String>,
}

/// A search result: the image and its cosine similarity with the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub sha256: String,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Off,
    Syncing,
    Idle,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let r = Request::Search { seq: 7, text: "a cat".into(), k: 50 };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"type":"search","seq":7,"text":"a cat","k":50}"#);
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        let e = Event::Error { kind: "quota".into(), message: "full".into() };
        assert_eq!(serde_json::from_str::<Event>(&serde_json::to_string(&e).unwrap()).unwrap(), e);
    }
}
