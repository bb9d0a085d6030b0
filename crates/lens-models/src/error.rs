//! Errors of the model crate: loading checkpoints, tokenizing, running models.

/// Everything that can go wrong while loading or running a Lens model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("checkpoint has no tensor `{name}`")]
    MissingTensor { name: String },

    /// A tensor exists but its shape is not what the config implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?} (does config.json match the weights?)")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },

    /// A tensor is stored in a dtype the loader cannot convert to f32.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },

    /// The safetensors file itself is malformed.
    #[error("invalid safetensors data{}: {message}", file.as_deref().map(|f| format!(" in {f}")).unwrap_or_default())]
    Safetensors { file: Option<String>, message: String },

    /// `config.json`, `preprocessor_config.json`, `tokenizer_config.json` or an index file could not be read.
    #[error("invalid {file}: {message}")]
    Config { file: String, message: String },

    /// The tokenizer definition could not be loaded or applied.
    #[error("tokenizer: {message}")]
    Tokenizer { message: String },

    /// A caller passed something the model cannot take (empty batch, wrong pixel count, ...).
    #[error("invalid input: {message}")]
    InvalidInput { message: String },

    /// A file of the model directory could not be read.
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A model artifact (`lens models quantize`) is malformed, corrupted or of another version.
    #[error("invalid model artifact: {message}")]
    Artifact { message: String },

    /// Image decoding or pre-processing failed.
    #[error(transparent)]
    Image(#[from] lens_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(file: &str, err: impl std::fmt::Display) -> Self {
        Error::Config { file: file.to_string(), message: err.to_string() }
    }
    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput { message: message.into() }
    }
}
