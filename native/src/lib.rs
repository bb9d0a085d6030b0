//! Lens on a native machine: the `lens` command line and `lens serve`, the image service.
//!
//! Layers, each knowing only those below it:
//!
//! - [`cli`]: the commands (`embed`, `classify`, `caption`, `models`, `serve`, `ingest`, `search`);
//! - [`serve`]: the HTTP API — axum handlers that parse a request, call a service and map its error
//!   ([`serve::app`] builds the router, [`serve::run`] the whole server);
//! - [`services`]: what the server does, apart from HTTP: ingest, search, captions and caption jobs,
//!   URL jobs, the sync feed, the index lifecycle, URL fetching; [`services::Lens`] holds their state;
//! - [`runtime`]: models on their own threads behind bounded queues, by role ([`runtime::Registry`]);
//! - [`config`]: `lens serve`'s settings (flags, `LENS_*`, a sectioned TOML file);
//!   [`hub`]: checkpoints from a HuggingFace hub; [`backend`]: the burn backend chosen at run time;
//!   [`telemetry`]: logs and metrics.
//!
//! The models themselves are in `lens-models`, storage in `lens-store`, the index in `lens-index`,
//! and the wire types, limits and ranking every target shares in `lens-core`.

pub mod backend;
pub mod cli;
pub mod config;
pub mod hub;
pub mod runtime;
pub mod serve;
pub mod services;
pub mod telemetry;

pub use services::Lens;
