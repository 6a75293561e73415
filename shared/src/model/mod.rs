//! The core data: what a resolved config and route are, what an audit row holds, what an upload
//! job is. Plain values, no I/O.
//!
//! Invariants: nothing here knows about SQL, HTTP or a platform; every other module may depend on
//! this one and this one depends on none of them (only on [`crate::code`]). The store fills these
//! types, the runner consumes them.

pub mod access;
pub mod bearer;
pub mod breaker;
pub mod cost;
pub mod eval;
pub mod media;
pub mod trail;
mod vocab;

pub(crate) use vocab::vocab;

use serde_json::Value;

/// The provider endpoint of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// `ai_connection.id`.
    pub id: i64,
    /// `ai_connection.name` (the row identity v2 key blobs are bound to).
    pub name: String,
    /// `ai_connection.provider` (`openai`, `dashscope`, ...: picks among providers' prices).
    pub provider: String,
    /// The full chat-completions URL.
    pub base_url: String,
    /// The encrypted key blob, as stored.
    pub key_blob: String,
}

impl ConnectionInfo {
    /// The associated-data binding for this connection's key blob.
    pub fn key_binding(&self) -> String {
        connection_binding(&self.name)
    }
}

vocab! {
    /// What fired a run: the audit row's `trigger_source` and an evaluation run's trigger.
    pub enum Trigger {
        /// A direct function invocation (Lambda `Invoke`, FC invoke).
        Lambda = "lambda",
        /// An API Gateway REST or HTTP API call, or a Function URL.
        Apigw = "apigw",
        /// A Function Compute HTTP trigger.
        Http = "http",
        /// A scheduled rule or timer.
        Schedule = "schedule",
        /// An uploaded object (the upload pipeline).
        Oss = "oss",
        /// The `ai-runner` command line.
        Cli = "cli",
        /// The local web console (`ai-runner dev`).
        Console = "console",
        /// `ai-runner quickstart`.
        Quickstart = "quickstart",
        /// A call an evaluation made (its audit rows).
        Eval = "eval",
        /// An evaluation run started by an API call.
        Api = "api",
        /// A program using the library directly (tests, benchmarks).
        Library = "library",
        /// A call to `ai-runner serve` (its OpenAI-compatible API or its JSON API).
        Serve = "serve",
    }
}

/// Milliseconds since the Unix epoch (0 before it): the timestamps of jobs and evaluation runs.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `ms` as the audit table stores `created_at`: UTC `YYYY-MM-DD HH:MM:SS.mmm` (SQLite's
/// `strftime('%Y-%m-%d %H:%M:%f')`, MariaDB's `DATETIME(3)` in the UTC sessions sqlx opens).
pub fn utc_datetime_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = cost::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

/// The `p`th nearest-rank percentile of `sorted` (ascending), `None` when it is empty: the one
/// percentile of reports and summaries (the smallest value with at least `p`% at or below it).
pub fn percentile<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()).checked_sub(1)?).copied()
}

/// The associated-data binding of `ai_connection.api_key_encrypted` for connection `name`.
pub fn connection_binding(name: &str) -> String {
    format!("ai_connection:{name}")
}

/// A prompt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptInfo {
    /// `ai_prompt.name`.
    pub name: String,
    /// `ai_prompt.version`.
    pub version: String,
    /// `messages_json`, parsed.
    pub messages: Value,
    /// `response_format_json`, parsed.
    pub response_format: Option<Value>,
    /// `variables_json`, parsed.
    pub variables: Option<Value>,
}

/// Everything needed to run one config_key, from one query.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// `ai_config.id`.
    pub config_id: i64,
    /// `ai_config.config_key`.
    pub config_key: String,
    /// `ai_model.name`, sent as `model`.
    pub model: String,
    /// The provider endpoint.
    pub connection: ConnectionInfo,
    /// The prompt, if the config has one.
    pub prompt: Option<PromptInfo>,
    /// `ai_param_profile.params_json`, parsed (key order kept).
    pub params: Option<Value>,
}

/// One active member of a route, with its config resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMember {
    /// `ai_route_member_v2.id`.
    pub member_id: i64,
    /// Lower runs first.
    pub priority: i64,
    /// Relative share for the `weighted` policy (0 = never first).
    pub weight: i64,
    /// The member's config.
    pub config: ResolvedConfig,
}

/// A route and its members, ordered `priority ASC, id ASC`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRoute {
    /// `ai_route_v2.id`.
    pub route_id: i64,
    /// Project name.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// `policy` as stored.
    pub policy: String,
    /// `policy_config_json`, parsed.
    pub policy_config: Option<Value>,
    /// Route-level variables.
    pub variables: Option<Value>,
    /// Route-level prompt (replaces the member's).
    pub prompt: Option<PromptInfo>,
    /// Route-level params (replace the member's).
    pub params: Option<Value>,
    /// Route-level response_format (replaces the prompt's).
    pub response_format: Option<Value>,
    /// Active members whose config, model and connection are active.
    pub members: Vec<RouteMember>,
}

/// One `ai_call_logs` row. Core columns first (compat.md section 4), then ours.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    /// The config that ran (for routes: the member's).
    pub config_key: String,
    /// Last HTTP status, 0 when no response was obtained.
    pub http_status: u16,
    /// Whole run, milliseconds.
    pub duration_ms: u64,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<i64>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<i64>,
    /// `usage.total_tokens`.
    pub total_tokens: Option<i64>,
    /// The provider's response id.
    pub response_id: Option<String>,
    /// Stable error code, `None` on success.
    pub error_code: Option<String>,
    /// Short error message.
    pub error_message: Option<String>,
    /// The body sent plus `_trace_id` (never the key).
    pub request_body_json: Option<String>,
    /// The provider's JSON answer.
    pub response_body_json: Option<String>,
    /// Trace id shared with the provider (`X-Trace-Id`).
    pub trace_id: String,
    /// `ok` or `error` (read back from `error_code` when a spooled row is replayed).
    #[serde(skip_deserializing)]
    pub status: &'static str,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Milliseconds spent waiting on the provider.
    pub provider_ms: Option<u64>,
    /// Time to first token (streams).
    pub ttft_ms: Option<u64>,
    /// What fired the run: `cli`, `lambda`, `apigw`, `schedule`, `oss`, `library`.
    pub trigger_source: String,
    /// The platform request id (Lambda / FC), if any.
    pub request_id: Option<String>,
    /// The model sent.
    pub model_name: Option<String>,
    /// Project (routes) or PROJECT_NAME.
    pub project_name: Option<String>,
    /// Route key, for route member attempts.
    pub route_key: Option<String>,
    /// Route policy.
    pub route_policy: Option<String>,
    /// 1-based member attempt within the route.
    pub route_attempt: Option<u32>,
    /// Why the route moved on from this member (its error code), if it did.
    pub handover_reason: Option<String>,
    /// The row's own unique key (`<trace id>-<member attempt>`): a row written again (a spooled
    /// row replayed after an insert whose outcome was unknown) is never stored twice.
    #[serde(default)]
    pub row_key: Option<String>,
    /// The access key id that signed the call (API calls with `ACCESS_MODE=hmac`).
    #[serde(default)]
    pub caller_key: Option<String>,
    /// The platform authorizer's principal (IAM ARN, `jwt:<sub>`, Lambda authorizer id).
    #[serde(default)]
    pub caller_principal: Option<String>,
    /// The caller's address as the platform saw it.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// What the run's provider calls cost, in nano-USD (`None`: unpriced, never 0).
    #[serde(default)]
    pub cost_nano_usd: Option<i64>,
    /// `priced`, `estimated` or `unpriced`.
    #[serde(default)]
    pub cost_status: Option<String>,
    /// The `ai_model_price` row used.
    #[serde(default)]
    pub price_id: Option<i64>,
    /// When the call was audited, milliseconds since the epoch: bound as `created_at`, so a row
    /// replayed from the spool keeps the call's time, not the replay's (`None`: a row spooled
    /// before this field existed; the replay takes the time from its spool key).
    #[serde(default)]
    pub created_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(super::percentile(&v, 50), Some(50));
        assert_eq!(super::percentile(&v, 95), Some(95));
        assert_eq!(super::percentile(&v, 100), Some(100));
        assert_eq!(super::percentile(&[7], 95), Some(7));
        assert_eq!(super::percentile(&[3u64, 9], 50), Some(3));
        assert_eq!(super::percentile::<i64>(&[], 50), None);
    }
}
