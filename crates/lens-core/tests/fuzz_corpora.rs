//! The fuzz targets' corpora (`fuzz/corpus/<target>/`, grown by `scripts/fuzz.sh` runs and committed),
//! replayed through the same entry points ([`lens_core::fuzzing`]), then random mutations of them: every
//! test run fuzzes a little, without instrumentation. Native only (the corpora are files).
#![cfg(not(target_arch = "wasm32"))]

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::replay_and_mutate;

#[test]
fn image() {
    replay_and_mutate("image", 20_000, lens_core::fuzzing::image);
}

#[test]
fn exif() {
    replay_and_mutate("exif", 50_000, lens_core::fuzzing::exif);
}

#[test]
fn request_json() {
    replay_and_mutate("request_json", 100_000, lens_core::fuzzing::request_json);
}

#[test]
fn documents() {
    replay_and_mutate("documents", 100_000, lens_core::fuzzing::documents);
}
