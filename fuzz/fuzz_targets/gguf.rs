//! GGUF files: header, metadata, tensor table, then each small tensor dequantized.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_models::fuzzing::gguf(data));
