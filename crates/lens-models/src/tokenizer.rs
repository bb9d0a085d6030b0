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
        let tokenizer_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer { message: e.to_string() };
        let mut inner = Tokenizer::from_bytes(tokenizer_json).map_err(tokenizer_error)?;
        inner.with_truncation(Some(TruncationParams { max_length, ..Default::default() })).map_err(tokenizer_error)?;
        inner.with_padding(None);
        Ok(HfTokenizer { inner, context_length: max_length })
    }

    /// Text of token ids; special tokens left out when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| Error::Tokenizer { message: e.to_string() })
    }

    /// Id of a token string, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<TokenizedText> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid_input(format!(
                "text of {} bytes is longer than the limit of {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenizer { message: e.to_string() })?;
        Ok(TokenizedText { ids: encoding.get_ids().to_vec(), attention_mask: encoding.get_attention_mask().to_vec() })
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// `pad_token` of a `tokenizer_config.json`: a string, or an `AddedToken` object with `content`.
fn pad_token_of(tokenizer_config_json: &[u8]) -> Result<Option<String>> {
    let value: serde_json::Value =
        serde_json::from_slice(tokenizer_config_json).map_err(|e| Error::config("tokenizer_config.json", e))?;
    Ok(match value.get("pad_token") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    })
}
