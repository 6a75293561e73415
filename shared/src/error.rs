//! The run boundary's error: every way a run can fail, each with a stable [`Code`].
//!
//! Invariants: [`RunError::code`] is exhaustive (each part error maps its own variants, also
//! exhaustively); messages are short, safe to show to a caller and never contain secret material;
//! causes go to logs through `source()` and [`chain`]. What a code means to a caller (an HTTP
//! status, an exit code, a hint) is decided at the edges, not here.

use crate::code::Code;
use crate::config::ConfigError;
use crate::crypto::CryptoError;
use crate::ports::{ObjectError, ProviderError, StoreError};
use crate::request::BuildError;
use crate::validate::ValidationError;

/// Why a run did not produce a valid answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The caller's input could not be understood (bad JSON, missing `config_key`, bad event).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The process configuration is unusable (missing or malformed environment).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not answer, or the config does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored provider key could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The request could not be built from the stored prompt and variables.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The provider failed (after its retries).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The provider answered, but the content failed validation (after content retries).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Object storage failed (uploads, results, spill-over).
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A budget stopped the call before the provider was called.
    #[error(transparent)]
    Budget(#[from] crate::model::cost::BudgetError),
    /// The connection's circuit breaker is open: nothing was sent.
    #[error(transparent)]
    CircuitOpen(#[from] crate::model::breaker::CircuitOpen),
}

impl RunError {
    /// The stable code a caller branches on.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidInput(_) => Code::InvalidInput,
            Self::Config(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Crypto(e) => e.code(),
            Self::Build(e) => e.code(),
            Self::Provider(e) => e.code(),
            Self::Validation(e) => e.code(),
            Self::Object(e) => e.code(),
            Self::Budget(e) => e.code(),
            Self::CircuitOpen(_) => Code::CircuitOpen,
        }
    }

    /// How many seconds the caller should wait before asking again, where the failure knows
    /// (an HTTP edge's `Retry-After`): the rest of an open breaker's cooldown, rounded up.
    pub fn retry_after_secs(&self) -> Option<u64> {
        if let Self::CircuitOpen(open) = self {
            return Some(open.retry_after_ms.div_ceil(1000).max(1));
        }
        None
    }

    /// Whether trying the same thing again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidInput(_)
            | Self::Config(_)
            | Self::Crypto(_)
            | Self::Build(_)
            | Self::Budget(_) => false,
            Self::Store(e) => e.retryable(),
            Self::Provider(e) => e.retryable(),
            Self::Object(e) => e.retryable(),
            // Another member, or the same one after the cooldown, may answer.
            Self::Validation(_) | Self::CircuitOpen(_) => true,
        }
    }
}

/// A serializable `{code, message}` pair, as it appears in results and HTTP bodies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: String,
    /// Short human message; never contains secrets.
    pub message: String,
}

impl From<&RunError> for ErrorBody {
    fn from(e: &RunError) -> Self {
        Self {
            code: e.code().as_str().to_owned(),
            message: e.to_string(),
        }
    }
}

/// Renders an error with its whole cause chain, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
