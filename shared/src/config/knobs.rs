//! The knobs of the run: HTTP client timeouts and retries, answer validation, access control and
//! evaluations, each with its defaults.
//!
//! Invariants: every knob has a default that matches the predecessor; a bad value is refused at
//! start with its variable's name, never clamped silently.

use std::time::Duration;

use super::values::{flag, num};
use super::{ConfigError, Getter};
use crate::secret::Secret;

/// HTTP behaviour towards providers.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// `AI_TIMEOUT` (seconds, default 30): the whole of one HTTP attempt.
    pub timeout: Duration,
    /// `AI_MAX_RETRIES` (default 2): extra attempts after a retryable failure.
    pub max_retries: u32,
    /// `AI_RETRY_BASE_MS` (default 500): first backoff; doubles each retry.
    pub retry_base: Duration,
    /// `AI_RETRY_JITTER` (fraction 0..=1, default 0.2): random spread applied to each backoff.
    pub retry_jitter: f64,
    /// `AI_RETRY_AFTER_CAP_MS` (default 20000): the longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
    /// `AI_MAX_RESPONSE_BYTES` (default 16 MiB): the largest answer (body or stream) read.
    pub max_response_bytes: u64,
    /// `AI_DEADLINE_RESERVE_MS` (default 2000): time kept back from the platform's deadline for
    /// writing the audit row and answering.
    pub deadline_reserve: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_base: Duration::from_millis(500),
            retry_jitter: 0.2,
            retry_after_cap: Duration::from_secs(20),
            max_response_bytes: 16 * 1024 * 1024,
            deadline_reserve: Duration::from_secs(2),
        }
    }
}

impl HttpSettings {
    /// The longest one send can take, retries and their waits included (every attempt its whole
    /// timeout, every wait its longest: the `Retry-After` cap or the jittered backoff, whichever
    /// is longer); a deadline only shortens it.
    pub fn longest_send(&self) -> Duration {
        let mut total = self
            .timeout
            .saturating_mul(self.max_retries.saturating_add(1));
        for retry in 1..=self.max_retries.min(64) {
            let backoff = (self.retry_base.as_secs_f64()
                * 2f64.powi(retry as i32 - 1)
                * (1.0 + self.retry_jitter))
                .clamp(0.0, 300.0);
            total =
                total.saturating_add(self.retry_after_cap.max(Duration::from_secs_f64(backoff)));
        }
        total
    }
}

/// Output validation defaults; a param profile may override the two switches for itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationSettings {
    /// `JSON_SCHEMA_ENFORCE` (default true): validate JSON wherever the prompt or params ask for it.
    pub json_schema_enforce: bool,
    /// `ENFORCE_NO_ENGLISH` (default true): reject Latin letters in JSON string values.
    pub enforce_no_english: bool,
    /// `AI_CONTENT_RETRIES` (default 3): extra provider calls when content fails validation.
    pub content_retries: u32,
    /// `AI_CONTENT_RETRY_DELAY_MS` (default 1000): pause between content retries.
    pub content_retry_delay: Duration,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            json_schema_enforce: true,
            enforce_no_english: true,
            content_retries: 3,
            content_retry_delay: Duration::from_millis(1000),
        }
    }
}

/// `ACCESS_MODE`: what authenticates an API call (API Gateway, Function URL, FC HTTP trigger).
/// Direct invocations, schedules and queues are authorised by the platform (invoke rights) and
/// never checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// `iam`: the platform's authorizer only (IAM / JWT in front of API Gateway, FC's
    /// `authType: function`); its principal is recorded. The default on Lambda.
    Platform,
    /// `hmac`: every API call must be signed with an access key (scopes, quotas, rate limits).
    /// The default on Function Compute, whose HTTP triggers have no IAM in front.
    Hmac,
    /// `iam+hmac`: both; the platform's principal and the access key are recorded.
    PlatformAndHmac,
    /// `bearer`: every API call must carry an access key's bearer token
    /// (`Authorization: Bearer air-...`, what OpenAI SDKs send); same scopes and limits.
    Bearer,
    /// `keys`: a signed request or a bearer token, whichever the call carries.
    Keys,
    /// `iam+bearer`: the platform's principal and a bearer token.
    PlatformAndBearer,
    /// `iam+keys`: the platform's principal and a signed request or a bearer token.
    PlatformAndKeys,
}

impl AccessMode {
    /// Every mode, in declaration order.
    pub const ALL: [AccessMode; 7] = [
        AccessMode::Platform,
        AccessMode::Hmac,
        AccessMode::PlatformAndHmac,
        AccessMode::Bearer,
        AccessMode::Keys,
        AccessMode::PlatformAndBearer,
        AccessMode::PlatformAndKeys,
    ];

    /// The value of `ACCESS_MODE` that selects this mode.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccessMode::Platform => "iam",
            AccessMode::Hmac => "hmac",
            AccessMode::PlatformAndHmac => "iam+hmac",
            AccessMode::Bearer => "bearer",
            AccessMode::Keys => "keys",
            AccessMode::PlatformAndBearer => "iam+bearer",
            AccessMode::PlatformAndKeys => "iam+keys",
        }
    }

    /// The mode `ACCESS_MODE` names (`iam` may be written `platform`; case and blanks ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let text = match text.strip_prefix("platform") {
            Some(rest) => format!("iam{rest}"),
            None => text,
        };
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// Whether a request signed with an access key (v1 or v2) is accepted.
    pub const fn accepts_signed(self) -> bool {
        matches!(
            self,
            AccessMode::Hmac
                | AccessMode::PlatformAndHmac
                | AccessMode::Keys
                | AccessMode::PlatformAndKeys
        )
    }

    /// Whether an access key's bearer token is accepted.
    pub const fn accepts_bearer(self) -> bool {
        matches!(
            self,
            AccessMode::Bearer
                | AccessMode::Keys
                | AccessMode::PlatformAndBearer
                | AccessMode::PlatformAndKeys
        )
    }

    /// Whether every call needs an access key (signed or bearer): all modes but `iam`.
    pub const fn needs_key(self) -> bool {
        self.accepts_signed() || self.accepts_bearer()
    }

    /// Whether a call also needs the platform's principal: the `iam+` modes that check keys
    /// (`iam` alone leaves the whole decision to the platform).
    pub const fn needs_platform(self) -> bool {
        matches!(
            self,
            AccessMode::PlatformAndHmac
                | AccessMode::PlatformAndBearer
                | AccessMode::PlatformAndKeys
        )
    }
}

impl std::fmt::Display for AccessMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Access control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessSettings {
    /// `ACCESS_MODE` (`iam`, `hmac`, `iam+hmac`, `bearer`, `keys`, `iam+bearer`, `iam+keys`;
    /// default `hmac` on Function Compute, else `iam`).
    pub mode: AccessMode,
    /// `ACCESS_MAX_SKEW_SECS` (default 300, 1..=3600): how far a signed timestamp may be from the
    /// server's clock; nonces are kept as long.
    pub max_skew: Duration,
    /// `ACCESS_FAIL_OPEN` (default false): when the quota and rate counters cannot be reached,
    /// let calls through (logged) instead of answering `ACCESS_UNAVAILABLE`. Key lookup, nonces
    /// and a count whose statement failed (a deadlock, after one more try) always fail closed.
    pub fail_open: bool,
    /// `ACCESS_TRUSTED_PROXY_HOPS` (default 0, at most 8): how many proxies in front of Function
    /// Compute's custom runtime append the address they saw to `X-Forwarded-For`. 0: the caller
    /// is the socket's peer, whatever the request says (a client can write the header itself).
    /// IP allow-lists behind FC's gateway need the hops it adds (1 when it appends the client).
    pub trusted_proxy_hops: usize,
}

pub(super) fn parse_access(get: Getter<'_>) -> Result<AccessSettings, ConfigError> {
    let on_fc = get.get("AWS_LAMBDA_RUNTIME_API").is_none_or(str::is_empty)
        && (get.get("FC_FUNCTION_NAME").is_some_and(|v| !v.is_empty())
            || get.get("FC_SERVER_PORT").is_some_and(|v| !v.is_empty()));
    let mode = match get.get("ACCESS_MODE").map(str::trim) {
        None | Some("") => {
            if on_fc {
                AccessMode::Hmac
            } else {
                AccessMode::Platform
            }
        }
        Some(text) => AccessMode::parse(text).ok_or_else(|| ConfigError::Invalid {
            name: "ACCESS_MODE",
            reason: format!(
                "{text:?} is not one of {}",
                AccessMode::ALL.map(AccessMode::as_str).join(", ")
            ),
        })?,
    };
    let skew = num(get, "ACCESS_MAX_SKEW_SECS", 300u64)?;
    if !(1..=3600).contains(&skew) {
        return Err(ConfigError::Invalid {
            name: "ACCESS_MAX_SKEW_SECS",
            reason: "must be from 1 to 3600".into(),
        });
    }
    Ok(AccessSettings {
        mode,
        max_skew: Duration::from_secs(skew),
        fail_open: flag(get, "ACCESS_FAIL_OPEN", false)?,
        trusted_proxy_hops: {
            let hops = num(get, "ACCESS_TRUSTED_PROXY_HOPS", 0usize)?;
            if hops > 8 {
                return Err(ConfigError::Invalid {
                    name: "ACCESS_TRUSTED_PROXY_HOPS",
                    reason: "must be from 0 to 8".into(),
                });
            }
            hops
        },
    })
}

/// The OpenAI-compatible API (`/v1/chat/completions` on `ai-runner serve` and the functions).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// `OPENAI_UNKNOWN_FIELDS` (`ignore`, the default, as OpenAI-compatible gateways do, or
    /// `refuse`): what happens to a request field that is not one of `request::CALLER_FIELDS`
    /// (or `model`, `messages`, `stream`, `variables`). Ignored fields are never sent on.
    pub refuse_unknown: bool,
    /// `OPENAI_MAX_BODY_BYTES` (default 8 MiB, at least 1 KiB): a larger request body is refused
    /// with `INVALID_INPUT` (413) before it is parsed.
    pub max_body_bytes: usize,
    /// `FUNCTION_URL_STREAMING` (default false): on Lambda, the function's Function URL has
    /// `InvokeMode: RESPONSE_STREAM`, so its HTTP answers go out as response streams (a streaming
    /// chat chunk by chunk, everything else in one piece). Lambda does not tell a function its
    /// URL's invoke mode; API Gateway events are never streamed.
    pub function_url_streaming: bool,
}

pub(super) fn parse_openai(get: Getter<'_>) -> Result<OpenAiSettings, ConfigError> {
    let refuse_unknown = match get
        .get("OPENAI_UNKNOWN_FIELDS")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "ignore") => false,
        Some("refuse") => true,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "OPENAI_UNKNOWN_FIELDS",
                reason: format!("{other:?} is not one of ignore, refuse"),
            });
        }
    };
    Ok(OpenAiSettings {
        refuse_unknown,
        max_body_bytes: num(get, "OPENAI_MAX_BODY_BYTES", 8 * 1024 * 1024usize)?.max(1024),
        function_url_streaming: flag(get, "FUNCTION_URL_STREAMING", false)?,
    })
}

/// How `run-route` runs evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// `EVAL_QUEUE_URL`: the SQS queue a run's chunks go through; unset = run in process.
    pub queue_url: Option<String>,
    /// `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL`: an SQS-protocol server instead of AWS's.
    pub queue_endpoint: Option<String>,
    /// `AWS_REGION` (default `us-east-1`).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): what Lambda sets.
    pub credentials: Option<(String, Secret, Option<Secret>)>,
    /// `EVAL_CHUNK_SIZE` (default 10, 1..=1000): calls per queue message.
    pub chunk_size: usize,
    /// `EVAL_REPORTS_PREFIX` (default `ai-runner/eval-reports/`): where a scheduled run's reports
    /// go in `OSS_BUCKET`.
    pub reports_prefix: String,
}

pub(super) fn parse_eval(get: Getter<'_>) -> Result<EvalSettings, ConfigError> {
    let nonempty = |k: &str| {
        get.get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let chunk_size = num(get, "EVAL_CHUNK_SIZE", 10usize)?;
    if !(1..=1000).contains(&chunk_size) {
        return Err(ConfigError::Invalid {
            name: "EVAL_CHUNK_SIZE",
            reason: "must be from 1 to 1000".into(),
        });
    }
    let reports_prefix =
        nonempty("EVAL_REPORTS_PREFIX").unwrap_or_else(|| "ai-runner/eval-reports/".into());
    if reports_prefix.starts_with('/') {
        return Err(ConfigError::Invalid {
            name: "EVAL_REPORTS_PREFIX",
            reason: "object key prefixes do not start with '/'".into(),
        });
    }
    Ok(EvalSettings {
        queue_url: nonempty("EVAL_QUEUE_URL"),
        queue_endpoint: nonempty("AWS_ENDPOINT_URL_SQS").or_else(|| nonempty("AWS_ENDPOINT_URL")),
        region: nonempty("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        credentials: match (
            nonempty("AWS_ACCESS_KEY_ID"),
            nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Some((
                id,
                Secret::new(secret),
                nonempty("AWS_SESSION_TOKEN").map(Secret::new),
            )),
            _ => None,
        },
        chunk_size,
        reports_prefix,
    })
}

/// How long a process reuses the configuration it resolved (the core's `snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// `AI_CONFIG_CACHE_MS` (default 10,000; 0 = no snapshot): reuse an entry this long after the
    /// database last confirmed it.
    pub cache: Duration,
    /// `AI_CONFIG_CHECK_MS` (default 1,000): read the catalog's version counter at most this
    /// often.
    pub check: Duration,
    /// `AI_CONFIG_STALE_MAX_S` (default 300): while the database does not answer, keep serving
    /// an entry this long after it was last confirmed.
    pub stale_max: Duration,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            cache: Duration::from_millis(10_000),
            check: Duration::from_millis(1_000),
            stale_max: Duration::from_secs(300),
        }
    }
}

impl SnapshotSettings {
    /// True when the snapshot is on.
    pub fn enabled(&self) -> bool {
        !self.cache.is_zero()
    }
}

pub(super) fn parse_snapshot(get: Getter<'_>) -> Result<SnapshotSettings, ConfigError> {
    let d = SnapshotSettings::default();
    Ok(SnapshotSettings {
        cache: Duration::from_millis(num(get, "AI_CONFIG_CACHE_MS", 10_000)?),
        check: Duration::from_millis(num(get, "AI_CONFIG_CHECK_MS", 1_000)?),
        stale_max: Duration::from_secs(num(get, "AI_CONFIG_STALE_MAX_S", d.stale_max.as_secs())?),
    })
}

/// What a config run alone does when its connection's breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAlone {
    /// Fail fast with `CIRCUIT_OPEN` (and `Retry-After`), calling nothing (the default).
    Refuse,
    /// Call the provider anyway (its outcome still counts).
    Try,
}

/// The circuit breakers shared in SQL (the core's `breaker`): when a connection is opened, for
/// how long, and what a config run alone does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// `AI_BREAKER_FAILURES` (default 5; 0 = breakers off): consecutive counted failures of a
    /// connection, by any instance, that open its breaker.
    pub failures: u32,
    /// `AI_BREAKER_WINDOW_S` (default 60): a streak whose first failure is older restarts at 1,
    /// so sporadic failures hours apart never open a breaker.
    pub window: Duration,
    /// `AI_BREAKER_COOLDOWN_S` (default 30): how long an open breaker refuses calls before one
    /// probe may go.
    pub cooldown: Duration,
    /// `AI_BREAKER_RUN_ALONE` (`refuse`, the default, or `try`).
    pub run_alone: RunAlone,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            run_alone: RunAlone::Refuse,
        }
    }
}

impl BreakerSettings {
    /// True when breakers are on.
    pub fn enabled(&self) -> bool {
        self.failures > 0
    }
}

pub(super) fn parse_breaker(get: Getter<'_>) -> Result<BreakerSettings, ConfigError> {
    let d = BreakerSettings::default();
    let run_alone = match get
        .get("AI_BREAKER_RUN_ALONE")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "refuse") => RunAlone::Refuse,
        Some("try") => RunAlone::Try,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "AI_BREAKER_RUN_ALONE",
                reason: format!("expected refuse or try, got {other:?}"),
            });
        }
    };
    Ok(BreakerSettings {
        failures: num(get, "AI_BREAKER_FAILURES", d.failures)?,
        window: Duration::from_secs(num(get, "AI_BREAKER_WINDOW_S", d.window.as_secs())?),
        cooldown: Duration::from_secs(num(get, "AI_BREAKER_COOLDOWN_S", d.cooldown.as_secs())?),
        run_alone,
    })
}
