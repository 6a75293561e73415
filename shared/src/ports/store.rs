//! The database's ports: configs, routes and audit rows (`Store`), the shared circuit breakers
//! (`BreakerStore`), prices and budgets (`CostStore`), upload jobs (`JobStore`), evaluation runs
//! (`EvalStore`), keys and counters (`AccessStore`), and [`StoreError`].

use std::collections::BTreeSet;
use std::future::Future;

use serde_json::Value;

use crate::code::Code;
use crate::model::access::{Admission, StoredKey};
use crate::model::breaker::{BreakerRow, Limits};
use crate::model::cost::{Budget, Claim as BudgetClaim, Hold, Price, Reserved, Settled};
use crate::model::eval::{CaseResult, EvalRun, Report};
use crate::model::media::{Claim, JobFinish, JobKey, MediaMapping};
use crate::model::{AuditRow, ResolvedConfig, ResolvedRoute};

use super::Cause;

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
