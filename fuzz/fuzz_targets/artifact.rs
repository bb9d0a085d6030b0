//! Lens model artifacts: the header alone, then the whole file with its checksum made to match.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_models::fuzzing::artifact(data));
