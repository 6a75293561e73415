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
            Self::Store(StoreError::NoActiveMembers(_)) => 503,
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

/// A fix hint for a code, for the CLI and `doctor`.
pub fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "CONFIG_NOT_FOUND" => {
            "check ai_config.config_key and that the config, its model and connection are active (is_active = 1)"
        }
        "CONFIG_MISSING" | "CONFIG_INVALID" => {
            "see the configuration table in README.md; env files .env, basic.env, mysql.env, oss.env, ai.env are read from the working directory"
        }
        "PEPPER_MISSING" => "set AI_PEPPER (the pepper the keys were encrypted with)",
        "DECRYPT_FAILED" => {
            "AI_PEPPER differs from the one the key was encrypted with; set AI_PEPPER_PREVIOUS during a rotation, or re-encrypt with `ai-runner keys encrypt`"
        }
        "ENCRYPTED_KEY_INVALID" => {
            "re-encrypt the connection's key with `ai-runner keys encrypt --connection NAME`"
        }
        "DB_NOT_INITIALIZED" => "run `ai-runner db init` (or `ai-runner quickstart`)",
        "DB_UNAVAILABLE" => "check DATABASE_URL / MYSQL_* and that the server is reachable",
        "HTTP_429_RATE_LIMIT" => {
            "the provider is rate limiting; raise AI_MAX_RETRIES or put the config behind a route with a backup member"
        }
        "HTTP_5XX_SERVER_ERROR" | "NETWORK_ERROR" | "NETWORK_TIMEOUT" => {
            "the provider is failing or unreachable; check ai_connection.base_url, AI_TIMEOUT and the provider's status"
        }
        "HTTP_STATUS_ERROR" => {
            "the provider rejected the request; its message says why (key, model name, context length)"
        }
        "SCHEMA_INVALID" | "LETTER_DETECTED" => {
            "the model's answer failed validation; adjust the prompt, or the JSON_SCHEMA_ENFORCE / ENFORCE_NO_ENGLISH switches"
        }
        "MISSING_MEDIA_URL" => "pass the media URL as a variable, e.g. --var MEDIA_URL=https://...",
        "PROMPT_MISSING" | "PROMPT_INVALID" | "PARAMS_INVALID" => {
            "fix the config's prompt or param profile rows"
        }
        "INVALID_INPUT" => {
            "send {\"config_key\": \"...\", \"variables\": {...}} (run-once) or {\"project\": \"...\", \"route_key\": \"...\", \"variables\": {...}} (run-route)"
        }
        "ROUTE_NOT_FOUND" => {
            "check ai_project_v2.name (status 'active') and ai_route_v2.route_key (is_active = 1)"
        }
        "NO_ACTIVE_MEMBERS" => {
            "activate at least one ai_route_member_v2 row whose config, model and connection are active"
        }
        _ => return None,
    })
}
