//! Text tokenizers. [`TextTokenizer`] is what models consume; [`HfTokenizer`] reads a checkpoint's
//! `tokenizer.json` (HuggingFace `tokenizers` format) and runs it with the `tokenizers` crate itself,
//! the Rust core of the reference implementation, so ids match the reference by construction.

use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{Error, Result};

/// Longest text accepted, in bytes: far more than any model's context holds, small enough that
/// tokenizing it costs nothing noticeable. Longer input is refused rather than silently cut.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Token ids for one text and which of them are real (1) or padding (0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

/// Turns text into model input ids of a fixed context length.
pub trait TextTokenizer {
    /// Tokenize one text with the model's special tokens, truncated to [`Self::context_length`] and, for
    /// fixed-length tokenizers, padded to it.
    fn encode(&self, text: &str) -> Result<TokenizedText>;

    /// Length of every encoded sequence (the longest, for unpadded tokenizers).
    fn context_length(&self) -> usize;

    /// Tokenize several texts.
    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

/// A `tokenizer.json` tokenizer, padded and truncated to a fixed length as CLIP's processor does
/// (`padding="max_length", truncation=True`).
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer").field("context_length", &self.context_length).finish_non_exhaustive()
    }
}

impl HfTokenizer {
    /// Build from `tokenizer.json` and, when the checkpoint has one, `tokenizer_config.json` (which names
    /// the padding token). Without it, `fallback_pad` names the padding token.
    pub fn from_bytes(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        context_length: usize,
        fallback_pad: &str,
    ) -> Result<Self> {
        let tokenizer_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer { message: e.to_string() };
        let mut inner = Tokenizer::from_bytes(tokenizer_json).map_err(tokenizer_error)?;
        let pad_token = match tokenizer_config_json {
            Some(bytes) => pad_token_of(bytes)?.unwrap_or_else(|| fallback_pad.to_string()),
            None => fallback_pad.to_string(),
        };
        let pad_id = inner.token_to_id(&pad_token).ok_or_else(|| Error::Tokenizer {
            message: format!("padding token `{pad_token}` is not in the vocabulary"),
        })?;
        inner
            .with_truncation(Some(TruncationParams { max_length: context_length, ..Default::default() }))
            .map_err(tokenizer_error)?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(context_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(HfTokenizer { inner, context_length })
    }

    /// A tokenizer for prompts: the model's special tokens, truncated to `max_length`, never padded.
    pub fn unpadded(tokenizer_json: &[u8], max_length: usize) -> Result<Self> {
        let inner = Tokenizer::from_bytes(tokenizer_json).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Self::from_tokenizer(inner, max_length)
    }

    /// [`Self::unpadded`] for a tokenizer built in code (a GGUF file's, [`crate::llama::gguf`]).
    pub fn from_tokenizer(mut inner: Tokenizer, max_length: usize) -> Result<Self> {
        let tokenizer_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer { message: e.to_string() };
        inner.with_truncation(Some(TruncationParams { max_length, ..Default::default() })).map_err(tokenizer_error)?;
        inner.with_padding(None);
        Ok(HfTokenizer { inner, context_length: max_length })
    }

    /// Text of token ids; special tokens left out when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| Error::Tokenizer { message: e.to_string() })
    }

    /// Ids of `text` as `tokenizer(text, add_special_tokens=...)` gives them: a prompt rendered by a chat
    /// template already holds its BOS, so it is encoded without special tokens.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        check_text_len(text)?;
        let encoding =
            self.inner.encode(text, add_special_tokens).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Id of a token string, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<TokenizedText> {
        check_text_len(text)?;
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok(TokenizedText { ids: encoding.get_ids().to_vec(), attention_mask: encoding.get_attention_mask().to_vec() })
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

fn check_text_len(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid_input(format!(
            "text of {} bytes is longer than the limit of {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// Generated ids turned into text as they come, each piece only once it is whole: a character split over
/// several byte-fallback tokens, or a word whose leading space depends on the token before, comes out when
/// the text stops changing under it.
///
/// The method of text-generation-inference's `decode_token`: decode a window of the last ids with and
/// without the newest, and hand out what the newest added, unless that ends in U+FFFD (bytes of a character
/// still incomplete). The pieces put together are `decode(ids)`, with [`DecodeStream::finish`] handing out
/// what an incomplete end decodes to.
#[derive(Debug)]
pub struct DecodeStream<'a> {
    tokenizer: &'a HfTokenizer,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix: usize,
    /// Ids before this were handed out as text.
    read: usize,
}

impl<'a> DecodeStream<'a> {
    pub fn new(tokenizer: &'a HfTokenizer, skip_special_tokens: bool) -> Self {
        DecodeStream { tokenizer, skip_special_tokens, ids: Vec::new(), prefix: 0, read: 0 }
    }

    /// Add one id; the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read], self.skip_special_tokens)?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..], self.skip_special_tokens)?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(new_suffix(&before, &now).to_string()))
    }

    /// What is left when no more ids come (an incomplete character decodes to U+FFFD, as in `decode`); it
    /// counts as handed out.
    pub fn finish(&mut self) -> Result<String> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read], self.skip_special_tokens)?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..], self.skip_special_tokens)?;
        (self.prefix, self.read) = (self.read, self.ids.len());
        Ok(new_suffix(&before, &now).to_string())
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// `now` past `before`: the text the newest ids added. Decoders only append, so `before` is a prefix of
/// `now`; should one ever rewrite the end, the part past the common prefix is what is new.
fn new_suffix<'t>(before: &str, now: &'t str) -> &'t str {
    if let Some(rest) = now.strip_prefix(before) {
        return rest;
    }
    let common = before.char_indices().zip(now.chars()).take_while(|((_, a), b)| a == b).count();
    let at = now.char_indices().nth(common).map(|(i, _)| i).unwrap_or(now.len());
    &now[at..]
}

/// `pad_token` of a `tokenizer_config.json`.
fn pad_token_of(tokenizer_config_json: &[u8]) -> Result<Option<String>> {
    let value: serde_json::Value =
        serde_json::from_slice(tokenizer_config_json).map_err(|e| Error::config("tokenizer_config.json", e))?;
    Ok(special_token(&value, "pad_token"))
}

/// A special token named in a `tokenizer_config.json` (`pad_token`, `bos_token`, ...): a string, or an
/// `AddedToken` object with `content`.
pub(crate) fn special_token(tokenizer_config: &serde_json::Value, key: &str) -> Option<String> {
    match tokenizer_config.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}
