//! How a command fails: a stable code, a short message, an exit code, and a fix hint.
//!
//! Exit codes: 0 success, 1 the run (or the check) failed, 2 bad input or setup. [`exit_code`]
//! maps a code's class exhaustively ([`class_exit_code`]), with the few codes that mean
//! something special written out; [`hint`] is an exhaustive match over [`Code`], so a new code
//! does not compile until it says whether it has a hint. Messages never hold secrets; causes go
//! to the log.

use ai_runner::Code;
use ai_runner::RunError;
use ai_runner::code::Class;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// Stable code.
    pub code: Code,
    /// Short message.
    pub message: String,
    /// Process exit code.
    pub exit: u8,
}

impl Failure {
    /// A failure with the exit code its code implies ([`exit_code`]).
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit: exit_code(code),
        }
    }

    /// The command ran and found problems (a check failed, a file does not verify): exit 1.
    pub fn found(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit: 1,
        }
    }

    /// Bad input or setup: exit 2.
    pub fn usage(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            exit: 2,
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

macro_rules! via_run_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self { RunError::from(e).into() }
        }
    )*};
}
via_run_error!(
    ai_runner::config::ConfigError,
    ai_runner::ports::StoreError,
    ai_runner::crypto::CryptoError,
    ai_runner::ports::ProviderError,
    ai_runner::ports::ObjectError
);

/// The process exit code for a failure with this code: its class's ([`class_exit_code`]),
/// except where a code means something special.
pub fn exit_code(code: Code) -> u8 {
    // `cfg verify` / `cfg gen` ran and found problems in the file, and `doctor` found audit rows
    // waiting in the spool: findings of a command that did its job (1), not bad input or setup.
    if matches!(code, Code::CatalogInvalid | Code::AuditSpooled) {
        return 1;
    }
    class_exit_code(code.class())
}

/// The exit code of a class of failure: 1 when the run itself failed (the provider, the answer,
/// the upload, a limit or budget, a check), 2 for bad input or setup.
#[deny(clippy::wildcard_enum_match_arm)]
pub fn class_exit_code(class: Class) -> u8 {
    match class {
        Class::Unsupported
        | Class::Rejected
        | Class::Upstream
        | Class::Deadline
        | Class::Limited
        | Class::Budget
        | Class::Failed => 1,
        Class::Input
        | Class::NotFound
        | Class::Unauthenticated
        | Class::Forbidden
        | Class::Unavailable
        | Class::Internal => 2,
    }
}

/// What to do about a failure with this code, if there is something to say.
#[deny(clippy::wildcard_enum_match_arm)]
pub fn hint(code: Code) -> Option<&'static str> {
    Some(match code {
        Code::ConfigNotFound => {
            "check ai_config.config_key and that the config, its model and connection are active (is_active = 1)"
        }
        Code::ConfigMissing | Code::ConfigInvalid => {
            "see the configuration table in README.md; env files .env, basic.env, mysql.env, oss.env, ai.env are read from the working directory"
        }
        Code::PepperMissing => "set AI_PEPPER (the pepper the keys were encrypted with)",
        Code::DecryptFailed => {
            "AI_PEPPER differs from the one the key was encrypted with; set AI_PEPPER_PREVIOUS during a rotation, or re-encrypt with `ai-runner keys encrypt`"
        }
        Code::EncryptedKeyInvalid => {
            "re-encrypt the connection's key with `ai-runner keys encrypt --connection NAME`"
        }
        Code::DbNotInitialized => "run `ai-runner db init` (or `ai-runner quickstart`)",
        Code::DbUnavailable => "check DATABASE_URL / MYSQL_* and that the server is reachable",
        Code::DbError => {
            "the database rejected a statement; the log (AI_RUNNER_LOG=debug) has the cause"
        }
        Code::SchemaOutdated => {
            "run `ai-runner db migrate --print` to review, then `ai-runner db migrate`"
        }
        Code::StoredJsonInvalid => "fix the JSON column the message names (cfg export / cfg gen)",
        Code::Http429RateLimit => {
            "the provider is rate limiting; raise AI_MAX_RETRIES or put the config behind a route with a backup member"
        }
        Code::Http5xxServerError | Code::NetworkError | Code::NetworkTimeout => {
            "the provider is failing or unreachable; check ai_connection.base_url, AI_TIMEOUT and the provider's status"
        }
        Code::ProviderUnreachable => {
            "fix ai_connection.base_url (the full chat-completions URL) or the network/DNS"
        }
        Code::ResponseTooLarge => {
            "the provider's answer exceeded AI_MAX_RESPONSE_BYTES; raise it, or lower max_tokens"
        }
        Code::ProviderRedirect => {
            "the provider answered with a redirect, which is never followed; set ai_connection.base_url to the final URL"
        }
        Code::CircuitOpen => {
            "the connection's provider kept failing, so its circuit breaker is open: wait for the cooldown (Retry-After), use a route with another member, or `ai-runner breaker reset <connection>`"
        }
        Code::DeadlineExceeded => {
            "the run hit its deadline (--timeout, or the function's); raise it, or lower AI_TIMEOUT / AI_MAX_RETRIES"
        }
        Code::HttpStatusError => {
            "the provider rejected the request; its message says why (key, model name, context length)"
        }
        Code::SchemaInvalid | Code::LetterDetected => {
            "the model's answer failed validation; adjust the prompt, or the JSON_SCHEMA_ENFORCE / ENFORCE_NO_ENGLISH switches"
        }
        Code::MissingMediaUrl => {
            "pass the media URL as a variable, e.g. --var MEDIA_URL=https://..."
        }
        Code::PromptMissing | Code::PromptInvalid | Code::ParamsInvalid => {
            "fix the config's prompt or param profile rows"
        }
        Code::ParamNotAllowed => {
            "the config's param profile limits what callers may set (CALLER_PARAMS, ALLOW_STREAM): drop the field, or allow it there"
        }
        Code::ClientDisconnected => {
            "the caller closed the connection before the stream ended; the audit row keeps what arrived"
        }
        Code::InvalidInput => {
            "send {\"config_key\": \"...\", \"variables\": {...}} (run-once) or {\"project\": \"...\", \"route_key\": \"...\", \"variables\": {...}} (run-route)"
        }
        Code::RouteNotFound => {
            "check ai_project_v2.name (status 'active') and ai_route_v2.route_key (is_active = 1)"
        }
        Code::NoActiveMembers => {
            "activate at least one ai_route_member_v2 row whose config, model and connection are active"
        }
        Code::ObjectNotFound | Code::ObjectAccessDenied | Code::ObjectStoreUnavailable => {
            "check OSS_ENDPOINT, OSS_REGION, the credentials and OSS_BUCKET"
        }
        Code::ObjectChanged => {
            "the object was overwritten after its event: the newer upload's event runs its own job"
        }
        Code::ObjectOperationUnsupported => {
            "a local object directory cannot presign URLs: use MEDIA_MODE=inline, or configure S3/OSS"
        }
        Code::MappingNotFound => "list mappings with `ai-runner media map list`",
        Code::KeyUnresolved => {
            "export the variable the connection's api_key names (${VAR}), or put the key in the file"
        }
        Code::CatalogInvalid => "fix the findings above; each names its YAML path",
        Code::DoctorFailed => "fix the failed checks above; each has its own hint",
        Code::DemoProviderFailed => {
            "free the demo port or pick another with AI_RUNNER_DEMO_PORT (0 = any free port)"
        }
        Code::ConsoleBindFailed => {
            "another process listens there: pick another port with `ai-runner dev --port N` (0 = any free port)"
        }
        Code::ConsoleTokenInvalid | Code::ConsoleCrossOrigin => {
            "open the console with the URL `ai-runner dev` printed (it carries the token)"
        }
        Code::IoError => "check the path and its permissions",
        Code::SuiteInvalid => "fix the findings above; each names its YAML path, case or target",
        Code::AuditSpooled => {
            "audit rows wait in the spool: once the database is back, run `ai-runner audit replay`"
        }
        Code::AuthKeyUnknown => "no access key has this id: `ai-runner access list` shows them",
        Code::AuthKeyDisabled => {
            "the key is disabled: create a new one with `ai-runner access create`"
        }
        Code::AuthKeyExpired => {
            "the key has expired: create a new one with `ai-runner access create`"
        }
        Code::AuthMissing
        | Code::AuthSignatureInvalid
        | Code::AuthTimestampSkew
        | Code::AuthReplay
        | Code::AuthIpDenied
        | Code::AuthScopeDenied => {
            "see the README's \"Access control\" section: how to sign a request and what a key may do"
        }
        Code::AuthTokenMissing | Code::AuthTokenInvalid => {
            "send `Authorization: Bearer air-...`, the token `ai-runner access create --bearer` printed (see the README's \"Bearer tokens\")"
        }
        Code::QuotaExceeded | Code::RateLimited => {
            "wait for the next window (Retry-After), or give the caller a key with higher limits (`ai-runner access create --daily-quota N --rps N`)"
        }
        Code::BudgetExceeded => {
            "a budget is used up for this window: `ai-runner budget list` shows it; raise it with `ai-runner budget set` or wait for the next UTC day or month"
        }
        Code::BudgetUnpriced => {
            "give the model a price (`ai-runner prices set` or `prices import`) so budgeted calls can be capped"
        }
        Code::BudgetUncapped => {
            "provider-side tools (web search, plugins) cannot be capped: run such calls outside budgets, or without the tool"
        }
        Code::PriceInvalid => {
            "prices are USD per token (or per second), as LiteLLM writes them: 2.5e-06, not 2.5"
        }
        Code::AccessUnavailable => {
            "the database did not answer the access check; `ai-runner doctor` tells why"
        }
        Code::QueueUnavailable => {
            "check EVAL_QUEUE_URL, the region and the credentials (or unset it to run in process)"
        }
        Code::EvalGateFailed => {
            "the run finished below a gate; `--out report.html` shows which cases failed and why"
        }
        Code::UnknownReference => {
            "define the object in the file, or check it exists in the database (cfg verify --db-check)"
        }
        Code::RequestError
        | Code::BadProviderResponse
        | Code::MediaUnsupported
        | Code::MediaTooLarge
        | Code::ObjectFailed
        | Code::QuickstartUploadFailed
        | Code::YamlInvalid
        | Code::YamlTooComplex
        | Code::BadType
        | Code::UnknownKey
        | Code::MissingField
        | Code::Duplicate
        | Code::Conflict
        | Code::BadUrl
        | Code::BadPolicy
        | Code::BadParam
        | Code::BadMessages
        | Code::BadMediaPart
        | Code::BadJsonSchema
        | Code::BadResponseFormat
        | Code::BadPromptReference
        | Code::KeyPlaceholder
        | Code::PlainKeyInFile
        | Code::UnfilledPlaceholder
        | Code::UnknownPartType
        | Code::NoPrompt
        | Code::NoMembers
        | Code::UnsupportedFeature => return None,
    })
}

#[cfg(test)]
mod readme;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_failure_exits_1_and_bad_setup_exits_2() {
        assert_eq!(exit_code(Code::NetworkError), 1);
        assert_eq!(exit_code(Code::SchemaInvalid), 1);
        assert_eq!(exit_code(Code::ConfigNotFound), 2);
        assert_eq!(exit_code(Code::PepperMissing), 2);
    }

    #[test]
    fn every_failure_a_run_can_end_with_has_a_hint() {
        for c in [
            Code::ConfigNotFound,
            Code::DecryptFailed,
            Code::NetworkError,
            Code::SchemaInvalid,
            Code::NoActiveMembers,
            Code::DbNotInitialized,
        ] {
            assert!(hint(c).is_some_and(|h| !h.is_empty()), "{c}");
        }
    }

    /// Every code's HTTP status and exit code as they were before the edges mapped classes:
    /// mapping by class must not move a single one.
    const PINNED: &[(Code, u16, u8)] = &[
        (Code::InvalidInput, 400, 2),
        (Code::ConfigMissing, 500, 2),
        (Code::ConfigInvalid, 500, 2),
        (Code::IoError, 500, 2),
        (Code::ConfigNotFound, 404, 2),
        (Code::RouteNotFound, 404, 2),
        (Code::NoActiveMembers, 503, 2),
        (Code::DbNotInitialized, 500, 2),
        (Code::DbUnavailable, 500, 2),
        (Code::DbError, 500, 2),
        (Code::StoredJsonInvalid, 500, 2),
        (Code::SchemaOutdated, 500, 2),
        (Code::PepperMissing, 500, 2),
        (Code::EncryptedKeyInvalid, 500, 2),
        (Code::DecryptFailed, 500, 2),
        (Code::MissingMediaUrl, 400, 2),
        (Code::PromptMissing, 400, 2),
        (Code::PromptInvalid, 400, 2),
        (Code::ParamsInvalid, 400, 2),
        (Code::ParamNotAllowed, 400, 2),
        (Code::ClientDisconnected, 400, 2),
        (Code::Http429RateLimit, 502, 1),
        (Code::Http5xxServerError, 502, 1),
        (Code::HttpStatusError, 502, 1),
        (Code::NetworkTimeout, 502, 1),
        (Code::NetworkError, 502, 1),
        (Code::RequestError, 502, 1),
        (Code::BadProviderResponse, 502, 1),
        (Code::ProviderUnreachable, 502, 1),
        (Code::ResponseTooLarge, 502, 1),
        (Code::ProviderRedirect, 502, 1),
        (Code::DeadlineExceeded, 504, 1),
        (Code::CircuitOpen, 503, 2),
        (Code::SchemaInvalid, 422, 1),
        (Code::LetterDetected, 422, 1),
        (Code::ObjectNotFound, 404, 2),
        (Code::ObjectChanged, 404, 2),
        (Code::ObjectAccessDenied, 500, 2),
        (Code::ObjectOperationUnsupported, 500, 2),
        (Code::ObjectStoreUnavailable, 500, 2),
        (Code::ObjectFailed, 500, 1),
        (Code::MediaUnsupported, 415, 1),
        (Code::MediaTooLarge, 415, 1),
        (Code::MappingNotFound, 404, 2),
        (Code::CatalogInvalid, 400, 1),
        (Code::KeyUnresolved, 400, 2),
        (Code::YamlInvalid, 400, 2),
        (Code::YamlTooComplex, 400, 2),
        (Code::BadType, 400, 2),
        (Code::UnknownKey, 400, 2),
        (Code::MissingField, 400, 2),
        (Code::UnknownReference, 400, 2),
        (Code::Duplicate, 400, 2),
        (Code::Conflict, 400, 2),
        (Code::BadUrl, 400, 2),
        (Code::BadPolicy, 400, 2),
        (Code::BadParam, 400, 2),
        (Code::BadMessages, 400, 2),
        (Code::BadMediaPart, 400, 2),
        (Code::BadJsonSchema, 400, 2),
        (Code::BadResponseFormat, 400, 2),
        (Code::BadPromptReference, 400, 2),
        (Code::KeyPlaceholder, 400, 2),
        (Code::PlainKeyInFile, 400, 2),
        (Code::UnfilledPlaceholder, 400, 2),
        (Code::UnknownPartType, 400, 2),
        (Code::NoPrompt, 400, 2),
        (Code::NoMembers, 400, 2),
        (Code::UnsupportedFeature, 400, 2),
        (Code::SuiteInvalid, 400, 2),
        (Code::EvalGateFailed, 422, 1),
        (Code::QueueUnavailable, 503, 2),
        (Code::AuditSpooled, 503, 1),
        (Code::AuthMissing, 401, 2),
        (Code::AuthKeyUnknown, 401, 2),
        (Code::AuthSignatureInvalid, 401, 2),
        (Code::AuthTokenMissing, 401, 2),
        (Code::AuthTokenInvalid, 401, 2),
        (Code::AuthTimestampSkew, 401, 2),
        (Code::AuthReplay, 401, 2),
        (Code::AuthKeyDisabled, 403, 2),
        (Code::AuthKeyExpired, 403, 2),
        (Code::AuthIpDenied, 403, 2),
        (Code::AuthScopeDenied, 403, 2),
        (Code::QuotaExceeded, 429, 1),
        (Code::RateLimited, 429, 1),
        (Code::AccessUnavailable, 503, 2),
        (Code::BudgetExceeded, 402, 1),
        (Code::BudgetUnpriced, 402, 1),
        (Code::BudgetUncapped, 402, 1),
        (Code::PriceInvalid, 400, 2),
        (Code::ConsoleTokenInvalid, 401, 2),
        (Code::ConsoleCrossOrigin, 403, 2),
        (Code::ConsoleBindFailed, 500, 2),
        (Code::DoctorFailed, 500, 1),
        (Code::DemoProviderFailed, 500, 2),
        (Code::QuickstartUploadFailed, 500, 1),
    ];

    #[test]
    fn every_code_keeps_the_http_status_and_exit_code_it_had() {
        assert_eq!(
            PINNED.len(),
            Code::ALL.len(),
            "a code is missing from the pins"
        );
        for (code, status, exit) in PINNED {
            assert_eq!(
                ai_runner::status::http_status(*code),
                *status,
                "{code}: HTTP status"
            );
            assert_eq!(exit_code(*code), *exit, "{code}: exit code");
        }
        for code in Code::ALL {
            assert!(
                PINNED.iter().any(|(c, _, _)| c == code),
                "{code} is not pinned"
            );
        }
    }
}
