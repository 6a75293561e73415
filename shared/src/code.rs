//! Every stable code ai-runner reports, in one enum, each with its class and whether retrying may
//! help.
//!
//! Invariants: a code's string ([`Code::as_str`]) never changes once released (callers, alarms and
//! scripts branch on it; the predecessor's codes are kept verbatim, compat.md section 5); every
//! code a caller can see is a variant here, declared with its [`Class`] and [`Retry`], so a new
//! code cannot be added without saying what kind of failure it is. The edges (HTTP status in
//! `status`, exit code and hint in the CLI) map classes with exhaustive matches, overriding a
//! single code only where it means something special. A variant's `///` doc is its
//! [`Code::meaning`], the text of the README's error table: one sentence or two for a user, no
//! blank doc lines (they would run sentences together).

use std::fmt;

/// What kind of failure a code is: what an edge needs to decide a status or an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request, event, command line or a file given to a command is wrong: fixing it is the
    /// caller's part.
    Input,
    /// What the input names does not exist (or is not active).
    NotFound,
    /// An upload that is not media we accept.
    Unsupported,
    /// The work ran and its result failed a check (the answer's validation, an evaluation gate).
    Rejected,
    /// The provider failed, refused the request, or answered something unusable.
    Upstream,
    /// The deadline left no time to go on.
    Deadline,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The caller's quota or request rate is used up for now.
    Limited,
    /// A spending budget stops the call.
    Budget,
    /// Something the call needs is not there for now (route members, the evaluation queue, the
    /// access check's database, the audit table).
    Unavailable,
    /// The process's own setup or state: configuration, files, database, keys, the object store,
    /// a local port. Nothing the caller sent is wrong.
    Internal,
    /// A command's work ran and did not succeed; the causes are reported beside the code (each
    /// doctor check, the upload's job, the object's own error).
    Failed,
}

impl Class {
    /// Every class, in declaration order.
    pub const ALL: &'static [Class] = &[
        Class::Input,
        Class::NotFound,
        Class::Unsupported,
        Class::Rejected,
        Class::Upstream,
        Class::Deadline,
        Class::Unauthenticated,
        Class::Forbidden,
        Class::Limited,
        Class::Budget,
        Class::Unavailable,
        Class::Internal,
        Class::Failed,
    ];
}

/// Whether the same call, made again unchanged, may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retry {
    /// No: something has to change first (the input, the configuration, the data).
    No,
    /// Yes: the failure is transient.
    Yes,
    /// Yes, after the wait the answer names (`Retry-After`, the budget's next window).
    Later,
}

impl Retry {
    /// As the README's error table shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Retry::No => "no",
            Retry::Yes => "yes",
            Retry::Later => "later",
        }
    }
}

macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $text:literal ($class:ident, $retry:ident), )*) => {
        /// A stable SCREAMING_SNAKE code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[doc = $doc])* $variant, )*
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

            /// What kind of failure this is; the edges map classes to statuses and exit codes.
            pub const fn class(self) -> Class {
                match self {
                    $(Code::$variant => Class::$class,)*
                }
            }

            /// Whether making the same call again may succeed.
            pub const fn retry(self) -> Retry {
                match self {
                    $(Code::$variant => Retry::$retry,)*
                }
            }

            /// What the code means, for a user: the variant's doc, on one line.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }
        }
    };
}

codes! {
    // Input and process configuration.
    /// The request, event or command line could not be understood.
    InvalidInput = "INVALID_INPUT" (Input, No),
    /// Variables a chosen setup needs are missing (process configuration).
    ConfigMissing = "CONFIG_MISSING" (Internal, No),
    /// A configuration value cannot be used (process configuration).
    ConfigInvalid = "CONFIG_INVALID" (Internal, No),
    /// A file could not be read or written.
    IoError = "IO_ERROR" (Internal, No),

    // What the database holds.
    /// No active config with this key.
    ConfigNotFound = "CONFIG_NOT_FOUND" (NotFound, No),
    /// No active route with this key in an active project.
    RouteNotFound = "ROUTE_NOT_FOUND" (NotFound, No),
    /// The route has no active member with an active config.
    NoActiveMembers = "NO_ACTIVE_MEMBERS" (Unavailable, No),
    /// The embedded database file does not exist yet (`ai-runner db init`).
    DbNotInitialized = "DB_NOT_INITIALIZED" (Internal, No),
    /// The database server cannot be reached.
    DbUnavailable = "DB_UNAVAILABLE" (Internal, Yes),
    /// A statement failed.
    DbError = "DB_ERROR" (Internal, Yes),
    /// A stored JSON column does not parse.
    StoredJsonInvalid = "STORED_JSON_INVALID" (Internal, No),
    /// `doctor`: our additive migrations have not all been applied.
    SchemaOutdated = "SCHEMA_OUTDATED" (Internal, No),

    // Keys.
    /// `AI_PEPPER` is not set.
    PepperMissing = "PEPPER_MISSING" (Internal, No),
    /// A stored key blob is malformed.
    EncryptedKeyInvalid = "ENCRYPTED_KEY_INVALID" (Internal, No),
    /// A stored key does not decrypt under the configured peppers.
    DecryptFailed = "DECRYPT_FAILED" (Internal, No),

    // Building the request.
    /// A media part's URL is empty or unresolved: the request cannot be built.
    MissingMediaUrl = "MISSING_MEDIA_URL" (Input, No),
    /// The config has no prompt: the request cannot be built.
    PromptMissing = "PROMPT_MISSING" (Input, No),
    /// The stored prompt is malformed: the request cannot be built.
    PromptInvalid = "PROMPT_INVALID" (Input, No),
    /// The stored params are malformed: the request cannot be built.
    ParamsInvalid = "PARAMS_INVALID" (Input, No),
    /// The caller set a request field (or `stream`) that the config's param profile does not let
    /// callers set (`CALLER_PARAMS`, `ALLOW_STREAM`): nothing was called.
    ParamNotAllowed = "PARAM_NOT_ALLOWED" (Input, No),
    /// A streaming caller disconnected before the answer ended: the provider's stream was dropped
    /// and the audit row keeps what had arrived.
    ClientDisconnected = "CLIENT_DISCONNECTED" (Input, No),

    // The provider.
    /// The provider answered HTTP 429 after retries.
    Http429RateLimit = "HTTP_429_RATE_LIMIT" (Upstream, Yes),
    /// The provider answered HTTP 5xx after retries.
    Http5xxServerError = "HTTP_5XX_SERVER_ERROR" (Upstream, Yes),
    /// The provider answered another non-2xx status: it rejected the request.
    HttpStatusError = "HTTP_STATUS_ERROR" (Upstream, No),
    /// The provider did not answer within `AI_TIMEOUT`, after retries.
    NetworkTimeout = "NETWORK_TIMEOUT" (Upstream, Yes),
    /// Connection refused, reset, DNS or TLS failure, after retries.
    NetworkError = "NETWORK_ERROR" (Upstream, Yes),
    /// The request could not be sent at all.
    RequestError = "REQUEST_ERROR" (Upstream, No),
    /// A 2xx answer that is not a chat completion.
    BadProviderResponse = "BAD_PROVIDER_RESPONSE" (Upstream, No),
    /// `doctor`: a connection URL's host does not resolve.
    ProviderUnreachable = "PROVIDER_UNREACHABLE" (Upstream, No),
    /// The provider's answer (body or stream) is larger than `AI_MAX_RESPONSE_BYTES`.
    ResponseTooLarge = "RESPONSE_TOO_LARGE" (Upstream, No),
    /// The provider answered with a redirect (3xx); redirects are never followed (the message names
    /// the target's origin only), so a provider or anything on its path cannot point the runner at
    /// another address.
    ProviderRedirect = "PROVIDER_REDIRECT" (Upstream, No),
    /// The platform's deadline (or `--timeout`) left no time for another attempt, retry or member;
    /// the audit row says so.
    DeadlineExceeded = "DEADLINE_EXCEEDED" (Deadline, Yes),
    /// The connection's circuit breaker is open (its provider kept failing): nothing was sent;
    /// `Retry-After` says when the breaker lets a probe through.
    CircuitOpen = "CIRCUIT_OPEN" (Unavailable, Later),

    // Validating the answer.
    /// The answer is not the JSON the schema asks for, after content retries.
    SchemaInvalid = "SCHEMA_INVALID" (Rejected, Yes),
    /// Latin letters in a JSON string value while `ENFORCE_NO_ENGLISH` is on, after content
    /// retries.
    LetterDetected = "LETTER_DETECTED" (Rejected, Yes),

    // Objects and uploads.
    /// No such bucket or key.
    ObjectNotFound = "OBJECT_NOT_FOUND" (NotFound, No),
    /// The object under the key is no longer the version its event named (its ETag differs): a
    /// newer upload replaced it, and that upload's own event is its job.
    ObjectChanged = "OBJECT_CHANGED" (NotFound, No),
    /// The object store refused access.
    ObjectAccessDenied = "OBJECT_ACCESS_DENIED" (Internal, No),
    /// The object store cannot do this (e.g. presign a local directory).
    ObjectOperationUnsupported = "OBJECT_OPERATION_UNSUPPORTED" (Internal, No),
    /// The object store cannot be reached.
    ObjectStoreUnavailable = "OBJECT_STORE_UNAVAILABLE" (Internal, Yes),
    /// An object failed for a reason reported elsewhere.
    ObjectFailed = "OBJECT_FAILED" (Failed, No),
    /// An upload that is not audio we accept (job row `rejected`).
    MediaUnsupported = "MEDIA_UNSUPPORTED" (Unsupported, No),
    /// An upload over `MEDIA_MAX_BYTES` (job row `rejected`).
    MediaTooLarge = "MEDIA_TOO_LARGE" (Unsupported, No),
    /// No media mapping with this id (`media map remove`).
    MappingNotFound = "MAPPING_NOT_FOUND" (NotFound, No),

    // The configuration catalog (YAML).
    /// A catalog file has errors (each finding has its own code).
    CatalogInvalid = "CATALOG_INVALID" (Input, No),
    /// A key reference (`${VAR}`) is unset for a new connection, or still the sample's placeholder,
    /// when applying.
    KeyUnresolved = "KEY_UNRESOLVED" (Input, No),
    /// The file is not YAML.
    YamlInvalid = "YAML_INVALID" (Input, No),
    /// A YAML file is larger than 16 MiB, or nests flow collections (`[[[...]]]`) more than 64
    /// deep: refused before parsing (a parser's cost grows with the depth).
    YamlTooComplex = "YAML_TOO_COMPLEX" (Input, No),
    /// A value has the wrong type.
    BadType = "BAD_TYPE" (Input, No),
    /// A key no object of that kind has.
    UnknownKey = "UNKNOWN_KEY" (Input, No),
    /// A required field is absent.
    MissingField = "MISSING_FIELD" (Input, No),
    /// A reference to an object that is neither in the file nor the database.
    UnknownReference = "UNKNOWN_REFERENCE" (Input, No),
    /// An object is defined twice.
    Duplicate = "DUPLICATE" (Input, No),
    /// Two fields that exclude each other.
    Conflict = "CONFLICT" (Input, No),
    /// Not an http(s) URL.
    BadUrl = "BAD_URL" (Input, No),
    /// Not a route policy.
    BadPolicy = "BAD_POLICY" (Input, No),
    /// A parameter of the wrong type.
    BadParam = "BAD_PARAM" (Input, No),
    /// Malformed messages.
    BadMessages = "BAD_MESSAGES" (Input, No),
    /// A media part without a usable URL or placeholder.
    BadMediaPart = "BAD_MEDIA_PART" (Input, No),
    /// A JSON Schema that does not compile.
    BadJsonSchema = "BAD_JSON_SCHEMA" (Input, No),
    /// A response_format of an unknown type.
    BadResponseFormat = "BAD_RESPONSE_FORMAT" (Input, No),
    /// Not `name@version` or `{name, version}`.
    BadPromptReference = "BAD_PROMPT_REFERENCE" (Input, No),
    /// (warning) the sample's `<...>` key placeholder is still there.
    KeyPlaceholder = "KEY_PLACEHOLDER" (Input, No),
    /// (warning) a plain key sits in the file.
    PlainKeyInFile = "PLAIN_KEY_IN_FILE" (Input, No),
    /// (warning) a placeholder nothing in the file fills.
    UnfilledPlaceholder = "UNFILLED_PLACEHOLDER" (Input, No),
    /// (warning) a content part type passed through unchecked.
    UnknownPartType = "UNKNOWN_PART_TYPE" (Input, No),
    /// (warning) a config without a prompt.
    NoPrompt = "NO_PROMPT" (Input, No),
    /// (warning) a route without members.
    NoMembers = "NO_MEMBERS" (Input, No),
    /// A promptfoo feature ai-runner cannot honour (code assertions, webhooks, transforms, a
    /// provider without a mapping, an assertion type it lacks): refused, never graded as passed.
    UnsupportedFeature = "UNSUPPORTED_FEATURE" (Input, No),

    // Evaluations.
    /// An evaluation suite file has errors, or names a target or placeholder that does not resolve
    /// (each finding has its own code); nothing was called.
    SuiteInvalid = "SUITE_INVALID" (Input, No),
    /// An evaluation run finished (or stopped early) but a gate (pass rate, metric cutoff,
    /// regression) did not hold.
    EvalGateFailed = "EVAL_GATE_FAILED" (Rejected, No),
    /// The evaluation queue (SQS) did not take a run's messages; the run is marked `failed`.
    QueueUnavailable = "QUEUE_UNAVAILABLE" (Unavailable, Yes),
    /// `doctor`: audit rows wait in the spool (the database did not take them); `ai-runner audit
    /// replay` writes them.
    AuditSpooled = "AUDIT_SPOOLED" (Unavailable, Yes),

    // Access control (signed and bearer API calls, `ACCESS_MODE` other than `iam`).
    // Authentication failures are 401, refusals of an authenticated key 403; a caller never
    // learns whether a key exists (an unknown key is answered exactly like a bad signature or a
    // bad token and told apart only in the logs).
    /// The request carries no signature headers, or malformed ones (with `ACCESS_MODE=keys` or
    /// `iam+keys`: neither signature headers nor a bearer token).
    AuthMissing = "AUTH_MISSING" (Unauthenticated, No),
    /// The access key id is not stored: logs and `access` commands only; callers see
    /// `AUTH_SIGNATURE_INVALID` or `AUTH_TOKEN_INVALID`, so a key's existence is not revealed.
    AuthKeyUnknown = "AUTH_KEY_UNKNOWN" (Unauthenticated, No),
    /// The signature does not match the request (also what an unknown key id gets).
    AuthSignatureInvalid = "AUTH_SIGNATURE_INVALID" (Unauthenticated, No),
    /// The request carries no `Authorization: Bearer air-...` token where `ACCESS_MODE` (`bearer`,
    /// `iam+bearer`) requires one.
    AuthTokenMissing = "AUTH_TOKEN_MISSING" (Unauthenticated, No),
    /// The bearer token is not an access key's token: malformed, of an unknown key (the same
    /// answer), a wrong secret, or a signing key's id.
    AuthTokenInvalid = "AUTH_TOKEN_INVALID" (Unauthenticated, No),
    /// The signed timestamp is further than `ACCESS_MAX_SKEW_SECS` (300) from now.
    AuthTimestampSkew = "AUTH_TIMESTAMP_SKEW" (Unauthenticated, No),
    /// The nonce (or, for the raw-body scheme, the signature) was already used by this key.
    AuthReplay = "AUTH_REPLAY" (Unauthenticated, No),
    /// The access key is disabled.
    AuthKeyDisabled = "AUTH_KEY_DISABLED" (Forbidden, No),
    /// The access key has expired.
    AuthKeyExpired = "AUTH_KEY_EXPIRED" (Forbidden, No),
    /// The caller's IP address is not in the key's allow list.
    AuthIpDenied = "AUTH_IP_DENIED" (Forbidden, No),
    /// The key may not run this target (project, route or config), dry-run, or start evaluations.
    AuthScopeDenied = "AUTH_SCOPE_DENIED" (Forbidden, No),
    /// The key's daily quota (calls per UTC day) is used up; no provider call was made.
    QuotaExceeded = "QUOTA_EXCEEDED" (Limited, Later),
    /// The key's requests-per-second limit is reached; no provider call was made.
    RateLimited = "RATE_LIMITED" (Limited, Later),
    /// The access check could not reach the database (fails closed unless `ACCESS_FAIL_OPEN=true`).
    AccessUnavailable = "ACCESS_UNAVAILABLE" (Unavailable, Yes),

    // Costs.
    /// A budget covering the call (project, route or access key, per UTC day or month) has no room
    /// for the call's maximum cost; no provider call was made, the audit row says so.
    BudgetExceeded = "BUDGET_EXCEEDED" (Budget, Later),
    /// A budget covers the call but its model has no price, so its cost cannot be capped; no
    /// provider call was made.
    BudgetUnpriced = "BUDGET_UNPRICED" (Budget, No),
    /// A budget covers the call but its request turns on a provider-side tool (web search and
    /// the like) whose cost the request does not show, so it cannot be capped; no provider call
    /// was made.
    BudgetUncapped = "BUDGET_UNCAPPED" (Budget, No),
    /// A price or budget given to `prices` / `budget` / a catalog's `prices:` is not acceptable (a
    /// magnitude that is surely per million tokens, a negative amount, an unknown field, no price
    /// at all).
    PriceInvalid = "PRICE_INVALID" (Input, No),

    // The local console (`ai-runner dev`).
    /// A console request without the token `ai-runner dev` printed (or with another one).
    ConsoleTokenInvalid = "CONSOLE_TOKEN_INVALID" (Unauthenticated, No),
    /// A state-changing console request from another origin (cross-site request forgery), or a
    /// request naming a host the console does not serve (DNS rebinding).
    ConsoleCrossOrigin = "CONSOLE_CROSS_ORIGIN" (Forbidden, No),
    /// `ai-runner dev` could not listen on `--host` / `--port` (the port is taken).
    ConsoleBindFailed = "CONSOLE_BIND_FAILED" (Internal, Yes),

    // Command-line outcomes.
    /// `doctor` / `init`: one or more checks failed.
    DoctorFailed = "DOCTOR_FAILED" (Failed, No),
    /// Quickstart's local demo provider could not start.
    DemoProviderFailed = "DEMO_PROVIDER_FAILED" (Internal, No),
    /// The quickstart's upload demo did not succeed.
    QuickstartUploadFailed = "QUICKSTART_UPLOAD_FAILED" (Failed, No),
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
    fn every_code_has_a_one_line_meaning_that_fits_a_table_cell() {
        for c in Code::ALL {
            let m = c.meaning();
            assert!(m.len() > 10, "{c}: {m:?}");
            assert!(
                m.ends_with('.') || m.ends_with(')'),
                "{c}: {m:?} is not a sentence"
            );
            assert!(
                !m.contains('\n') && !m.contains("  ") && !m.contains('|'),
                "{c}: {m:?}"
            );
        }
        assert_eq!(
            Code::ProviderRedirect.meaning(),
            "The provider answered with a redirect (3xx); redirects are never followed (the \
             message names the target's origin only), so a provider or anything on its path \
             cannot point the runner at another address."
        );
    }

    #[test]
    fn every_class_has_a_code_and_the_retry_column_reads_as_the_readme_shows_it() {
        for class in Class::ALL {
            assert!(
                Code::ALL.iter().any(|c| c.class() == *class),
                "{class:?} has no code"
            );
        }
        for c in Code::ALL {
            assert!(
                Class::ALL.contains(&c.class()),
                "{:?} is not in Class::ALL",
                c.class()
            );
        }
        assert_eq!(Code::NetworkTimeout.retry().as_str(), "yes");
        assert_eq!(Code::DecryptFailed.retry().as_str(), "no");
        assert_eq!(Code::BudgetExceeded.retry().as_str(), "later");
        assert_eq!(Code::KeyUnresolved.class(), Class::Input);
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
