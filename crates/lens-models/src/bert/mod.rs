//! BERT-family encoders: the building blocks BLIP's text decoder shares ([`layers`]), the encoder
//! ([`model::BertModel`]), and sentence embeddings as sentence-transformers publishes them for MiniLM and
//! its kin ([`sentence::SentenceEmbedder`]): the knowledge base's text embedder.

pub mod config;
pub mod layers;
pub mod model;
pub mod sentence;

pub use config::BertConfig;
pub use model::BertModel;
pub use sentence::{Pooling, SentenceEmbedder, SentenceFiles};
