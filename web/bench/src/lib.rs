//! The browser benchmark's helpers (wasm32 only; on the host this crate is empty).
//!
//! The benchmark itself is `tests/browser.rs`, run in headless Chromium by `web/bench/run.sh`.
#![cfg(target_arch = "wasm32")]
