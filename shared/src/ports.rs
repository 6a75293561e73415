//! The ports: the small traits the core uses to reach the outside (the database: configs,
//! routes and audit rows in `Store`, prices and budgets in its `CostStore` part, upload jobs in
//! `JobStore`, evaluation runs in `EvalStore`, keys and counters in `AccessStore`; a
//! chat-completions `Provider`; an `ObjectStore`; the evaluation `Queue`), with the values and
//! errors that cross them.
//!
//! Invariants: the core (`run`, `media`, `eval`, `cost`, `access`, `spool`) depends only on
//! these traits. Each has a real implementation in its own module (`store::Db` on MySQL and
//! SQLite, `provider::HttpProvider`, `objects`, `queue::SqsQueue`), tested against real
//! servers, and the store, provider and queue ports have in-process fakes in the test helpers
//! (`ai_runner_tests::fake`) that keep the same contract (the lease, finalize-claim and
//! reservation scenarios run on the fake and on SQLite alike), so the core's policies are
//! tested without a socket. What a method promises
//! about atomicity (a conditional claim, an all-or-none reservation) or about which version it
//! reads (an object read's [`ObjectPin`]) is part of its contract.
//! Every error here has a stable [`Code`] and says whether retrying may help.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::code::Code;
use crate::model::access::{Admission, StoredKey};
use crate::model::breaker::{BreakerRow, Limits};
use crate::model::cost::{Budget, Claim as BudgetClaim, Hold, Price, Reserved, Settled};
use crate::model::eval::{CaseResult, EvalRun, Report};
pub use crate::model::media::ObjectPin;
use crate::model::media::{Claim, JobFinish, JobKey, MediaMapping};
use crate::model::{AuditRow, ResolvedConfig, ResolvedRoute};
use crate::secret::Secret;

/// A boxed, sendable error: the cause behind a port error (for logs, never shown to callers).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------------------------

/// Why the database could not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No active config with this key (or its model/connection is missing or inactive).
    #[error("no active config named {0:?}")]
    ConfigNotFound(String),
    /// No active route with this key in this active project.
    #[error("no active route {route_key:?} in project {project:?}")]
    RouteNotFound {
        /// Project name.
        project: String,
        /// Route key.
        route_key: String,
    },
    /// The route exists but has no active member with an active config.
    #[error("route {0:?} has no active members")]
    NoActiveMembers(String),
    /// The database has no schema yet (the embedded file does not exist, or the tables are
    /// missing); the text says which.
    #[error("{0}")]
    NotInitialized(String),
    /// A table our migrations add is missing (`ai-runner db migrate` adds it).
    #[error("{0} is missing: the database is behind our schema")]
    Outdated(&'static str),
    /// The server could not be reached or refused us.
    #[error("database unavailable")]
    Unavailable(#[source] Cause),
    /// A statement failed.
    #[error("database error")]
    Query(#[source] Cause),
    /// A stored JSON column does not parse.
    #[error("stored JSON in {column} is invalid")]
    BadJson {
        /// Which column.
        column: &'static str,
    },
    /// A stored text column holds a value outside its closed vocabulary (a status, a trigger).
    #[error("stored value {value:?} in {column} is not one this version knows")]
    BadValue {
        /// Which column.
        column: &'static str,
        /// What it holds (cut to 64 characters).
        value: String,
    },
}

impl StoreError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::ConfigNotFound(_) => Code::ConfigNotFound,
            Self::RouteNotFound { .. } => Code::RouteNotFound,
            Self::NoActiveMembers(_) => Code::NoActiveMembers,
            Self::NotInitialized(_) => Code::DbNotInitialized,
            Self::Outdated(_) => Code::SchemaOutdated,
            Self::Unavailable(_) => Code::DbUnavailable,
            Self::Query(_) => Code::DbError,
            Self::BadJson { .. } | Self::BadValue { .. } => Code::StoredJsonInvalid,
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Query(_))
    }
}

/// The circuit breakers every instance shares (`ai_connection_breaker`): read now and then into
/// the process, written only on counted failures and transitions, each write one conditional
/// statement (see [`crate::model::breaker`] for the rules). A database without the table answers
/// [`StoreError::Outdated`].
pub trait BreakerStore: Send + Sync {
    /// Every breaker that is not clean (a streak, open, or a probe claimed).
    fn breakers(&self) -> impl Future<Output = Result<Vec<BreakerRow>, StoreError>> + Send;
    /// Counts one failure of `connection_id` (opening or re-opening it as the rules say).
    fn breaker_failed(
        &self,
        connection_id: i64,
        defaults: Limits,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Closes the breaker after a call found the provider up; true when it changed.
    fn breaker_succeeded(
        &self,
        connection_id: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Claims the half-open probe until `until_ms`; true for exactly one caller.
    fn claim_probe(
        &self,
        connection_id: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What the runner needs from a database.
pub trait Store: CostStore + BreakerStore + Send + Sync {
    /// Resolves an active config_key with one query.
    fn resolve_config(
        &self,
        config_key: &str,
    ) -> impl Future<Output = Result<ResolvedConfig, StoreError>> + Send;
    /// Commits one audit row; returns its id.
    fn insert_audit(&self, row: &AuditRow) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Resolves an active route of an active project with its active members (two queries).
    fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> impl Future<Output = Result<ResolvedRoute, StoreError>> + Send;
    /// Atomically advances a route's round-robin cursor and returns its new position; `None`
    /// when the cursor table is missing (an unmigrated database).
    fn next_cursor(
        &self,
        route_id: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// The position the next [`Store::next_cursor`] call would return, without advancing.
    fn peek_cursor(
        &self,
        route_id: i64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// The catalog's version counter, which every catalog write bumps in its transaction;
    /// `None` where there is no counter (the predecessor's schema): the snapshot then relies on
    /// its age alone.
    fn catalog_version(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// How many catalog writes this process has committed (no I/O): the snapshot sees the
    /// process's own writes at once.
    fn local_catalog_writes(&self) -> u64;
}

/// What the upload pipeline needs from its job table.
pub trait JobStore: Send + Sync {
    /// The most specific active mapping for an object.
    fn find_mapping(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<MediaMapping>, StoreError>> + Send;
    /// Claims the job of one object version (atomic; see [`Claim`]).
    fn claim_job(
        &self,
        job: &JobKey,
        project: &str,
        route_key: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Makes a finished job claimable again (a forced re-run).
    fn reopen_job(&self, job: &JobKey) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records how a job ended, if this caller still holds it (`finish.attempt` is the claim's):
    /// false when another delivery took the job over since.
    fn finish_job(
        &self,
        id: i64,
        finish: &JobFinish,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What an evaluation run needs from its tables: runs and their results, written as they
/// finish (so an interrupted run resumes without redoing what is done).
pub trait EvalStore: Send + Sync {
    /// Records a new run (status `running`).
    fn create_run(&self, run: &EvalRun) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records one result; recording the same (run, target, case, repetition) again changes
    /// nothing (a redelivered or resumed job never counts twice).
    fn record_result(
        &self,
        run_key: &str,
        result: &CaseResult,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records several results in one transaction (one commit), each like [`Self::record_result`].
    fn record_results(
        &self,
        run_key: &str,
        results: &[CaseResult],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records how the run ended (`finished`, or `stopped` when the report says it stopped
    /// early). With a finalizer's `token`, only while that finalizer still holds the run; true
    /// when the row was written.
    fn finish_run(
        &self,
        run_key: &str,
        report: &Report,
        report_location: Option<&str>,
        token: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Takes the right to finalize a run (from `running` / `stopping`, or from a finalizer whose
    /// claim is older than `stale_before_ms`): exactly one caller gets true.
    fn claim_finalize(
        &self,
        run_key: &str,
        token: &str,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Moves a `running` run to `status` (`stopping`, `failed`) with a reason; true if it was
    /// running.
    fn stop_run(
        &self,
        run_key: &str,
        status: crate::model::eval::EvalStatus,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Folds one chunk into the run's streak of consecutive provider failures, atomically
    /// (chunks run in parallel): when every call of the chunk failed so, the streak grows by
    /// `added`, else it becomes `trailing` (the chunk's last consecutive failures). Returns the
    /// streak now stored.
    fn note_failures(
        &self,
        run_key: &str,
        all_failed: bool,
        added: i64,
        trailing: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// How many results a run has.
    fn count_results(&self, run_key: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// The (target, case, repetition) a run has results for.
    fn result_keys(
        &self,
        run_key: &str,
    ) -> impl Future<Output = Result<BTreeSet<(String, String, u32)>, StoreError>> + Send;
    /// The evals document (`{datasets, suites}`) holding suite `name` and its dataset's cases,
    /// from the evaluation catalog tables; `None` when no active suite has that name.
    fn suite_document(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;
    /// One run.
    fn eval_run(
        &self,
        run_key: &str,
    ) -> impl Future<Output = Result<Option<EvalRun>, StoreError>> + Send;
    /// A run's results, in the order they were recorded.
    fn eval_results(
        &self,
        run_key: &str,
    ) -> impl Future<Output = Result<Vec<CaseResult>, StoreError>> + Send;
    /// Recent runs, newest first, of one suite or all.
    fn eval_runs(
        &self,
        suite: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<EvalRun>, StoreError>> + Send;
    /// The latest finished run of `suite` other than `except` (the default baseline).
    fn last_finished_run(
        &self,
        suite: &str,
        except: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// The access tables: keys looked up by id, nonces used once, and the quota counters. Every
/// write here is one atomic statement, so concurrent instances can neither reuse a nonce nor
/// overshoot a limit.
pub trait AccessStore: Send + Sync {
    /// The key with this public id, in either table (`None` when there is none).
    fn find_key(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<StoredKey>, StoreError>> + Send;
    /// Records `nonce` for the key until `expires_ms`; `false` when it is already recorded (a
    /// replay). Expired nonces are purged now and then. (What `admit` does first, alone: used
    /// when the counters cannot be reached and `ACCESS_FAIL_OPEN` lets calls through.)
    fn use_nonce(
        &self,
        access_key_id: &str,
        nonce: &str,
        expires_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// In one transaction: records the nonce (a replay when it is already recorded), then
    /// counts the call in the key's current second unless `rps` calls are counted there, then on
    /// its UTC day unless `daily` calls are (a refusal is counted as such). Limits of `None` are
    /// unlimited; the day is counted either way (usage).
    fn admit(
        &self,
        access_key_id: &str,
        nonce: &str,
        nonce_until_ms: i64,
        rps: Option<u32>,
        daily: Option<u32>,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;
    /// What `admit` does without a nonce (a bearer call has none), in the same one
    /// transaction: counts the call in the key's current second unless `rps` calls are counted
    /// there, then on its UTC day unless `daily` calls are. Never [`Admission::Replay`].
    fn count_call(
        &self,
        access_key_id: &str,
        rps: Option<u32>,
        daily: Option<u32>,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;
    /// Writes the call's `ai_user_call_log` row, linked to its audit row.
    fn log_call(&self, call: &KeyCall) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether this key's call of this trace has its `ai_user_call_log` row already: a spooled
    /// row whose first insert did commit (an ambiguous failure) is not replayed twice.
    fn call_logged(
        &self,
        trace_id: &str,
        access_key_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Prices and budgets: what the runner reads to price a call, and the two writes that keep a
/// budget: a reservation before the call and its settlement after it, each one transaction in
/// which every budget is checked and counted by the database (never read, then written).
pub trait CostStore: Send + Sync {
    /// The active price rows named exactly `model`, plus every prefix row (`name*`).
    fn prices_for(
        &self,
        model: &str,
    ) -> impl Future<Output = Result<Vec<Price>, StoreError>> + Send;
    /// Every active budget.
    fn active_budgets(&self) -> impl Future<Output = Result<Vec<Budget>, StoreError>> + Send;
    /// Reserves every claim in its window under `hold` (its identity and expiry), or none: the
    /// first budget whose used and reserved amounts plus the claim would pass its limit refuses
    /// the lot (and counts a refusal), after the reservations of the claimed windows that had
    /// expired were reclaimed (their calls died before settling).
    fn reserve(
        &self,
        hold: &Hold,
        claims: &[BudgetClaim],
    ) -> impl Future<Output = Result<Reserved, StoreError>> + Send;
    /// Grows the reservation `hold` by each claim's amount, or not at all, as
    /// [`CostStore::reserve`] decides (a refusal is counted; a reservation no longer held, as
    /// reclaimed or released, is refused).
    fn extend(
        &self,
        hold: &Hold,
        claims: &[BudgetClaim],
    ) -> impl Future<Output = Result<Reserved, StoreError>> + Send;
    /// Replaces each claim's reservation with `cost_nano`, the call's real cost: what `hold`
    /// still holds is freed (nothing when it was reclaimed or released meanwhile; a store without
    /// reservation rows frees each claim's amount) and the cost added; returns each window's use
    /// afterwards.
    fn settle(
        &self,
        hold: &Hold,
        claims: &[BudgetClaim],
        cost_nano: i64,
    ) -> impl Future<Output = Result<Vec<Settled>, StoreError>> + Send;
}

/// One call a key made (signed or bearer), as `ai_user_call_log` keeps it (and as the spool
/// keeps it while the database is down).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct KeyCall {
    /// The access key id.
    pub access_key_id: String,
    /// `ai_user.id` (user keys).
    pub user_id: Option<i64>,
    /// `ai_user_key.id` (user keys).
    pub key_id: Option<i64>,
    /// The project (routes) or `-`.
    pub project_name: String,
    /// The route key, or the config key for run-once calls.
    pub route_key: String,
    /// The HTTP status answered.
    pub http_status: u16,
    /// Whole call.
    pub duration_ms: u64,
    /// Prompt tokens.
    pub tokens_prompt: Option<i64>,
    /// Completion tokens.
    pub tokens_completion: Option<i64>,
    /// The (last) audit row.
    pub ai_call_log_id: Option<i64>,
    /// The run's trace id.
    pub trace_id: Option<String>,
    /// When the call was made, milliseconds since the epoch: bound as `created_at`, so a row
    /// replayed from the spool keeps the call's time (`None`: now).
    #[serde(default)]
    pub created_at_ms: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

/// Why the provider did not give a usable answer (after retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 429.
    #[error("provider rate limit (HTTP 429){}", detail(.0))]
    RateLimited(Option<String>),
    /// HTTP 5xx.
    #[error("provider server error (HTTP {status}){}", detail(.message))]
    Server {
        /// Status.
        status: u16,
        /// Provider's error message, scrubbed.
        message: Option<String>,
    },
    /// Any other non-2xx status (400, 401, 404, ...).
    #[error("provider rejected the request (HTTP {status}){}", detail(.message))]
    Status {
        /// Status.
        status: u16,
        /// Provider's error message, scrubbed.
        message: Option<String>,
    },
    /// A 3xx answer: redirects are never followed (a provider, or anything on the path of an
    /// `http://` base URL, could otherwise send the runner, and its key, anywhere).
    #[error("provider answered with a redirect (HTTP {status}{}); redirects are not followed", location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default())]
    Redirect {
        /// Status.
        status: u16,
        /// The `Location` it named, scheme and host only (never a path or query).
        location: Option<String>,
    },
    /// No complete answer within `AI_TIMEOUT`.
    #[error("provider did not answer within {0} ms")]
    Timeout(u64),
    /// Connection refused, reset, DNS, TLS.
    #[error("cannot reach provider: {0}")]
    Network(String),
    /// The request could not be sent at all (bad URL, bad header).
    #[error("cannot send request: {0}")]
    Request(String),
    /// A 2xx answer that is not a chat completion (not JSON, no choices, broken stream).
    #[error("provider answer is unusable: {0}")]
    BadResponse(String),
    /// The answer (body or stream) grew past the limit; the rest was not read.
    #[error("provider answer is larger than {0} bytes (AI_MAX_RESPONSE_BYTES)")]
    TooLarge(u64),
    /// The deadline left no time for (another) attempt; the last failure, if any, is in the text.
    #[error("deadline reached: {0}")]
    Deadline(String),
    /// The streaming caller went away; the provider's stream was dropped after this many chunks
    /// had been relayed.
    #[error("the caller disconnected after {0} relayed chunks; the provider's stream was dropped")]
    CallerGone(usize),
}

fn detail(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

impl ProviderError {
    /// Stable code (compat.md section 5).
    pub fn code(&self) -> Code {
        match self {
            Self::RateLimited(_) => Code::Http429RateLimit,
            Self::Server { .. } => Code::Http5xxServerError,
            Self::Status { .. } => Code::HttpStatusError,
            Self::Timeout(_) => Code::NetworkTimeout,
            Self::Network(_) => Code::NetworkError,
            Self::Request(_) => Code::RequestError,
            Self::BadResponse(_) => Code::BadProviderResponse,
            Self::TooLarge(_) => Code::ResponseTooLarge,
            Self::Redirect { .. } => Code::ProviderRedirect,
            Self::Deadline(_) => Code::DeadlineExceeded,
            Self::CallerGone(_) => Code::ClientDisconnected,
        }
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Server { .. } | Self::Timeout(_) | Self::Network(_)
        )
    }
}

/// One request to send (borrowed from the run).
#[derive(Debug, Clone, Copy)]
pub struct ProviderRequest<'a> {
    /// Full chat-completions URL.
    pub url: &'a str,
    /// Bearer key.
    pub api_key: &'a Secret,
    /// JSON body, in wire order.
    pub body: &'a Map<String, Value>,
    /// `X-Trace-Id`.
    pub trace_id: &'a str,
    /// Read the answer as an SSE stream.
    pub stream: bool,
    /// No attempt or backoff may run past this.
    pub deadline: Option<std::time::Instant>,
    /// A streaming caller waiting for the chunks as they arrive (the OpenAI-compatible API).
    /// Once one has been relayed, the exchange is not retried: the caller has seen the answer.
    pub tap: Option<&'a StreamTap>,
    /// Asked before a retry of an attempt the provider may have billed (see [`RetryGate`]).
    pub gate: Option<&'a dyn RetryGate>,
    /// Another route member can take the call: a retry that would wait longer than
    /// `AI_RETRY_AFTER_CAP_MS` (the provider's `Retry-After`) or than the deadline leaves is not
    /// waited for; the exchange ends with the provider's own failure, which hands over.
    pub hand_over: bool,
}

/// What a provider asks before it retries an attempt the provider may have billed (an answer
/// that began, a request that timed out): each billed attempt must be covered, so the call's
/// budget reservation grows by another attempt's maximum cost first. Retries of attempts that
/// cost nothing (429, 5xx, no connection) are not asked about.
pub trait RetryGate: Send + Sync + std::fmt::Debug {
    /// `true`: send the retry; `false` (no room for it): the exchange ends with the attempt it
    /// would have retried.
    fn admit(&self) -> BoxFuture<'_, bool>;
}

/// A streaming caller's end of a provider stream: each parsed `chat.completion.chunk` is sent
/// through a bounded channel as it arrives (a slow caller slows the read, never grows memory).
/// Cloning shares the channel and the "started" flag.
#[derive(Debug, Clone)]
pub struct StreamTap {
    tx: tokio::sync::mpsc::Sender<Value>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StreamTap {
    /// Chunks a slow caller may lag behind the provider by.
    pub const BUFFER: usize = 64;

    /// A tap and the receiver the caller's connection reads from.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<Value>) {
        let (tx, rx) = tokio::sync::mpsc::channel(Self::BUFFER);
        let tap = Self {
            tx,
            sent: std::sync::Arc::default(),
        };
        (tap, rx)
    }

    /// Relays one chunk; `false` when the caller has gone away.
    pub async fn send(&self, chunk: Value) -> bool {
        let ok = self.tx.send(chunk).await.is_ok();
        if ok {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        ok
    }

    /// How many chunks have been relayed.
    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether any chunk has reached the caller (from then on nothing is retried or handed over).
    pub fn started(&self) -> bool {
        self.sent() > 0
    }

    /// Whether the caller has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What happened on the wire, success or not.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// HTTP attempts made (1 + retries).
    pub attempts: u32,
    /// Status of the last response, 0 when none was obtained.
    pub http_status: u16,
    /// Wall time from the first send to the final answer, including backoff.
    pub provider_ms: u64,
    /// The same in microseconds (for overhead measurements).
    pub provider_us: u64,
    /// Time to first content token on the successful attempt (streams).
    pub ttft_ms: Option<u64>,
    /// The answer (assembled for streams) or the provider's JSON error body, scrubbed.
    pub body: Option<Value>,
    /// Set when the exchange failed.
    pub error: Option<ProviderError>,
    /// Earlier attempts the provider may have billed before they were retried: a stream that
    /// broke off after the answer began, or a request that timed out.
    pub earlier: Vec<BilledAttempt>,
}

/// An attempt that was retried but may still have been billed.
#[derive(Debug, Clone, Default)]
pub struct BilledAttempt {
    /// Its status (2xx: the answer had begun; 0: no answer, it timed out).
    pub http_status: u16,
    /// What arrived (the partial answer, maybe with usage).
    pub body: Option<Value>,
}

/// Something that can answer chat-completion requests.
pub trait Provider: Send + Sync {
    /// Sends with retries; never fails outright (failures are in [`Exchange::error`]).
    fn send(&self, req: ProviderRequest<'_>) -> impl Future<Output = Exchange> + Send;
}

// ---------------------------------------------------------------------------------------------
// Object storage
// ---------------------------------------------------------------------------------------------

/// A boxed future, so the trait can be used as `dyn ObjectStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such bucket or key.
    #[error("object s3://{bucket}/{key} not found")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The store refused (credentials, policy).
    #[error("object store denied access to s3://{bucket}/{key}")]
    Denied {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The object is no longer the version its event named: the pinned ETag does not match
    /// (S3's 412 `PreconditionFailed`). A newer upload replaced it; its own event is its job.
    #[error(
        "object s3://{bucket}/{key} changed since its event: it is no longer the version named"
    )]
    Changed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// This store cannot do that (e.g. presign on a local directory).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store refused the request itself (bad key, invalid argument, key too long): asking
    /// again cannot help.
    #[error("object store rejected the request: {0}")]
    Invalid(String),
    /// Network, timeout, server error.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

impl ObjectError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound { .. } => Code::ObjectNotFound,
            Self::Denied { .. } => Code::ObjectAccessDenied,
            Self::Changed { .. } => Code::ObjectChanged,
            Self::Unsupported(_) => Code::ObjectOperationUnsupported,
            Self::Invalid(_) => Code::ObjectFailed,
            Self::Unavailable(_) => Code::ObjectStoreUnavailable,
        }
    }

    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a HEAD tells.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMeta {
    /// Bytes.
    pub size: u64,
    /// `Content-Type`, if the store knows it.
    pub content_type: Option<String>,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Version id, on versioned buckets.
    pub version_id: Option<String>,
    /// A recording's length in seconds, when the uploader said it (user metadata
    /// `duration-seconds`: `x-amz-meta-duration-seconds`): models priced per second use it.
    pub duration_seconds: Option<f64>,
}

/// The operations the pipeline and spill-over need. `head`, `get` and `presign_get` take an
/// [`ObjectPin`]: the size check and the read see the same version, or fail.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Size, type and identity of an object (of the pinned version).
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<ObjectMeta, ObjectError>>;
    /// The whole object (the pinned version, read whole or refused).
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<Vec<u8>, ObjectError>>;
    /// Writes an object (private: no ACL is granted).
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>>;
    /// A time-limited GET URL of the pinned version: a version id is signed into the URL; an
    /// ETag cannot be (the provider sends no `If-Match`), so it is checked when signing.
    fn presign_get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
        expires: Duration,
    ) -> BoxFuture<'a, Result<String, ObjectError>>;
    /// Removes an object (removing one that is not there is not an error).
    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>>;
    /// Keys under `prefix`, in key order, at most `max`.
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectError>>;
}

/// Why a queue did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not be reached or refused the messages (retryable).
    #[error("the queue did not take the messages: {0}")]
    Unavailable(String),
}

/// A message queue (SQS): where an evaluation run's chunks go, for `run-route` to consume.
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Sends every message (batched as the queue allows): `Ok` only when all were taken.
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), QueueError>>;
}
