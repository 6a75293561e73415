//! The run boundary's error: every way a run can fail, each with a stable code.
//!
//! Invariants: `code()` is exhaustive and its strings never change (callers branch on them; the
//! predecessor's codes are kept verbatim, see compat.md section 5). Messages are short, safe to
//! show to a caller and never contain secret material; causes go to logs through `source()`.
//! Conversions to HTTP statuses, Lambda error types and exit codes happen at the edges.

use crate::crypto::CryptoError;
use crate::provider::ProviderError;
use crate::request::BuildError;
use crate::store::StoreError;
use crate::validate::ValidationError;

/// Why a run did not produce a valid answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The caller's input could not be understood (bad JSON, missing `config_key`, bad event).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The process configuration is unusable (missing or malformed environment).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
}

impl RunError {
    /// The stable SCREAMING_SNAKE code a caller branches on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "INVALID_INPUT",
            Self::Config(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::Crypto(e) => e.code(),
            Self::Build(e) => e.code(),
            Self::Provider(e) => e.code(),
            Self::Validation(e) => e.code(),
        }
    }

    /// Whether trying the same thing again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidInput(_) | Self::Config(_) | Self::Crypto(_) | Self::Build(_) => false,
            Self::Store(e) => e.retryable(),
            Self::Provider(e) => e.retryable(),
            Self::Validation(_) => true,
        }
    }

    /// The HTTP status an API Gateway caller sees for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidInput(_) => 400,
            Self::Build(_) => 400,
            Self::Store(StoreError::ConfigNotFound(_)) => 404,
            Self::Store(StoreError::RouteNotFound { .. }) => 404,
            Self::Store(_) | Self::Config(_) | Self::Crypto(_) => 500,
            Self::Validation(_) => 422,
            Self::Provider(_) => 502,
        }
    }

    /// The process exit code the CLI uses: 1 for a run that failed, 2 for bad input or setup.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Provider(_) | Self::Validation(_) => 1,
            _ => 2,
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
            code: e.code().to_owned(),
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
