//! The browser benchmark's pieces (wasm32 only; on the host this crate is empty).
//!
//! The benchmark itself is `tests/browser.rs`, run in headless Chromium by `web/bench/run.sh`:
//! [`clock`] times with `performance.now()`, [`report`] keeps samples and prints the table,
//! [`checkpoint`] builds full-size random CLIP checkpoints in memory, [`cache`] round-trips bytes
//! through Cache Storage, [`search`] times the local indexes, [`profile`] splits an encoder layer's time
//! by op.
#![cfg(target_arch = "wasm32")]

pub mod cache;
pub mod checkpoint;
pub mod clip;
pub mod clock;
pub mod profile;
pub mod report;
pub mod search;

/// Whether this build is the smoke run (cargo feature `smoke`): tiny model, one iteration, 1k vectors.
pub const SMOKE: bool = cfg!(feature = "smoke");

/// Write one line to the console (`wasm-bindgen-test-runner --nocapture` shows it).
pub fn log(line: &str) {
    web_sys::console::log_1(&line.into());
}
