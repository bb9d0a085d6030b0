//! The model runtime: every model runs on its own thread behind a bounded queue ([`worker`]), and the
//! [`Registry`] holds the loaded ones by role — the embedder (CLIP) always, the captioner (BLIP) when
//! configured, the chat model (LLaMA or LLaVA, [`chat`], or an OpenAI-compatible API, [`remote_chat`]) when configured. Nothing here knows about HTTP: errors are
//! [`ModelError`]s that the server maps to answers.

pub mod captioner;
pub mod chat;
pub mod conversation;
pub mod embedder;
pub mod info;
pub mod registry;
pub mod remote_chat;
pub mod text_embedder;
pub mod worker;

pub use captioner::Captioner;
pub use chat::{ChatEvent, ChatModel, ChatPrompt, Finished};
pub use embedder::Embedder;
pub use info::{ModelInfo, Role, backend_name};
pub use registry::{Loaded, Registry};
pub use remote_chat::RemoteChat;
pub use text_embedder::TextEmbedder;
pub use worker::ModelError;
