//! Knowledge-base uploads: JSON, JSON Lines and CSV documents, then their chunks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_core::fuzzing::documents(data));
