//! Every integration test of lens-models in one test binary: each file is a module. One binary
//! compiles the models' generic code (burn on NdArray) and links once, natively and for wasm32, where
//! eleven binaries each compiled and linked it again. Run one file with a filter:
//! `cargo test --release -p lens-models --test integration clip_parity::`.

mod common;

mod clip_fixtures;

mod bert_parity;
mod blip_parity;
mod chat_template;
mod clip_parity;
mod fuzz_corpora;
mod gguf;
mod llama_gguf;
mod llama_parity;
mod llava_parity;
mod onnx_clip;
mod quant_parity;
mod tokenizer;
