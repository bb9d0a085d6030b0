//! What is known of a loaded model, whatever its role.

use lens_models::identity::ModelIdentity;

/// What a model does in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// CLIP: image and text embeddings for search.
    Embedder,
    /// BLIP: captions.
    Captioner,
    /// LLaMA or LLaVA: chat completions.
    Chat,
    /// A sentence embedder (BERT family): the knowledge base.
    TextEmbedder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Embedder => "embedder",
            Role::Captioner => "captioner",
            Role::Chat => "chat",
            Role::TextEmbedder => "text_embedder",
        }
    }
}

/// What is known of a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub role: Role,
    /// Embeddings are stored under `identity.id`; captions are cached under it.
    pub identity: ModelIdentity,
    /// The burn backend's short name (`NdArray`, `Wgpu`, `Cuda`).
    pub backend: &'static str,
    pub device: String,
    /// The vision tower's input side (0: the model sees no images).
    pub image_size: usize,
    /// Embedders: the embedding's length.
    pub dims: Option<usize>,
    /// Embedders: the text tower's context; chat models: the decoder's.
    pub max_text_tokens: Option<usize>,
}

impl ModelInfo {
    pub fn id(&self) -> &str {
        &self.identity.id
    }
}

/// The burn backend's short name (`NdArray`, `Wgpu`, `Cuda`, ...) of backend type `B`.
pub fn backend_name<B>() -> &'static str {
    std::any::type_name::<B>().split('<').next().unwrap_or("burn").rsplit("::").next().unwrap_or("burn")
}
