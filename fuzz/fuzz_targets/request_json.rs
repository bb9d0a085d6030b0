//! The JSON bodies and queries of the API, parsed into lens-core's wire types and validated as the
//! server, the edge and the browser validate them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_core::fuzzing::request_json(data));
