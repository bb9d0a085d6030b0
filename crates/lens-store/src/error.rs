use std::path::PathBuf;

/// Everything that can go wrong in lens-store.
///
/// How the server may map them: `InvalidInput` -> 400, `NotFound` -> 404, `Conflict` -> 409, the rest -> 500
/// (`Config` at start-up: refuse to start with the message).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An S3 request failed; the message holds the operation, the key and the SDK's error chain.
    #[error("S3: {0}")]
    S3(String),
    /// The catalog database failed.
    #[error("catalog (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data does not have the shape it must have (embedding length, JSON column, ...).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The thing an operation needs does not exist (a job to update, ...). Lookups return
    /// `Ok(None)` instead.
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad input from the caller: a blob key with forbidden characters, a malformed cursor or
    /// sha256, a non-finite embedding, an impossible job state change.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The name is held by another tenant (collection names are global).
    #[error("{0}")]
    Conflict(String),
    /// The store cannot be used as configured: unreachable or missing bucket, a catalog written
    /// by a newer Lens, a file that is not a Lens catalog.
    #[error("configuration: {0}")]
    Config(String),
}

/// `Result` with [`StoreError`] as the default error.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }
}
