//! What a conversation is, for every chat provider: the prompt that goes in, the events that stream out, and
//! how the answer ended. The local model ([`super::chat`]) and the remote provider ([`super::remote_chat`])
//! speak these.

use lens_core::image::RgbImage;
use lens_models::chat_template::ChatMessage;
use lens_models::llama::Completion;

/// What a chat request streams back.
#[derive(Debug)]
pub enum ChatEvent {
    /// The prompt was rendered, fits the context, and generation begins.
    Started { prompt_tokens: usize },
    /// The next piece of the answer (whole characters, stop strings left out).
    Text(String),
    /// The end: the whole answer (its text is the pieces put together).
    Done(Finished),
}

/// How an answer ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub text: String,
    /// `stop`, `length`, `cancelled` (the client went away), or what a remote provider said.
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl From<Completion> for Finished {
    fn from(c: Completion) -> Self {
        Finished {
            finish_reason: c.finish_reason.as_str().to_string(),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.token_ids.len(),
            text: c.text,
        }
    }
}

/// A conversation to answer.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    /// The turns; image parts stand where the images go, in order.
    pub messages: Vec<ChatMessage>,
    /// One per image part.
    pub images: Vec<RgbImage>,
}
