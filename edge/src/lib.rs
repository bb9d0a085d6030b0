//! The Lens edge: a Cloudflare Worker (workers-rs, run locally by `wrangler dev`) that answers text searches
//! itself — CLIP's int8 text tower (`lens models quantize --text-only`) and an int8 index, both kept in
//! R2 — and forwards what needs the image tower, the captioner or the catalog to the origin `lens serve`.
//! Uploads are checked here, stored by the origin and kept in R2; a scheduled sync pulls the origin's
//! change feed into the index. The model code, the wire types, the checks and the int8 scan are the ones
//! the server and the browser run (lens-models, lens-core, lens-index).
//!
//! - [`search`]: which searches the edge answers, their checks, the merge of shard hits;
//! - [`index`]: the manifest and shards in R2;
//! - [`sync`]: a feed page applied to the index;
//! - [`upload`]: the checks of an upload before it is forwarded;
//! - `worker` (wasm32): routes, R2, KV, the model loaded once per isolate, forwarding, the cron handler.

pub mod index;
pub mod search;
pub mod sync;
pub mod upload;
#[cfg(target_arch = "wasm32")]
mod worker;
