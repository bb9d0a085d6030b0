//! `POST /v1/chat/completions` in OpenAI's shape, so that OpenAI's SDKs (and llama.cpp's or mistral.rs's
//! clients) work unchanged: the request, the `chat.completion` answer and the `chat.completion.chunk`s of a
//! streamed one (server-sent events, ended by `data: [DONE]`).
//!
//! Fields OpenAI defines that Lens does not act on are accepted when they ask for the default (`n: 1`) and
//! refused otherwise, never ignored silently; unknown fields are ignored, as OpenAI's API ignores them.

use serde::{Deserialize, Serialize};

/// The request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatCompletionRequest {
    /// The chat model's id (`GET /v1/models`), or its name.
    pub model: String,
    /// The conversation, oldest first; the last is usually the user's.
    pub messages: Vec<ChatMessageIn>,
    /// Most tokens to generate (`max_completion_tokens` wins when both are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Fewest tokens to generate before an end-of-sequence token may end the answer (vLLM's extension of the
    /// API, by its name; at most the tokens asked for). Stop strings still end it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2; 0 or absent: greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Seed of sampling: the same request and seed give the same text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Up to 4 strings that end the answer (left out of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Answer with server-sent `chat.completion.chunk`s as tokens are produced.
    #[serde(default)]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// The end user, kept with the stored chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `false`: keep no history of this request (`GET /v1/chats`); absent or `true`: kept, unless the server
    /// keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Lens's extension: passages retrieved from knowledge-base collections for the last user message,
    /// given to the model in a system turn and returned as `lens.sources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<super::ChatRetrieval>,
    /// Choices to generate: only 1 is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamOptions {
    /// A last chunk, before `[DONE]`, carries the usage (its `choices` empty).
    #[serde(default)]
    pub include_usage: bool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessageIn {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    /// Text, or parts (`text`, `image_url`); `null` only for an assistant turn.
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    /// An image: a `data:image/...;base64,` URL, an `http(s)` URL (fetched by the server), or a stored
    /// image as `lens://images/{id}`.
    ImageUrl {
        image_url: ImageUrl,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageUrl {
    pub url: String,
    /// OpenAI's `auto`/`low`/`high`: accepted; LLaVA-1.5 sees every image at its one resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Token counts of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// The prompt's tokens after the chat template, image placeholders expanded.
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// The answer when `stream` is false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatCompletion {
    /// `chatcmpl-…`, the same in every chunk of a streamed answer.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    /// The passages retrieved for the request's `lens` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<super::ChatSources>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `stop` (an end-of-sequence token or a stop string) or `length` (`max_tokens` reached).
    pub finish_reason: String,
    /// Always null: log-probabilities are not reported.
    pub logprobs: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    pub content: String,
}

/// One server-sent event of a streamed answer (`data: {…}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    pub created: u64,
    pub model: String,
    /// One choice; empty in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the last chunk, and only with `stream_options.include_usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Only in the first chunk, for a request with a `lens` field: the passages retrieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens: Option<super::ChatSources>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    /// Set in the choice's last chunk.
    pub finish_reason: Option<String>,
    pub logprobs: Option<serde_json::Value>,
}

/// What a chunk adds: the role in the first, text in the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_requests_parse_with_text_and_image_parts() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"lens://images/abc","detail":"low"}}]},
            {"role":"assistant","content":null}],
            "max_tokens":5,"stop":"\n","stream":true,"stream_options":{"include_usage":true},"logit_bias":{}}"#;
        let r: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.stop.clone().unwrap().into_vec(), vec!["\n".to_string()]);
        assert!(r.stream && r.stream_options.unwrap().include_usage);
        let Some(MessageContent::Parts(parts)) = &r.messages[1].content else { panic!("parts") };
        assert!(matches!(&parts[1], ContentPart::ImageUrl { image_url } if image_url.url == "lens://images/abc"));
        assert_eq!(r.messages[2].content, None);
    }

    #[test]
    fn chunks_leave_out_what_they_do_not_carry() {
        let chunk = ChatCompletionChunk {
            id: "chatcmpl-1".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta { role: None, content: Some("Hi".into()) },
                finish_reason: None,
                logprobs: None,
            }],
            usage: None,
            lens: None,
        };
        let json = serde_json::to_value(&chunk).unwrap();
        assert_eq!(json["choices"][0]["delta"], serde_json::json!({"content": "Hi"}));
        assert_eq!(json["choices"][0]["finish_reason"], serde_json::Value::Null);
        assert!(json.get("usage").is_none());
    }
}
