//! Header metadata: EXIF in JPEG APP1, PNG eXIf and compressed text chunks, WebP EXIF chunks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lens_core::fuzzing::exif(data));
