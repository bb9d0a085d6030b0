//! One answer being generated, step by step, as text: [`Sequence`] holds a prompt's own KV cache, its
//! [`TokenPicker`] and its text so far, and [`step_together`] advances several sequences in one forward pass
//! (continuous batching): a sequence's first step runs its whole prompt (the prefill), each later one its last
//! token; sequences of any lengths join and leave between steps, each decoding as it would alone.
//!
//! A pipeline makes a sequence ([`crate::llama::LlamaPipeline::sequence`],
//! [`crate::llava::LlavaPipeline::sequence`]). Each step picks one token per sequence and hands back the new
//! text: every piece whole (a character spread over byte tokens comes when complete), special tokens left out,
//! nothing after a stop string nor the stop string itself. The ids are those of
//! [`LlamaForCausalLM::generate`] for the same prompt and settings (greedy or seeded sampling), any of the
//! checkpoint's EOS ids ending the answer.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::cache::KvCache;
use super::decoder::{LlamaSpecialTokens, forbid_early_eos};
use super::model::LlamaForCausalLM;
use crate::generation::{GenerationConfig, Stop, StopStrings, TokenPicker};
use crate::tokenizer::{DecodeStream, HfTokenizer};
use crate::{Error, Result};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence id was generated (it is the last of `token_ids`).
    Stop,
    /// `max_new_tokens` were generated.
    Length,
    /// The caller's callback asked to stop.
    Cancelled,
}

impl FinishReason {
    /// `"stop"` or `"length"`, as OpenAI-style APIs name them.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// One completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated tokens decoded, special tokens left out.
    pub text: String,
    /// The generated ids only (an ending EOS id included).
    pub token_ids: Vec<u32>,
    /// Length of the tokenized prompt, BOS included.
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
}

/// What one step gave one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// New text (often one token's, sometimes none while a character or a possible stop string is incomplete).
    pub text: String,
    /// The answer ended with this step: [`Sequence::completion`] has its whole text and ids.
    pub done: bool,
}

/// One prompt's generation, advanced by [`step_together`] (or [`Sequence::prefill`] alone, first).
pub struct Sequence<'p, B: Backend> {
    model: &'p LlamaForCausalLM<B>,
    /// One row, `prompt + max_new_tokens` positions.
    cache: KvCache<B>,
    picker: TokenPicker,
    /// Every EOS id, each once; the first is the one the picker forbids before `min_new_tokens`.
    eos: Vec<u32>,
    max_new_tokens: usize,
    min_new_tokens: usize,
    /// `inputs_embeds` of the prompt (`[1, prompt, hidden]`: LLaVA's, image features in place) until the
    /// prefill; `None` after it, or when the prompt's own token embeddings are fed.
    prompt_embeds: Option<Tensor<B, 3>>,
    text: TextStream<'p>,
    finish: Option<FinishReason>,
}

impl<'p, B: Backend> Sequence<'p, B> {
    /// A sequence continuing `prompt` (ids; `prompt_embeds` its input embeddings when they are not the ids'
    /// own), decoded by `tokenizer`, ending at any of `special.eos`, a stop string or `max_new_tokens`. The
    /// caller checked the prompt and `config` with [`super::pipeline::check_fits`] (before any vision tower
    /// runs).
    pub(crate) fn new(
        model: &'p LlamaForCausalLM<B>,
        prompt: &[u32],
        prompt_embeds: Option<Tensor<B, 3>>,
        special: &LlamaSpecialTokens,
        stop_strings: &[String],
        config: &GenerationConfig,
        tokenizer: &'p HfTokenizer,
    ) -> Result<Self> {
        if config.num_beams > 1 {
            return Err(Error::invalid_input("beam search cannot stream tokens: use num_beams = 1"));
        }
        if let Some(embeds) = &prompt_embeds
            && embeds.dims()[..2] != [1, prompt.len()]
        {
            return Err(Error::invalid_input("prompt embeddings do not match the prompt"));
        }
        let eos = special.unique_eos();
        Ok(Sequence {
            model,
            cache: model.new_cache(1, prompt.len() + config.max_new_tokens),
            picker: TokenPicker::new(prompt, eos.first().copied().unwrap_or(u32::MAX), config),
            eos,
            max_new_tokens: config.max_new_tokens,
            min_new_tokens: config.min_new_tokens,
            prompt_embeds,
            text: TextStream::new(tokenizer, stop_strings)?,
            finish: None,
        })
    }

    /// Runs the prompt through the model and picks the first token (a step of this sequence alone).
    pub fn prefill(&mut self) -> Result<Step> {
        if self.prefilled() {
            return Err(Error::invalid_input("the sequence was prefilled already"));
        }
        step_together(&mut [self])?.remove(0)
    }

    /// This step's input embeddings: the prompt's (first step) or the last token's.
    ///
    /// # Shapes
    /// - output: `[1, positions, hidden]`
    fn step_embeds(&self) -> Result<Tensor<B, 3>> {
        match (&self.prompt_embeds, self.prefilled()) {
            (_, true) => self.model.model.embed(&[vec![self.picker.last()]]),
            (Some(embeds), false) => Ok(embeds.clone()),
            (None, false) => self.model.model.embed(&[self.picker.prompt().to_vec()]),
        }
    }

    /// Whether the prompt has run: every step, the prefill included, picks a token.
    fn prefilled(&self) -> bool {
        self.picker.generated() > 0
    }

    /// Whether the answer ended (EOS, a stop string, `max_new_tokens`).
    pub fn is_done(&self) -> bool {
        self.finish.is_some()
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.picker.generated()
    }

    /// Tokens of the prompt.
    pub fn prompt_tokens(&self) -> usize {
        self.picker.prompt().len()
    }

    /// The answer so far; `Cancelled` when it had not ended.
    pub fn completion(&self) -> Completion {
        Completion {
            text: self.text.text.clone(),
            token_ids: self.picker.generated_ids().to_vec(),
            prompt_tokens: self.picker.prompt().len(),
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
        }
    }

    /// Generates to the end alone, handing each non-empty piece of text to `on_text`; `Break` ends it at once
    /// (`Cancelled`). The pieces put together are the completion's text.
    pub fn run(mut self, on_text: &mut dyn FnMut(&str) -> std::ops::ControlFlow<()>) -> Result<Completion> {
        let mut step = self.prefill()?;
        loop {
            let stopped = !step.text.is_empty() && on_text(&step.text).is_break();
            if step.done || stopped {
                return Ok(self.completion());
            }
            step = step_together(&mut [&mut self])?.remove(0)?;
        }
    }

    /// Picks the next token from its logits and turns it into text.
    fn take(&mut self, logits: &mut [f32]) -> Result<Step> {
        forbid_early_eos(logits, self.eos.get(1..).unwrap_or(&[]), self.generated(), self.min_new_tokens);
        let token = self.picker.choose(logits);
        self.picker.push(token);
        let (mut text, stop_found) = self.text.push(token)?;
        let eos = self.eos.contains(&token);
        if stop_found {
            self.finish = Some(FinishReason::Stop);
        } else if eos || self.generated() >= self.max_new_tokens {
            let (rest, reason) = self.text.finish(eos)?;
            text.push_str(&rest);
            self.finish = Some(reason);
        }
        Ok(Step { text, done: self.finish.is_some() })
    }
}

/// One step of every sequence in `rows` (none ended, all of one model) in one forward pass: the prompt of each
/// that was not prefilled yet, the last token of the others, each attending to its own cache. Returns each
/// row's [`Step`], or the error that ended that row (its text could not be decoded). When the forward pass
/// fails, no sequence has moved (their caches may hold unused positions past their length).
pub fn step_together<B: Backend>(rows: &mut [&mut Sequence<'_, B>]) -> Result<Vec<Result<Step>>> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let model = first.model;
    for row in rows.iter() {
        if !std::ptr::eq(row.model, model) {
            return Err(Error::invalid_input("sequences of different models cannot be stepped together"));
        }
        if row.is_done() {
            return Err(Error::invalid_input("only sequences that have not ended can be stepped"));
        }
    }
    let embeds = rows.iter().map(|r| r.step_embeds()).collect::<Result<Vec<_>>>()?;
    let lens: Vec<usize> = embeds.iter().map(|e| e.dims()[1]).collect();
    // The last position of each segment: where its next token's logits are.
    let last: Vec<i64> = lens
        .iter()
        .scan(0, |end, &len| {
            *end += len;
            Some(*end as i64 - 1)
        })
        .collect();
    let device = embeds[0].device();
    let mut caches: Vec<&mut KvCache<B>> = rows.iter_mut().map(|r| &mut r.cache).collect();
    let hidden = model.model.forward_segments(Tensor::cat(embeds, 1), &mut caches, &lens)?;
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [lens.len()]), &device);
    let mut logits = host(model.logits(hidden.select(1, index)))?;
    for row in rows.iter_mut() {
        row.prompt_embeds = None; // prefilled: each row picks its token below
    }
    Ok(rows.iter_mut().zip(logits.chunks_exact_mut(model.vocab_size())).map(|(row, scores)| row.take(scores)).collect())
}

/// The values of a tensor, on the host.
fn host<B: Backend>(t: Tensor<B, 3>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().to_vec().map_err(|e| Error::invalid_input(format!("{e:?}")))
}

/// Generated ids turned into text as they come: decoded incrementally, stop strings held back until they are
/// ruled out and cut where found.
struct TextStream<'t> {
    detokenizer: DecodeStream<'t>,
    stops: StopStrings,
    /// Everything handed out so far.
    text: String,
}

impl<'t> TextStream<'t> {
    fn new(tokenizer: &'t HfTokenizer, stop_strings: &[String]) -> Result<Self> {
        Ok(TextStream {
            detokenizer: DecodeStream::new(tokenizer, true),
            stops: StopStrings::new(stop_strings)?,
            text: String::new(),
        })
    }

    /// The text `token` adds, and whether a stop string was found (the answer ends there).
    fn push(&mut self, token: u32) -> Result<(String, bool)> {
        let piece = self.detokenizer.push(token)?.unwrap_or_default();
        Ok(match self.stops.push(&piece) {
            Stop::Continue(done) => (self.hand_out(done), false),
            Stop::Found(done) => (self.hand_out(done), true),
        })
    }

    /// The text still held at the end of generation (`eos`: it ended on an EOS id, else at its length), and why
    /// it ended: a stop string may still be found in what the decoder held back.
    fn finish(&mut self, eos: bool) -> Result<(String, FinishReason)> {
        let rest = self.detokenizer.finish()?;
        Ok(match self.stops.push(&rest) {
            Stop::Found(done) => (self.hand_out(done), FinishReason::Stop),
            Stop::Continue(done) => {
                let rest = done + &self.stops.finish();
                (self.hand_out(rest), if eos { FinishReason::Stop } else { FinishReason::Length })
            }
        })
    }

    fn hand_out(&mut self, piece: String) -> String {
        self.text.push_str(&piece);
        piece
    }
}
