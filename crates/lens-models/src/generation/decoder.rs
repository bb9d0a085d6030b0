//! What generation drives: a [`Decoder`] that keeps its own key/value caches, and the special tokens
//! that end and pad its sequences.

use crate::Result;

/// A decoder that generation can drive: it feeds tokens after those it has seen and keeps its own
/// key/value caches. Rows are independent sequences (for beam search, `batch × num_beams` of them,
/// the beams of one input next to each other).
pub trait Decoder {
    /// Feed each row's next tokens (the whole prompt on the first call, then one token) and return the
    /// logits of each row's last position, `rows × vocab` values, row after row.
    fn step(&mut self, tokens: &[Vec<u32>]) -> Result<Vec<f32>>;

    /// Row `i` continues what old row `rows[i]` was (beam search moving hypotheses between beams).
    fn reorder(&mut self, rows: &[usize]);

    /// Vocabulary size: the length of each row of logits.
    fn vocab_size(&self) -> usize;
}

/// The special tokens generation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Generating it ends a sequence.
    pub eos: u32,
    /// Fills sequences that ended before the longest one.
    pub pad: u32,
}
