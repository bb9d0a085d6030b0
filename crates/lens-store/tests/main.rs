//! Every integration test of lens-store in one test binary: each file is a module (one build and link
//! instead of one per file). One file: `cargo test -p lens-store --test integration s3::`.

mod common;

mod catalog_captions;
mod catalog_connection;
mod catalog_images;
mod catalog_jobs;
mod catalog_schema;
mod catalog_vectors;
mod local;
mod s3;
