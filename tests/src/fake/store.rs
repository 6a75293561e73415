//! An in-memory store implementing the store ports the core uses: [`Store`] (configs, routes,
//! the round-robin cursor, audit rows) with its [`CostStore`] part (prices, budgets), the
//! upload pipeline's [`JobStore`] and the evaluation runs' [`EvalStore`].
//!
//! Invariants: every port method takes the one lock once and does its whole work under it, so
//! each is as atomic as the statement or transaction `Db` runs for it: a reservation checks every
//! claim's limit and reserves all or none; a job claim and a finalize claim are conditional (two
//! racing callers never both win); a job is finished only by the holder of its current attempt;
//! a finalizer's write is fenced by its token. The lock is never held across an `.await`. Rules
//! are the SQL's, statement for statement (`store/sql.rs`, `store/cost.rs`), so a scenario
//! gives the same outcome here and on SQLite (`policy::contract` checks that). Handles are
//! cheap clones sharing one state: two runners on clones are two instances on one database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ai_runner::model::cost::{
    Budget, BudgetScope, BudgetUse, Claim as BudgetClaim, Held, Hold, Period, Price, Reserved,
    Settled,
};
use ai_runner::model::eval::{CaseResult, EvalRun, EvalStatus, Report};
use ai_runner::model::media::{
    Claim, JobFinish, JobKey, JobRow, JobStatus, MediaMapping, most_specific,
};
use ai_runner::model::{AuditRow, ResolvedConfig, ResolvedRoute, RouteMember, now_ms};
use ai_runner::ports::{CostStore, EvalStore, JobStore, Store, StoreError};
use serde_json::Value;

/// One budget window's counters (`ai_budget_use`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// nano-USD settled.
    pub used: i64,
    /// nano-USD reserved by calls in flight.
    pub reserved: i64,
    /// Calls settled.
    pub calls: i64,
    /// Reservations refused.
    pub refused: i64,
}

#[derive(Debug)]
struct Job {
    key: JobKey,
    lease_until_ms: i64,
    row: JobRow,
}

#[derive(Debug)]
struct Run {
    run: EvalRun,
    finalize_token: Option<String>,
    finalize_ms: i64,
    results: Vec<CaseResult>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// When set, every port call fails as a database outage would.
    down: bool,
    /// `ai_connection_breaker`, by connection id (see `fake::breaker`).
    pub(super) breakers: HashMap<i64, ai_runner::model::breaker::BreakerRow>,
    /// The breaker table is missing (an unmigrated database).
    pub(super) no_breaker_table: bool,
    configs: BTreeMap<String, ResolvedConfig>,
    routes: BTreeMap<(String, String), ResolvedRoute>,
    cursors: HashMap<i64, u64>,
    audit: Vec<AuditRow>,
    prices: Vec<Price>,
    budgets: Vec<(Budget, bool)>,
    windows: BTreeMap<(i64, String), Window>,
    reservations: u64,
    /// `ai_budget_reservation`: by (reservation id, budget id).
    held: BTreeMap<(String, i64), Held>,
    mappings: Vec<MediaMapping>,
    jobs: Vec<Job>,
    runs: Vec<Run>,
    suites: BTreeMap<String, Value>,
    next_id: i64,
    /// Catalog writes by "this process" (the seeding writers below).
    local_writes: u64,
    /// The catalog version counter (bumped by every catalog write, here or elsewhere).
    version: i64,
    /// Config and route resolutions answered.
    resolves: u64,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn up(&self) -> Result<(), StoreError> {
        if self.down {
            Err(StoreError::Unavailable("the memory store is down".into()))
        } else {
            Ok(())
        }
    }

    /// A reservation (or, `extend`, its growth) checked against every limit before anything is
    /// reserved: all or none, under one lock; on a refusal the claimed windows' expired
    /// reservations are reclaimed and it is tried again; a refusal is counted on its window.
    fn reserve_or_refuse(&mut self, hold: &Hold, claims: &[BudgetClaim], extend: bool) -> Reserved {
        let mut full = self.try_reserve(hold, claims, extend);
        if full.is_some() {
            let freed: usize = claims
                .iter()
                .map(|c| self.reclaim(c.budget.id, &c.window, now_ms()))
                .sum();
            if freed > 0 {
                full = self.try_reserve(hold, claims, extend);
            }
        }
        let Some(c) = full else {
            return Reserved::Granted;
        };
        let w = self
            .windows
            .entry((c.budget.id, c.window.clone()))
            .or_default();
        w.refused += 1;
        let spent = w.used + w.reserved;
        Reserved::Refused {
            budget: c.budget.clone(),
            spent,
        }
    }

    /// All or none of `claims` (`grow`: added to the reservation's rows), as `try_reserve!`;
    /// the claim with no room when refused.
    fn try_reserve(
        &mut self,
        hold: &Hold,
        claims: &[BudgetClaim],
        grow: bool,
    ) -> Option<BudgetClaim> {
        let full = claims.iter().find(|c| {
            let w = self
                .windows
                .get(&(c.budget.id, c.window.clone()))
                .copied()
                .unwrap_or_default();
            w.used + w.reserved + c.amount > c.budget.limit_nano
                || (grow && !self.held.contains_key(&(hold.id.clone(), c.budget.id)))
        });
        if let Some(c) = full {
            return Some(c.clone());
        }
        for c in claims {
            self.windows
                .entry((c.budget.id, c.window.clone()))
                .or_default()
                .reserved += c.amount;
            let row = self
                .held
                .entry((hold.id.clone(), c.budget.id))
                .or_insert_with(|| Held {
                    id: hold.id.clone(),
                    budget_id: c.budget.id,
                    window: c.window.clone(),
                    amount_nano: 0,
                    created_ms: hold.created_ms,
                    expires_ms: hold.expires_ms,
                    trace_id: Some(hold.trace_id.clone()),
                });
            row.amount_nano += c.amount;
        }
        None
    }

    /// Deletes a reservation row and takes its amount off its window; false when it was gone.
    fn free(&mut self, id: &str, budget_id: i64) -> bool {
        let Some(h) = self.held.remove(&(id.to_owned(), budget_id)) else {
            return false;
        };
        let w = self.windows.entry((budget_id, h.window)).or_default();
        w.reserved = (w.reserved - h.amount_nano).max(0);
        true
    }

    /// Reclaims the window's reservations that expired before `now_ms`; how many.
    fn reclaim(&mut self, budget_id: i64, window: &str, now_ms: i64) -> usize {
        let expired: Vec<String> = self
            .held
            .values()
            .filter(|h| h.budget_id == budget_id && h.window == window && h.expires_ms < now_ms)
            .map(|h| h.id.clone())
            .collect();
        expired.iter().filter(|id| self.free(id, budget_id)).count()
    }

    fn run(&mut self, run_key: &str) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.run.run_key == run_key)
    }
}

/// The memory store (cheap to clone: clones share one state).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the store down (every port call fails `DB_UNAVAILABLE`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    // ---- what the seeding writers do ----

    /// Stores an active config (its `config_id` assigned here); returns it as stored.
    pub fn add_config(&self, mut cfg: ResolvedConfig) -> ResolvedConfig {
        let mut s = self.lock();
        cfg.config_id = s.id();
        s.configs.insert(cfg.config_key.clone(), cfg.clone());
        s.local_writes += 1;
        s.version += 1;
        cfg
    }

    /// Replaces a stored config as another process's catalog write would: the version counter
    /// moves, this process's write count does not.
    pub fn write_elsewhere(&self, cfg: ResolvedConfig) {
        let mut s = self.lock();
        s.configs.insert(cfg.config_key.clone(), cfg);
        s.version += 1;
    }

    /// Deactivates a stored config as another process's catalog write would (the counter moves).
    pub fn remove_elsewhere(&self, config_key: &str) {
        let mut s = self.lock();
        s.configs.remove(config_key);
        s.version += 1;
    }

    /// Replaces a stored config as a raw SQL edit would (the predecessor's scripts): no counter
    /// moves.
    pub fn edit_behind(&self, cfg: ResolvedConfig) {
        self.lock().configs.insert(cfg.config_key.clone(), cfg);
    }

    /// Config and route resolutions the store has answered.
    pub fn resolves(&self) -> u64 {
        self.lock().resolves
    }

    /// Stores an active route of an active project over stored configs, members given as
    /// `(config_key, priority, weight)`, resolved as `Db` resolves them: ordered `priority ASC,
    /// id ASC`. `policy_config` is `policy_config_json`. Returns the route id; a config that is
    /// not stored is left out, as an inactive one is.
    pub fn add_route(
        &self,
        project: &str,
        route_key: &str,
        policy: &str,
        policy_config: Option<Value>,
        members: &[(&str, i64, i64)],
    ) -> i64 {
        let mut s = self.lock();
        let route_id = s.id();
        let mut resolved = Vec::new();
        for (key, priority, weight) in members {
            let member_id = s.id();
            if let Some(cfg) = s.configs.get(*key) {
                resolved.push(RouteMember {
                    member_id,
                    priority: *priority,
                    weight: *weight,
                    config: cfg.clone(),
                });
            }
        }
        resolved.sort_by_key(|m| (m.priority, m.member_id));
        s.local_writes += 1;
        s.version += 1;
        s.routes.insert(
            (project.to_owned(), route_key.to_owned()),
            ResolvedRoute {
                route_id,
                project: project.to_owned(),
                route_key: route_key.to_owned(),
                policy: policy.to_owned(),
                policy_config,
                variables: None,
                prompt: None,
                params: None,
                response_format: None,
                members: resolved,
            },
        );
        route_id
    }

    /// Stores a price row (id assigned); returns its id.
    pub fn add_price(&self, mut price: Price) -> i64 {
        let mut s = self.lock();
        price.id = s.id();
        s.prices.push(price);
        s.prices.last().map_or(0, |p| p.id)
    }

    /// Sets a budget's limit, creating or re-activating it (as `Db::set_budget`); returns it.
    pub fn set_budget(
        &self,
        scope: BudgetScope,
        target: &str,
        period: Period,
        limit_nano: i64,
    ) -> Budget {
        let mut s = self.lock();
        if let Some((b, active)) = s
            .budgets
            .iter_mut()
            .find(|(b, _)| b.scope == scope && b.target == target && b.period == period)
        {
            b.limit_nano = limit_nano;
            *active = true;
            return b.clone();
        }
        let budget = Budget {
            id: s.id(),
            scope,
            target: target.to_owned(),
            period,
            limit_nano,
        };
        s.budgets.push((budget.clone(), true));
        budget
    }

    /// Adds an active media mapping (as `Db::add_mapping`); returns its id.
    pub fn add_mapping(
        &self,
        bucket: &str,
        key_prefix: &str,
        key_suffix: &str,
        project: &str,
        route_key: &str,
        variables: Option<&Value>,
    ) -> i64 {
        let mut s = self.lock();
        let id = s.id();
        s.mappings.push(MediaMapping {
            id,
            bucket: bucket.to_owned(),
            key_prefix: key_prefix.to_owned(),
            key_suffix: key_suffix.to_owned(),
            project: project.to_owned(),
            route_key: route_key.to_owned(),
            variables: variables.cloned(),
            active: true,
        });
        id
    }

    /// Stores the evals document (`{datasets, suites}`) that [`EvalStore::suite_document`]
    /// answers for suite `name`.
    pub fn add_suite(&self, name: &str, document: Value) {
        self.lock().suites.insert(name.to_owned(), document);
    }

    // ---- what the tests read back ----

    /// Every audit row, in insertion order (row id = position + 1).
    pub fn audit_rows(&self) -> Vec<AuditRow> {
        self.lock().audit.clone()
    }

    /// The audit rows of one trace.
    pub fn audit_rows_for_trace(&self, trace_id: &str) -> Vec<AuditRow> {
        self.lock()
            .audit
            .iter()
            .filter(|r| r.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// A budget window's counters (zero when the window was never claimed).
    pub fn window(&self, budget_id: i64, window: &str) -> Window {
        self.lock()
            .windows
            .get(&(budget_id, window.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Every active budget with its use in the window containing `now_ms` (`budget list`).
    pub fn budget_uses(&self, now_ms: i64) -> Vec<BudgetUse> {
        let s = self.lock();
        s.budgets
            .iter()
            .filter(|(_, active)| *active)
            .map(|(b, _)| {
                let window = b.period.window(now_ms);
                let w = s
                    .windows
                    .get(&(b.id, window.clone()))
                    .copied()
                    .unwrap_or_default();
                let reservations = s
                    .held
                    .values()
                    .filter(|h| h.budget_id == b.id && h.window == window)
                    .cloned()
                    .collect();
                BudgetUse {
                    budget: b.clone(),
                    window,
                    used_nano: w.used,
                    reserved_nano: w.reserved,
                    calls: w.calls,
                    refused: w.refused,
                    reservations,
                }
            })
            .collect()
    }

    /// How many reservations were asked for (granted or refused).
    pub fn reservations(&self) -> u64 {
        self.lock().reservations
    }

    /// The reservation rows held now (`ai_budget_reservation`).
    pub fn held(&self) -> Vec<Held> {
        self.lock().held.values().cloned().collect()
    }

    /// Writes a reservation that will never settle, as a process killed mid-call leaves it:
    /// its row and its amount in the window.
    pub fn leave_reservation(&self, hold: &Hold, claims: &[BudgetClaim]) {
        let mut s = self.lock();
        for c in claims {
            s.windows
                .entry((c.budget.id, c.window.clone()))
                .or_default()
                .reserved += c.amount;
            s.held.insert(
                (hold.id.clone(), c.budget.id),
                Held {
                    id: hold.id.clone(),
                    budget_id: c.budget.id,
                    window: c.window.clone(),
                    amount_nano: c.amount,
                    created_ms: hold.created_ms,
                    expires_ms: hold.expires_ms,
                    trace_id: Some(hold.trace_id.clone()),
                },
            );
        }
    }

    /// Releases reservations by hand (as `Db::release_reservations`): `ids`, or every one expired
    /// before `expired_before`; the rows freed.
    pub fn release_reservations(&self, ids: &[String], expired_before: Option<i64>) -> Vec<Held> {
        let mut s = self.lock();
        let chosen: Vec<Held> = s
            .held
            .values()
            .filter(|h| match expired_before {
                Some(t) => h.expires_ms < t,
                None => ids.contains(&h.id),
            })
            .cloned()
            .collect();
        chosen
            .into_iter()
            .filter(|h| s.free(&h.id, h.budget_id))
            .collect()
    }

    /// The job of one object version.
    pub fn job(&self, key: &JobKey) -> Option<JobRow> {
        self.lock()
            .jobs
            .iter()
            .find(|j| &j.key == key)
            .map(|j| j.row.clone())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<JobRow> {
        self.lock().jobs.iter().map(|j| j.row.clone()).collect()
    }
}

fn query_error(what: &str) -> StoreError {
    StoreError::Query(what.to_owned().into())
}

impl Store for MemoryStore {
    async fn resolve_config(&self, config_key: &str) -> Result<ResolvedConfig, StoreError> {
        let mut s = self.lock();
        s.up()?;
        s.resolves += 1;
        s.configs
            .get(config_key)
            .cloned()
            .ok_or_else(|| StoreError::ConfigNotFound(config_key.to_owned()))
    }

    async fn insert_audit(&self, row: &AuditRow) -> Result<i64, StoreError> {
        let mut s = self.lock();
        s.up()?;
        // A row whose key is stored already is not written again (the unique `row_key`).
        if let Some(key) = &row.row_key
            && let Some(i) = s.audit.iter().position(|r| r.row_key.as_ref() == Some(key))
        {
            return Ok(i as i64 + 1);
        }
        s.audit.push(row.clone());
        Ok(s.audit.len() as i64)
    }

    async fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> Result<ResolvedRoute, StoreError> {
        let mut s = self.lock();
        s.up()?;
        s.resolves += 1;
        s.routes
            .get(&(project.to_owned(), route_key.to_owned()))
            .cloned()
            .ok_or_else(|| StoreError::RouteNotFound {
                project: project.to_owned(),
                route_key: route_key.to_owned(),
            })
    }

    async fn next_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        let mut s = self.lock();
        s.up()?;
        // The upsert: a new cursor starts at 0, an existing one moves on by one.
        let position = s
            .cursors
            .entry(route_id)
            .and_modify(|p| *p += 1)
            .or_insert(0);
        Ok(Some(*position))
    }

    async fn peek_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(Some(s.cursors.get(&route_id).map_or(0, |p| p + 1)))
    }

    async fn catalog_version(&self) -> Result<Option<i64>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(Some(s.version))
    }

    fn local_catalog_writes(&self) -> u64 {
        self.lock().local_writes
    }
}

impl CostStore for MemoryStore {
    async fn prices_for(&self, model: &str) -> Result<Vec<Price>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(s.prices
            .iter()
            .filter(|p| p.model == model || p.is_prefix())
            .cloned()
            .collect())
    }

    async fn active_budgets(&self) -> Result<Vec<Budget>, StoreError> {
        let s = self.lock();
        s.up()?;
        let mut out: Vec<Budget> = s
            .budgets
            .iter()
            .filter(|(_, active)| *active)
            .map(|(b, _)| b.clone())
            .collect();
        out.sort_by_key(|b| b.id);
        Ok(out)
    }

    async fn reserve(&self, hold: &Hold, claims: &[BudgetClaim]) -> Result<Reserved, StoreError> {
        let mut s = self.lock();
        s.up()?;
        s.reservations += 1;
        Ok(s.reserve_or_refuse(hold, claims, false))
    }

    async fn extend(&self, hold: &Hold, claims: &[BudgetClaim]) -> Result<Reserved, StoreError> {
        let mut s = self.lock();
        s.up()?;
        Ok(s.reserve_or_refuse(hold, claims, true))
    }

    async fn settle(
        &self,
        hold: &Hold,
        claims: &[BudgetClaim],
        cost_nano: i64,
    ) -> Result<Vec<Settled>, StoreError> {
        let mut s = self.lock();
        s.up()?;
        let mut out = Vec::with_capacity(claims.len());
        for c in claims {
            // What the reservation still holds is freed (nothing once it was reclaimed).
            s.free(&hold.id, c.budget.id);
            let w = s
                .windows
                .entry((c.budget.id, c.window.clone()))
                .or_default();
            w.used += cost_nano;
            w.calls += 1;
            out.push(Settled {
                budget: c.budget.clone(),
                window: c.window.clone(),
                used_after: w.used,
                added: cost_nano,
            });
        }
        Ok(out)
    }
}

impl JobStore for MemoryStore {
    async fn find_mapping(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<MediaMapping>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(most_specific(&s.mappings, bucket, key).cloned())
    }

    async fn claim_job(
        &self,
        job: &JobKey,
        project: &str,
        route_key: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim, StoreError> {
        let mut s = self.lock();
        s.up()?;
        let lease = now_ms.saturating_add(lease_ms);
        let Some(j) = s.jobs.iter_mut().find(|j| &j.key == job) else {
            let id = s.id();
            s.jobs.push(Job {
                key: job.clone(),
                lease_until_ms: lease,
                row: JobRow {
                    id,
                    bucket: job.bucket.clone(),
                    object_key: job.key.clone(),
                    object_version: job.version.clone(),
                    status: JobStatus::Running,
                    attempts: 1,
                    project_name: Some(project.to_owned()),
                    route_key: Some(route_key.to_owned()),
                    error_code: None,
                    error_message: None,
                    trace_id: None,
                    audit_ids: None,
                    result_bucket: None,
                    result_key: None,
                    summary: None,
                    created_ms: now_ms,
                    duration_ms: None,
                },
            });
            return Ok(Claim::New(id));
        };
        let row = &mut j.row;
        let takeable = matches!(row.status, JobStatus::Failed | JobStatus::Answered)
            || (row.status == JobStatus::Running && j.lease_until_ms < now_ms);
        if takeable {
            row.status = JobStatus::Running;
            row.attempts += 1;
            row.project_name = Some(project.to_owned());
            row.route_key = Some(route_key.to_owned());
            row.error_code = None;
            row.error_message = None;
            j.lease_until_ms = lease;
            return Ok(Claim::TakenOver {
                id: row.id,
                attempts: row.attempts,
                pending: row
                    .summary
                    .as_ref()
                    .and_then(|v| v.get("pending_result"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        Ok(if row.status == JobStatus::Running {
            Claim::InProgress(row.id)
        } else {
            Claim::Done {
                id: row.id,
                status: row.status,
            }
        })
    }

    async fn reopen_job(&self, job: &JobKey) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.up()?;
        if let Some(j) = s
            .jobs
            .iter_mut()
            .find(|j| &j.key == job && j.row.status != JobStatus::Running)
        {
            j.row.status = JobStatus::Failed;
        }
        Ok(())
    }

    async fn finish_job(&self, id: i64, f: &JobFinish) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.up()?;
        // Fenced: only the holder of the current attempt finishes the job.
        let Some(j) = s
            .jobs
            .iter_mut()
            .find(|j| j.row.id == id && j.row.attempts == f.attempt)
        else {
            return Ok(false);
        };
        j.lease_until_ms = 0;
        let row = &mut j.row;
        row.status = f.status;
        row.error_code = f.error_code.clone();
        row.error_message = f.error_message.clone();
        row.trace_id = f.trace_id.clone();
        row.audit_ids = f.audit_ids.clone();
        row.result_bucket = f.result_bucket.clone();
        row.result_key = f.result_key.clone();
        row.summary = f.summary.clone();
        row.duration_ms = Some(f.duration_ms);
        Ok(true)
    }
}

impl EvalStore for MemoryStore {
    async fn create_run(&self, run: &EvalRun) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.up()?;
        if s.run(&run.run_key).is_some() {
            return Err(query_error("duplicate run_key"));
        }
        let mut run = run.clone();
        run.status = EvalStatus::Running;
        run.summary = None;
        run.gate = None;
        run.report_location = None;
        run.finished_ms = None;
        run.stop_reason = None;
        run.failure_streak = 0;
        s.runs.push(Run {
            run,
            finalize_token: None,
            finalize_ms: 0,
            results: Vec::new(),
        });
        Ok(())
    }

    async fn record_result(&self, run_key: &str, result: &CaseResult) -> Result<(), StoreError> {
        self.record_results(run_key, std::slice::from_ref(result))
            .await
    }

    async fn record_results(
        &self,
        run_key: &str,
        results: &[CaseResult],
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.up()?;
        let Some(run) = s.run(run_key) else {
            // The results table references the run.
            return Err(query_error("no such run"));
        };
        for r in results {
            let stored = run
                .results
                .iter()
                .any(|x| (&x.target, &x.case_key, x.repeat) == (&r.target, &r.case_key, r.repeat));
            if !stored {
                run.results.push(r.clone());
            }
        }
        Ok(())
    }

    async fn finish_run(
        &self,
        run_key: &str,
        report: &Report,
        report_location: Option<&str>,
        token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.up()?;
        let Some(r) = s.run(run_key) else {
            return Ok(false);
        };
        let holds = match token {
            None => true,
            Some(t) => {
                r.run.status == EvalStatus::Finalizing && r.finalize_token.as_deref() == Some(t)
            }
        };
        if !holds {
            return Ok(false);
        }
        r.run.status = if report.stopped.is_some() {
            EvalStatus::Stopped
        } else {
            EvalStatus::Finished
        };
        r.run.summary = Some(report.targets.clone());
        r.run.gate = Some(report.gate.clone());
        r.run.report_location = report_location.map(str::to_owned);
        r.run.finished_ms = Some(now_ms());
        r.run.stop_reason = report.stopped.clone();
        Ok(true)
    }

    async fn claim_finalize(
        &self,
        run_key: &str,
        token: &str,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.up()?;
        let Some(r) = s.run(run_key) else {
            return Ok(false);
        };
        let claimable = matches!(r.run.status, EvalStatus::Running | EvalStatus::Stopping)
            || (r.run.status == EvalStatus::Finalizing && r.finalize_ms < stale_before_ms);
        if claimable {
            r.run.status = EvalStatus::Finalizing;
            r.finalize_token = Some(token.to_owned());
            r.finalize_ms = now_ms;
        }
        Ok(claimable)
    }

    async fn stop_run(
        &self,
        run_key: &str,
        status: EvalStatus,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.up()?;
        match s.run(run_key) {
            Some(r) if r.run.status == EvalStatus::Running => {
                r.run.status = status;
                r.run.stop_reason = Some(reason.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn note_failures(
        &self,
        run_key: &str,
        all_failed: bool,
        added: i64,
        trailing: i64,
    ) -> Result<i64, StoreError> {
        let mut s = self.lock();
        s.up()?;
        let r = s.run(run_key).ok_or_else(|| query_error("no such run"))?;
        r.run.failure_streak = if all_failed {
            r.run.failure_streak + added
        } else {
            trailing
        };
        Ok(r.run.failure_streak)
    }

    async fn count_results(&self, run_key: &str) -> Result<i64, StoreError> {
        let mut s = self.lock();
        s.up()?;
        Ok(s.run(run_key).map_or(0, |r| r.results.len() as i64))
    }

    async fn result_keys(
        &self,
        run_key: &str,
    ) -> Result<BTreeSet<(String, String, u32)>, StoreError> {
        let mut s = self.lock();
        s.up()?;
        Ok(s.run(run_key)
            .map(|r| {
                r.results
                    .iter()
                    .map(|x| (x.target.clone(), x.case_key.clone(), x.repeat))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn suite_document(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(s.suites.get(name).cloned())
    }

    async fn eval_run(&self, run_key: &str) -> Result<Option<EvalRun>, StoreError> {
        let mut s = self.lock();
        s.up()?;
        Ok(s.run(run_key).map(|r| r.run.clone()))
    }

    async fn eval_results(&self, run_key: &str) -> Result<Vec<CaseResult>, StoreError> {
        let mut s = self.lock();
        s.up()?;
        Ok(s.run(run_key)
            .map(|r| r.results.clone())
            .unwrap_or_default())
    }

    async fn eval_runs(&self, suite: Option<&str>, limit: i64) -> Result<Vec<EvalRun>, StoreError> {
        let s = self.lock();
        s.up()?;
        let mut runs: Vec<(usize, &EvalRun)> = s
            .runs
            .iter()
            .map(|r| &r.run)
            .enumerate()
            .filter(|(_, r)| suite.is_none_or(|name| r.suite == name))
            .collect();
        // Newest first: `created_ms DESC, id DESC`.
        runs.sort_by_key(|(i, r)| std::cmp::Reverse((r.created_ms, *i)));
        Ok(runs
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn last_finished_run(
        &self,
        suite: &str,
        except: &str,
    ) -> Result<Option<String>, StoreError> {
        let s = self.lock();
        s.up()?;
        Ok(s.runs
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.run.suite == suite
                    && r.run.status == EvalStatus::Finished
                    && r.run.run_key != except
            })
            .max_by_key(|(i, r)| (r.run.created_ms, *i))
            .map(|(_, r)| r.run.run_key.clone()))
    }
}
