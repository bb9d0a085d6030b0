//! The four image decoders (JPEG, PNG, GIF, WebP) behind `decode_image`, and the header probe: any bytes
//! give an image within the limits or an error, never a panic, a hang or an allocation past the limits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_core::fuzzing::image(data));
