//! Every integration test of lens-core in one test binary: each file is a module (one build and link,
//! natively and for wasm32, instead of one per file). One file: `cargo test -p lens-core --test integration reference::`.

mod common;

mod bad_input;
mod blip_preprocess;
mod colors;
mod edge_cases;
mod fuzz_corpora;
mod metadata;
mod reference;
