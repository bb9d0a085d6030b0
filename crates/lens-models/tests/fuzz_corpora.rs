//! The model file parsers' fuzz corpora (`fuzz/corpus/gguf`, `fuzz/corpus/artifact`), replayed through
//! [`lens_models::fuzzing`] and mutated (see lens-core's `fuzz_corpora` test). Native only.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::replay_and_mutate;

#[test]
fn gguf() {
    replay_and_mutate("gguf", 20_000, lens_models::fuzzing::gguf);
}

#[test]
fn artifact() {
    replay_and_mutate("artifact", 5_000, lens_models::fuzzing::artifact);
}
