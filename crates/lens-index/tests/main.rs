//! Every integration test of lens-index in one test binary: each file is a module (one build and link
//! instead of one per file). One file: `cargo test -p lens-index --test integration hnsw::`.

mod common;

mod hnsw;
mod scan;
