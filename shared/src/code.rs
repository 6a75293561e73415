//! Every stable code ai-runner reports, in one enum.
//!
//! Invariants: a code's string ([`Code::as_str`]) never changes once released (callers, alarms and
//! scripts branch on it; the predecessor's codes are kept verbatim, compat.md section 5); every
//! code a caller can see is a variant here, so the edges (HTTP status in the functions, exit code
//! and hint in the CLI) can map them with exhaustive matches and a new code cannot silently fall
//! into a default.

use std::fmt;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// A stable SCREAMING_SNAKE code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order (documentation and tests walk it).
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as callers see it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// The code with this text, if there is one.
            pub fn parse(text: &str) -> Option<Code> {
                match text {
                    $($text => Some(Code::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    // Input and process configuration.
    /// The request or event could not be understood.
    InvalidInput = "INVALID_INPUT",
    /// Variables a chosen setup needs are missing.
    ConfigMissing = "CONFIG_MISSING",
    /// A configuration value cannot be used.
    ConfigInvalid = "CONFIG_INVALID",
    /// A file could not be read or written.
    IoError = "IO_ERROR",

    // What the database holds.
    /// No active config with this key.
    ConfigNotFound = "CONFIG_NOT_FOUND",
    /// No active route with this key in an active project.
    RouteNotFound = "ROUTE_NOT_FOUND",
    /// The route has no active member with an active config.
    NoActiveMembers = "NO_ACTIVE_MEMBERS",
    /// The embedded database file does not exist yet.
    DbNotInitialized = "DB_NOT_INITIALIZED",
    /// The database server cannot be reached.
    DbUnavailable = "DB_UNAVAILABLE",
    /// A statement failed.
    DbError = "DB_ERROR",
    /// A stored JSON column does not parse.
    StoredJsonInvalid = "STORED_JSON_INVALID",
    /// Our additive migrations have not all been applied.
    SchemaOutdated = "SCHEMA_OUTDATED",

    // Keys.
    /// `AI_PEPPER` is not set.
    PepperMissing = "PEPPER_MISSING",
    /// A stored key blob is malformed.
    EncryptedKeyInvalid = "ENCRYPTED_KEY_INVALID",
    /// A stored key does not decrypt under the configured peppers.
    DecryptFailed = "DECRYPT_FAILED",

    // Building the request.
    /// A media part's URL is empty or unresolved.
    MissingMediaUrl = "MISSING_MEDIA_URL",
    /// The config has no prompt.
    PromptMissing = "PROMPT_MISSING",
    /// The stored prompt is malformed.
    PromptInvalid = "PROMPT_INVALID",
    /// The stored params are malformed.
    ParamsInvalid = "PARAMS_INVALID",

    // The provider.
    /// HTTP 429 after retries.
    Http429RateLimit = "HTTP_429_RATE_LIMIT",
    /// HTTP 5xx after retries.
    Http5xxServerError = "HTTP_5XX_SERVER_ERROR",
    /// Any other non-2xx status.
    HttpStatusError = "HTTP_STATUS_ERROR",
    /// No answer within `AI_TIMEOUT`.
    NetworkTimeout = "NETWORK_TIMEOUT",
    /// Connection refused, reset, DNS, TLS.
    NetworkError = "NETWORK_ERROR",
    /// The request could not be sent at all.
    RequestError = "REQUEST_ERROR",
    /// A 2xx answer that is not a chat completion.
    BadProviderResponse = "BAD_PROVIDER_RESPONSE",
    /// A connection URL does not resolve (doctor).
    ProviderUnreachable = "PROVIDER_UNREACHABLE",
    /// The provider's answer (body or stream) is larger than `AI_MAX_RESPONSE_BYTES`.
    ResponseTooLarge = "RESPONSE_TOO_LARGE",
    /// The provider answered with a redirect (3xx); redirects are never followed, so a provider
    /// or anything on its path cannot point the runner at another address.
    ProviderRedirect = "PROVIDER_REDIRECT",
    /// The platform's deadline left no time for another attempt, retry or member (retryable).
    DeadlineExceeded = "DEADLINE_EXCEEDED",

    // Validating the answer.
    /// The answer is not the JSON the schema asks for.
    SchemaInvalid = "SCHEMA_INVALID",
    /// Latin letters in a JSON string value while `ENFORCE_NO_ENGLISH` is on.
    LetterDetected = "LETTER_DETECTED",

    // Objects and uploads.
    /// No such bucket or key.
    ObjectNotFound = "OBJECT_NOT_FOUND",
    /// The object store refused access.
    ObjectAccessDenied = "OBJECT_ACCESS_DENIED",
    /// The object store cannot do this (e.g. presign a local directory).
    ObjectOperationUnsupported = "OBJECT_OPERATION_UNSUPPORTED",
    /// The object store cannot be reached.
    ObjectStoreUnavailable = "OBJECT_STORE_UNAVAILABLE",
    /// An object failed for a reason reported elsewhere.
    ObjectFailed = "OBJECT_FAILED",
    /// An upload that is not accepted audio.
    MediaUnsupported = "MEDIA_UNSUPPORTED",
    /// An upload over `MEDIA_MAX_BYTES`.
    MediaTooLarge = "MEDIA_TOO_LARGE",
    /// No media mapping with this id.
    MappingNotFound = "MAPPING_NOT_FOUND",

    // The configuration catalog (YAML).
    /// A catalog file has errors (each finding has its own code).
    CatalogInvalid = "CATALOG_INVALID",
    /// A key reference or placeholder cannot be resolved when applying.
    KeyUnresolved = "KEY_UNRESOLVED",
    /// The file is not YAML.
    YamlInvalid = "YAML_INVALID",
    /// A value has the wrong type.
    BadType = "BAD_TYPE",
    /// A key no object of that kind has.
    UnknownKey = "UNKNOWN_KEY",
    /// A required field is absent.
    MissingField = "MISSING_FIELD",
    /// A reference to an object that is neither in the file nor the database.
    UnknownReference = "UNKNOWN_REFERENCE",
    /// An object is defined twice.
    Duplicate = "DUPLICATE",
    /// Two fields that exclude each other.
    Conflict = "CONFLICT",
    /// Not an http(s) URL.
    BadUrl = "BAD_URL",
    /// Not a route policy.
    BadPolicy = "BAD_POLICY",
    /// A parameter of the wrong type.
    BadParam = "BAD_PARAM",
    /// Malformed messages.
    BadMessages = "BAD_MESSAGES",
    /// A media part without a usable URL or placeholder.
    BadMediaPart = "BAD_MEDIA_PART",
    /// A JSON Schema that does not compile.
    BadJsonSchema = "BAD_JSON_SCHEMA",
    /// A response_format of an unknown type.
    BadResponseFormat = "BAD_RESPONSE_FORMAT",
    /// Not `name@version` or `{name, version}`.
    BadPromptReference = "BAD_PROMPT_REFERENCE",
    /// (warning) the sample's `<...>` key placeholder is still there.
    KeyPlaceholder = "KEY_PLACEHOLDER",
    /// (warning) a plain key sits in the file.
    PlainKeyInFile = "PLAIN_KEY_IN_FILE",
    /// (warning) a placeholder nothing in the file fills.
    UnfilledPlaceholder = "UNFILLED_PLACEHOLDER",
    /// (warning) a content part type passed through unchecked.
    UnknownPartType = "UNKNOWN_PART_TYPE",
    /// (warning) a config without a prompt.
    NoPrompt = "NO_PROMPT",
    /// (warning) a route without members.
    NoMembers = "NO_MEMBERS",

    // Evaluations.
    /// An evaluation suite file has errors, or names a target or placeholder that does not
    /// resolve (each finding has its own code).
    SuiteInvalid = "SUITE_INVALID",
    /// An evaluation run finished but a gate (pass rate, metric cutoff) did not hold.
    EvalGateFailed = "EVAL_GATE_FAILED",
    /// The evaluation queue (SQS) did not take a run's messages (retryable).
    QueueUnavailable = "QUEUE_UNAVAILABLE",
    /// `doctor`: audit rows wait in the spool (the database did not take them); `audit replay`.
    AuditSpooled = "AUDIT_SPOOLED",

    // Access control (signed API calls, `ACCESS_MODE=hmac`). Authentication failures are 401,
    // refusals of an authenticated key 403; a caller never learns whether a key exists (an
    // unknown key is answered exactly like a bad signature and told apart only in the logs).
    /// The request carries no signature headers, or malformed ones.
    AuthMissing = "AUTH_MISSING",
    /// The access key id is not stored (logged; callers see `AUTH_SIGNATURE_INVALID`).
    AuthKeyUnknown = "AUTH_KEY_UNKNOWN",
    /// The signature does not match the request.
    AuthSignatureInvalid = "AUTH_SIGNATURE_INVALID",
    /// The signed timestamp is outside the allowed clock skew.
    AuthTimestampSkew = "AUTH_TIMESTAMP_SKEW",
    /// The nonce (or, for the raw-body scheme, the signature) was already used by this key.
    AuthReplay = "AUTH_REPLAY",
    /// The access key is disabled.
    AuthKeyDisabled = "AUTH_KEY_DISABLED",
    /// The access key has expired.
    AuthKeyExpired = "AUTH_KEY_EXPIRED",
    /// The caller's IP address is not in the key's allow list.
    AuthIpDenied = "AUTH_IP_DENIED",
    /// The key may not run this target (project, route or config), dry-run, or start evaluations.
    AuthScopeDenied = "AUTH_SCOPE_DENIED",
    /// The key's daily quota (calls per UTC day) is used up.
    QuotaExceeded = "QUOTA_EXCEEDED",
    /// The key's requests-per-second limit is reached.
    RateLimited = "RATE_LIMITED",
    /// The access check could not reach the database (fails closed unless `ACCESS_FAIL_OPEN`).
    AccessUnavailable = "ACCESS_UNAVAILABLE",

    // Costs.
    /// A budget covering the call (project, route or access key, per UTC day or month) has no
    /// room for the call's maximum cost; no provider call was made.
    BudgetExceeded = "BUDGET_EXCEEDED",
    /// A budget covers the call but its model has no price, so its cost cannot be capped.
    BudgetUnpriced = "BUDGET_UNPRICED",
    /// A price or budget given to `prices` / `budget` is not acceptable (a magnitude that is
    /// surely per million tokens, a negative amount, an unknown field).
    PriceInvalid = "PRICE_INVALID",

    // The local console (`ai-runner dev`).
    /// A console request without the token `ai-runner dev` printed (or with another one).
    ConsoleTokenInvalid = "CONSOLE_TOKEN_INVALID",
    /// A state-changing console request from another origin (cross-site request forgery), or a
    /// request naming a host the console does not serve (DNS rebinding).
    ConsoleCrossOrigin = "CONSOLE_CROSS_ORIGIN",
    /// `ai-runner dev` could not listen on the address it was given.
    ConsoleBindFailed = "CONSOLE_BIND_FAILED",

    // Command-line outcomes.
    /// One or more doctor checks failed.
    DoctorFailed = "DOCTOR_FAILED",
    /// The local demo provider could not start.
    DemoProviderFailed = "DEMO_PROVIDER_FAILED",
    /// The quickstart's upload demo did not succeed.
    QuickstartUploadFailed = "QUICKSTART_UPLOAD_FAILED",
}

impl Code {
    /// The provider looks down or overloaded (unreachable, timed out, 5xx, 429 after retries):
    /// what an evaluation's early stop counts.
    pub fn is_provider_outage(self) -> bool {
        matches!(
            self,
            Code::Http429RateLimit
                | Code::Http5xxServerError
                | Code::NetworkTimeout
                | Code::NetworkError
                | Code::ProviderUnreachable
                | Code::DeadlineExceeded
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Code::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown code {text:?}")))
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_screaming_snake_unique_and_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(
                s.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_'),
                "{s}"
            );
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(Code::parse(s), Some(*c));
        }
        assert_eq!(Code::parse("NOT_A_CODE"), None);
    }

    #[test]
    fn a_code_serializes_as_its_text() {
        assert_eq!(
            serde_json::to_string(&Code::DecryptFailed).unwrap(),
            "\"DECRYPT_FAILED\""
        );
        let back: Code = serde_json::from_str("\"NO_ACTIVE_MEMBERS\"").unwrap();
        assert_eq!(back, Code::NoActiveMembers);
    }
}
