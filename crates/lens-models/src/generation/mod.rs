//! Autoregressive generation shared by every decoder in this crate: greedy search, beam search and
//! top-k / top-p sampling over a [`Decoder`] that keeps its own key/value cache.
//!
//! Reference: `GenerationMixin` in `transformers/generation/utils.py` and the logits processors in
//! `transformers/generation/logits_process.py` (transformers v5.23.0). Greedy and beam search return the
//! very token ids the reference returns; sampling is seeded and reproducible, but its random stream is
//! our own (not torch's).
//!
//! - [`GenerationConfig`] and [`Sampling`] (`config.rs`): what to generate, with the reference's names
//!   and defaults;
//! - [`Decoder`] and [`SpecialTokens`] (`decoder.rs`): what generation drives;
//! - [`generate`] (`search.rs`): greedy and sampled search, and the dispatch to beam search
//!   (`beam.rs`); [`TokenPicker`] picks one sequence's tokens for callers that run the model step by step
//!   themselves (streaming, sequences decoded together); the logits processors are in `logits.rs`;
//! - [`StopStrings`] (`stop.rs`): stop strings found in text that arrives in pieces.

mod beam;
mod config;
mod decoder;
mod logits;
mod search;
mod stop;

pub use config::{GenerationConfig, MAX_BEAMS, MAX_NEW_TOKENS, Sampling};
pub use decoder::{Decoder, SpecialTokens};
pub use search::{TokenPicker, generate};
pub use stop::{MAX_STOP_BYTES, MAX_STOP_STRINGS, Stop, StopStrings};
