//! The loaded models by role.

use super::captioner::Captioner;
use super::chat::ChatModel;
use super::embedder::Embedder;
use super::info::{ModelInfo, Role};
use super::text_embedder::TextEmbedder;

/// A running model and what is known of it.
pub struct Loaded<M> {
    pub model: M,
    pub info: ModelInfo,
}

/// The loaded models, by role: the embedder always, the captioner, the chat model and the text embedder
/// when configured.
pub struct Registry {
    embedder: Loaded<Embedder>,
    captioner: Option<Loaded<Captioner>>,
    chat: Option<Loaded<ChatModel>>,
    text_embedder: Option<Loaded<TextEmbedder>>,
}

impl Registry {
    pub fn new(
        embedder: Loaded<Embedder>,
        captioner: Option<Loaded<Captioner>>,
        chat: Option<Loaded<ChatModel>>,
        text_embedder: Option<Loaded<TextEmbedder>>,
    ) -> Self {
        Self { embedder, captioner, chat, text_embedder }
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder.model
    }

    /// The embedder's info; its `dims` is always set.
    pub fn embedder_info(&self) -> &ModelInfo {
        &self.embedder.info
    }

    /// The embedding model's id: the key of every stored image embedding.
    pub fn embedding_model(&self) -> &str {
        self.embedder.info.id()
    }

    /// The embedding length.
    pub fn dims(&self) -> usize {
        self.embedder.info.dims.expect("an embedder reports its dims")
    }

    pub fn captioner(&self) -> Option<&Loaded<Captioner>> {
        self.captioner.as_ref()
    }

    pub fn chat(&self) -> Option<&Loaded<ChatModel>> {
        self.chat.as_ref()
    }

    pub fn text_embedder(&self) -> Option<&Loaded<TextEmbedder>> {
        self.text_embedder.as_ref()
    }

    /// The model in `role`, if loaded.
    pub fn info(&self, role: Role) -> Option<&ModelInfo> {
        match role {
            Role::Embedder => Some(&self.embedder.info),
            Role::Captioner => self.captioner.as_ref().map(|c| &c.info),
            Role::Chat => self.chat.as_ref().map(|c| &c.info),
            Role::TextEmbedder => self.text_embedder.as_ref().map(|c| &c.info),
        }
    }

    /// Every loaded model, the embedder first.
    pub fn infos(&self) -> impl Iterator<Item = &ModelInfo> {
        std::iter::once(&self.embedder.info)
            .chain(self.captioner.as_ref().map(|c| &c.info))
            .chain(self.chat.as_ref().map(|c| &c.info))
            .chain(self.text_embedder.as_ref().map(|c| &c.info))
    }
}
