//! The Lens browser app. The page (`src/bin/app.rs`) draws the UI and talks to a Web Worker
//! (`src/bin/worker.rs`) that loads the quantized CLIP, decodes and embeds images and searches the
//! local index; both exchange the messages of [`protocol`].
//!
//! Target-independent logic lives in modules that also build natively, so `cargo test` covers it;
//! the browser glue (IndexedDB, Cache Storage, fetch, the DOM) is wasm32 only.

pub mod feed;
pub mod kernel;
pub mod latest;
pub mod local;
pub mod protocol;
pub mod thumb;

#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
pub mod model;
#[cfg(target_arch = "wasm32")]
pub mod store;
