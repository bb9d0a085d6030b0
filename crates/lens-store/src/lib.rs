//! Storage for the Lens server: where image bytes live (a [`BlobStore`]: a local directory or S3)
//! and the [`Catalog`] (embedded SQLite), the source of truth for images, their embeddings and jobs.
//!
//! The vector index (`lens-index`) is only a cache of the catalog: every embedding is stored here,
//! so the index can be rebuilt without re-running a model ([`Catalog::for_each_embedding`]), and
//! [`Catalog::generation`] tells whether a saved index snapshot is still current.
//!
//! Native only; no HTTP framework. The catalog API is synchronous (call it from
//! `tokio::task::spawn_blocking`); the blob stores are async.

mod blob;
mod catalog;
mod error;
mod s3;
mod time;

#[cfg(feature = "testing")]
pub mod testing;

pub use blob::{BlobEntry, BlobPage, BlobStore, LocalBlobStore, validate_key};
pub use catalog::{
    ANALYSIS_JOB, CAPTION_JOB, Catalog, Change, ChangePage, ChatPage, ChatRecord, ChunkRecord, CollectionInfo, Deleted,
    INTERRUPTED_JOB_ERROR, ImageAnalysis, ImagePage, ImageRecord, JobFilter, JobRecord, JobState, KeyRecord,
    MAX_QUERY_TERMS, MAX_TERM_CHARS, NewAnalysis, NewChat, NewDocument, NewImage, NewKey, RESUMABLE_JOB_KINDS,
    RetryPolicy, SCHEMA_VERSION, SECRET_PREFIX, Scope, Visible, analysis_job_params, caption_job_params, fts_query,
    secret_hash,
};
pub use error::{Result, StoreError};
pub use s3::{S3BlobStore, S3Config};
pub use time::{format_rfc3339_ms, now_ms};
