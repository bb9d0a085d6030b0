//! The model runtime: every model runs on its own thread behind a bounded queue ([`worker`]), and the
//! [`Registry`] holds the loaded ones by role — the embedder (CLIP) always, the captioner (BLIP) when
//! configured; a generator is the next role. Nothing here knows about HTTP: errors are
//! [`ModelError`]s that the server maps to answers.

pub mod captioner;
pub mod embedder;
pub mod info;
pub mod registry;
pub mod worker;

pub use captioner::Captioner;
pub use embedder::Embedder;
pub use info::{ModelInfo, Role, backend_name};
pub use registry::{Loaded, Registry};
pub use worker::ModelError;
