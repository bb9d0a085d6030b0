//! What every service error shares: a stable [`ErrorCode`] (the HTTP layer turns it into a status, job
//! records keep it with the message) and a message a client may read. Each service has its own error
//! enum; the causes they have in common (bad image bytes, the catalog, the model queue) are classified
//! here once.

use lens_core::api::ErrorCode;
use lens_store::StoreError;

use crate::runtime::ModelError;

/// A service error's stable code and client-facing message.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> ErrorCode;

    /// What the client reads. The HTTP layer never shows it for [`ErrorCode::Internal`] (it logs it).
    fn public_message(&self) -> String {
        self.to_string()
    }

    /// What a client may see: the message, or for an internal error a pointer to the log.
    fn client_message(&self) -> String {
        if self.code() == ErrorCode::Internal {
            "internal error (see the server log)".to_string()
        } else {
            self.public_message()
        }
    }

    /// The whole story, for logs and job records: `code: message`.
    fn describe(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

/// The models are loading or the index is being built.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the model is loading or the index is being built; retry shortly")]
pub struct NotReady;

impl Coded for NotReady {
    fn code(&self) -> ErrorCode {
        ErrorCode::NotReady
    }
}

impl Coded for lens_core::api::RequestError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

/// Bad image bytes are the client's fault: each kind has its own code.
impl Coded for lens_core::Error {
    fn code(&self) -> ErrorCode {
        lens_core::Error::code(self)
    }
}

impl Coded for lens_models::Error {
    fn code(&self) -> ErrorCode {
        match self {
            lens_models::Error::InvalidInput { .. } | lens_models::Error::Tokenizer { .. } => ErrorCode::InvalidRequest,
            lens_models::Error::Image(e) => e.code(),
            _ => ErrorCode::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            lens_models::Error::InvalidInput { message } => message.clone(),
            lens_models::Error::Tokenizer { message } => format!("text: {message}"),
            other => other.to_string(),
        }
    }
}

impl Coded for ModelError {
    fn code(&self) -> ErrorCode {
        match self {
            ModelError::Overloaded => ErrorCode::Overloaded,
            ModelError::Model(e) => e.code(),
            ModelError::Stopped | ModelError::Panicked(_) => ErrorCode::Internal,
            ModelError::Upstream(_) => ErrorCode::UpstreamFailed,
            ModelError::UpstreamTimeout(_) => ErrorCode::UpstreamTimeout,
        }
    }

    fn public_message(&self) -> String {
        match self {
            ModelError::Model(e) => e.public_message(),
            other => other.to_string(),
        }
    }
}

impl Coded for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            // e.g. a malformed page cursor
            StoreError::InvalidInput(_) => ErrorCode::InvalidRequest,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            _ => ErrorCode::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            StoreError::InvalidInput(message) | StoreError::NotFound(message) | StoreError::Conflict(message) => {
                message.clone()
            }
            other => other.to_string(),
        }
    }
}

impl Coded for lens_index::IndexError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// Implements [`Coded`] for a service error enum whose variants each wrap one coded cause (listed),
/// plus any own variants given as `Variant(..) => code`.
macro_rules! coded_enum {
    ($ty:ident { wraps: [$($wrap:ident),* $(,)?] $(, own: [$($pat:pat => $code:expr),* $(,)?])? }) => {
        impl $crate::services::errors::Coded for $ty {
            fn code(&self) -> lens_core::api::ErrorCode {
                #[allow(unused_imports)]
                use $crate::services::errors::Coded as _;
                match self {
                    $($ty::$wrap(e) => e.code(),)*
                    $($($pat => $code,)*)?
                }
            }

            fn public_message(&self) -> String {
                #[allow(unused_imports)]
                use $crate::services::errors::Coded as _;
                match self {
                    $($ty::$wrap(e) => e.public_message(),)*
                    #[allow(unreachable_patterns)]
                    other => other.to_string(),
                }
            }
        }
    };
}
pub(crate) use coded_enum;
