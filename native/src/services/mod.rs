//! What `lens serve` does, apart from HTTP. Each service takes the shared [`Lens`] state, checks its
//! inputs with lens-core's limits, and returns lens-core's wire types or its own error enum (with a
//! stable code, see [`errors::Coded`]); the HTTP layer maps those once.
//!
//! Layers: [`caller`], [`errors`], [`fetch`], [`index`], [`thumbnails`] and [`caption_options`] know
//! nothing of the others; [`lens`] holds them; [`orphans`] sweeps its blob store; [`images`] is what every
//! input path does to image bytes and [`job_queue`] runs the per-image job queues; [`moderation`],
//! [`ingest`] (which uses it), [`search`], [`captions`], [`chat`], [`analysis`] (on [`chat`]),
//! [`history`], [`knowledge`], [`jobs`] and [`sync`] build on those; [`index_snapshots`] saves the index
//! and queues a [`jobs`] rebuild when its tombstones pile up.

pub mod analysis;
pub mod caller;
pub mod caption_options;
pub mod captions;
pub mod chat;
pub mod errors;
pub mod fetch;
pub mod history;
pub mod images;
pub mod index;
pub mod index_snapshots;
pub mod ingest;
pub mod job_queue;
pub mod jobs;
pub mod knowledge;
pub mod lens;
pub mod moderation;
pub mod orphans;
pub mod pixels;
pub mod search;
pub mod sync;
pub mod thumbnails;

pub use caller::Caller;
pub use errors::{Coded, NotReady};
pub use lens::{Lens, Ready};

/// Starts the background workers (caption and analysis jobs, index snapshots), once the models and the
/// index are loaded.
pub fn spawn_workers(lens: &std::sync::Arc<Lens>) {
    captions::spawn_workers(lens);
    analysis::spawn_workers(lens);
    index_snapshots::spawn(lens);
}
