//! Every integration test of the `lens` package in one test binary: each file (and `api/`) is a module.
//! One binary compiles the generic model and server code the tests instantiate, and links, once instead
//! of eight times. One part: `cargo test --release -p lens --test integration api::` (or `generate::`, …).

mod common;

mod api;
mod chat_cli;
mod cli;
mod generate;
mod onnx;
mod openai;
mod process;
mod pull;
mod quant_accuracy;
mod security;
