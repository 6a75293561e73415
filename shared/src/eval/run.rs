//! Running a suite: every (target, case, repetition) as an ordinary audited call
//! (`trigger_source` = `eval`, `request_id` = the evaluation run's id), graded by its assertions,
//! summarised per target and gated.
//!
//! Invariants: calls run at most `concurrency` at a time; results carry the audit row ids of their
//! calls; a call that fails is an error result (score 0, its code kept), never a crash; the
//! summary is computed from the results only, so a report can always be recomputed from them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::assert::{Answer, CaseFields, RubricVerdict, Verdict, case_score};
pub use crate::model::eval::{CaseResult, GateOutcome, Report, TargetSummary};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::suite::{Case, Gates, Suite, Target, read_suite, unfilled};
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::model::ResolvedConfig;
use crate::model::eval::{EvalRun, EvalStatus};
use crate::ports::{EvalStore, Provider, Store, StoreError};
use crate::run::{Overlay, RunContext, RunResult, Runner, Trigger, new_trace_id};
use crate::template::{collect_strings, placeholders};

/// Narrowing and overrides from the command line (stored with a run, so a resume runs the same
/// plan).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Run only these targets (default: the suite's).
    pub targets: Vec<Target>,
    /// Calls in flight at once (default: the suite's).
    pub concurrency: Option<usize>,
    /// Repetitions (default: the suite's).
    pub repeat: Option<u32>,
    /// At most this many cases.
    pub limit: Option<usize>,
    /// Only cases with one of these tags.
    pub tags: Vec<String>,
    /// Extra gates (added to the suite's).
    pub gates: Gates,
    /// Gate: no target's pass rate may fall more than this below the baseline run's.
    pub max_regression: Option<f64>,
    /// Stop after this many consecutive provider failures (default: the suite's; 0 = never).
    pub stop_after_failures: Option<u32>,
    /// Who started the run through the API (an access key, the platform's principal): recorded
    /// on the audit row of every call the run makes, wherever its chunks are worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<crate::model::access::Caller>,
}

/// The planned calls: (target, case, repetition), after the options' narrowing.
pub fn plan<'a>(suite: &'a Suite, opts: &'a Options) -> Vec<(&'a Target, &'a Case, u32)> {
    // A target named twice is one target (results are unique per target, case and repetition).
    let mut targets: Vec<&Target> = Vec::new();
    for t in targets_of(suite, opts) {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let cases: Vec<&Case> = suite
        .cases
        .iter()
        .filter(|c| opts.tags.is_empty() || c.tags.iter().any(|t| opts.tags.contains(t)))
        .take(opts.limit.unwrap_or(usize::MAX))
        .collect();
    let repeat = opts.repeat.unwrap_or(suite.repeat).max(1);
    let mut out = Vec::new();
    for t in &targets {
        for c in &cases {
            for r in 0..repeat {
                out.push((*t, *c, r));
            }
        }
    }
    out
}

/// What a run's targets (and judge) resolved to, once per run: every case of a config target
/// measures the same configuration and costs no config query.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    configs: BTreeMap<String, ResolvedConfig>,
    /// SHA-256 over the targets' resolved configuration ([`EvalRun::config_hash`]).
    pub hash: Option<String>,
}

/// Resolves every target and the judge, and checks what must hold before anything is called:
/// each resolves (an active config, or an active route with active members) and every case fills
/// the placeholders its targets' prompts leave open. Each problem names the target or the case.
pub async fn prepare<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> (Resolved, Vec<Finding>) {
    use sha2::Digest;
    let mut findings = Vec::new();
    let mut out = Resolved::default();
    let mut parts = Vec::new();
    let targets = targets_of(suite, opts);
    let judge = suite.judge.as_ref().filter(|j| !targets.contains(j));
    for (t, is_judge) in targets
        .iter()
        .map(|t| (*t, false))
        .chain(judge.map(|j| (j, true)))
    {
        let needed = match t {
            Target::Config { config_key } => {
                match runner.store().resolve_config(config_key).await {
                    Ok(cfg) => {
                        let needed = open_placeholders(&cfg, None);
                        if !is_judge {
                            parts.push(hash_config(&cfg));
                        }
                        out.configs.insert(config_key.clone(), cfg);
                        needed
                    }
                    Err(e) => {
                        findings.push(missing_target(t, &e.to_string()));
                        continue;
                    }
                }
            }
            Target::Route { project, route_key } => {
                match runner.store().resolve_route(project, route_key).await {
                    Ok(route) if route.members.is_empty() => {
                        findings.push(missing_target(t, "the route has no active member"));
                        continue;
                    }
                    Ok(route) => {
                        let failover =
                            crate::run::policy::Failover::from_config(route.policy_config.as_ref());
                        let mut all = Vec::new();
                        for m in &route.members {
                            let cfg =
                                crate::run::policy::effective_config(&route, &m.config, &failover);
                            all.extend(open_placeholders(&cfg, route.variables.as_ref()));
                        }
                        all.sort();
                        all.dedup();
                        if !is_judge {
                            parts.push(serde_json::json!({
                                "route": t.label(), "policy": route.policy, "policy_config": route.policy_config,
                                "variables": route.variables, "params": route.params, "response_format": route.response_format,
                                "prompt": route.prompt.as_ref().map(|p| (&p.name, &p.version, &p.messages)),
                                "members": route.members.iter().map(|m| serde_json::json!({
                                    "priority": m.priority, "weight": m.weight, "config": hash_config(&m.config)
                                })).collect::<Vec<_>>(),
                            }));
                        }
                        all
                    }
                    Err(e) => {
                        findings.push(missing_target(t, &e.to_string()));
                        continue;
                    }
                }
            }
        };
        if is_judge {
            for n in needed.iter().filter(|n| !JUDGE_VARS.contains(&n.as_str())) {
                findings.push(Finding {
                    severity: Severity::Error,
                    path: format!("judge {}", t.label()),
                    code: Code::UnfilledPlaceholder,
                    message: format!(
                        "the judge's prompt uses {{{{{n}}}}}; a judge is given only {}",
                        JUDGE_VARS.join(", ")
                    ),
                });
            }
            continue;
        }
        for (_, case, _) in plan(suite, opts)
            .into_iter()
            .filter(|(pt, _, r)| *pt == t && *r == 0)
        {
            for mut f in unfilled(case, &needed) {
                f.message = format!("{} (target {})", f.message, t.label());
                findings.push(f);
            }
        }
    }
    if findings.is_empty() {
        let digest = sha2::Sha256::digest(Value::Array(parts).to_string().as_bytes());
        out.hash = Some(crate::hex::encode(&digest));
    }
    (out, findings)
}

/// [`prepare`]'s findings only.
pub async fn preflight<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> Vec<Finding> {
    prepare(runner, suite, opts).await.1
}

/// The variables a judge's prompt is given: the answer (`OUTPUT`), the rubric items as a numbered
/// list (`RUBRIC`) and as a JSON array (`RUBRIC_JSON`), the case's variables and expected value
/// as JSON (`VARS`, `EXPECTED`).
pub const JUDGE_VARS: [&str; 5] = ["OUTPUT", "RUBRIC", "RUBRIC_JSON", "VARS", "EXPECTED"];

pub(crate) fn targets_of<'a>(suite: &'a Suite, opts: &'a Options) -> Vec<&'a Target> {
    if opts.targets.is_empty() {
        suite.targets.iter().collect()
    } else {
        opts.targets.iter().collect()
    }
}

fn missing_target(t: &Target, why: &str) -> Finding {
    Finding {
        severity: Severity::Error,
        path: format!("target {}", t.label()),
        code: Code::UnknownReference,
        message: why.to_owned(),
    }
}

/// What the configuration hash covers of a config: model, URL, prompt and params, never a key.
fn hash_config(c: &ResolvedConfig) -> Value {
    serde_json::json!({
        "config_key": c.config_key, "model": c.model, "url": c.connection.base_url,
        "prompt": c.prompt.as_ref().map(|p| serde_json::json!({
            "name": p.name, "version": p.version, "messages": p.messages,
            "response_format": p.response_format, "variables": p.variables})),
        "params": c.params,
    })
}

/// The placeholders of a config's prompt that its prompt variables, params and the route's
/// variables leave open (the caller must fill them).
fn open_placeholders(cfg: &ResolvedConfig, route_vars: Option<&Value>) -> Vec<String> {
    let Some(prompt) = &cfg.prompt else {
        return Vec::new();
    };
    let mut strings = Vec::new();
    collect_strings(&prompt.messages, &mut strings);
    let filled = |name: &str| {
        [prompt.variables.as_ref(), cfg.params.as_ref(), route_vars]
            .into_iter()
            .flatten()
            .any(|m| m.get(name).is_some())
    };
    let mut out: Vec<String> = strings
        .iter()
        .flat_map(|s| placeholders(s))
        .filter(|p| !filled(p))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Sees each result as it finishes, with (done, total).
pub type Progress<'a> = &'a (dyn Fn(&CaseResult, usize, usize) + Sync);

/// Counts consecutive provider failures (unreachable, timeouts, 5xx, 429) across a run's
/// results and trips at the suite's limit, so an outage does not burn the rest of the run.
#[derive(Debug)]
pub struct Breaker {
    limit: u32,
    streak: AtomicU32,
    tripped: AtomicBool,
}

impl Breaker {
    /// A breaker that trips after `limit` consecutive failures (0 = never), starting from
    /// `streak` failures already seen (by other workers of the same run).
    pub fn new(limit: u32, streak: u32) -> Self {
        let b = Self {
            limit,
            streak: AtomicU32::new(streak),
            tripped: AtomicBool::new(false),
        };
        if limit > 0 && streak >= limit {
            b.tripped.store(true, Ordering::SeqCst);
        }
        b
    }

    /// The result failed because the provider looks down: the classification the connections'
    /// circuit breakers use ([`crate::breaker::is_outage`]), so both agree on it.
    pub fn is_outage(r: &CaseResult) -> bool {
        r.error_code
            .as_deref()
            .and_then(Code::parse)
            .is_some_and(crate::breaker::is_outage)
    }

    /// Counts one result; true when this result tripped the breaker.
    pub fn see(&self, r: &CaseResult) -> bool {
        if !Self::is_outage(r) {
            self.streak.store(0, Ordering::SeqCst);
            return false;
        }
        let n = self.streak.fetch_add(1, Ordering::SeqCst) + 1;
        self.limit > 0 && n >= self.limit && !self.tripped.swap(true, Ordering::SeqCst)
    }

    /// Tripped: call nothing more.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Consecutive failures seen last.
    pub fn streak(&self) -> u32 {
        self.streak.load(Ordering::SeqCst)
    }

    /// The words a stopped run records.
    pub fn reason(&self) -> String {
        format!(
            "stopped after {} consecutive provider failures (stop_after_failures = {})",
            self.streak(),
            self.limit
        )
    }
}

/// Runs the suite in memory (nothing stored but the calls' audit rows).
pub async fn run<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    progress: Progress<'_>,
) -> Report {
    let run_key = new_trace_id()[..16].to_owned();
    let started = Instant::now();
    let (resolved, _) = prepare(runner, suite, opts).await;
    let breaker = Breaker::new(stop_after(suite, opts), 0);
    let jobs = Jobs {
        run_key: &run_key,
        done: Vec::new(),
        skip: BTreeSet::new(),
        range: None,
        resolved: &resolved,
        breaker: &breaker,
    };
    let results = execute(runner, suite, opts, jobs, progress, |r| async { r }).await;
    let stopped = breaker.tripped().then(|| breaker.reason());
    finish(suite, opts, run_key, started, results, None, stopped)
}

/// The suite's early-stop limit, unless the options override it.
pub fn stop_after(suite: &Suite, opts: &Options) -> u32 {
    opts.stop_after_failures
        .unwrap_or(suite.stop_after_failures)
}

/// Where a stored run comes from.
#[derive(Debug, Clone)]
pub struct Start {
    /// `cli`, `schedule`, `api`.
    pub trigger: Trigger,
    /// Compare against this run (`--baseline`), if any.
    pub baseline: Option<String>,
}

/// Why a stored run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No run with this key.
    #[error("no evaluation run {0:?}")]
    UnknownRun(String),
    /// The stored suite no longer reads (it was stored by another version).
    #[error("the stored suite of run {run} does not read: {why}")]
    BadSnapshot {
        /// The run.
        run: String,
        /// The first problem.
        why: String,
    },
    /// The suite, a target or a case is not runnable; nothing was called.
    #[error("{0}")]
    Invalid(String),
    /// The run's messages could not be queued.
    #[error("the evaluation queue failed: {0}")]
    Queue(String),
}

impl EvalError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Store(e) => e.code(),
            Self::UnknownRun(_) => Code::UnknownReference,
            Self::BadSnapshot { .. } | Self::Invalid(_) => Code::SuiteInvalid,
            Self::Queue(_) => Code::QueueUnavailable,
        }
    }
}

/// Creates the stored run (status `running`) for `suite`: its snapshot, options, configuration
/// hash and baseline. Returns the run key and baseline.
pub(crate) async fn create<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    resolved: &Resolved,
    how: &Start,
) -> Result<(String, Option<String>), EvalError> {
    let run_key = new_trace_id()[..16].to_owned();
    let store = runner.store();
    let baseline = match how.baseline.as_deref() {
        Some("last") => store.last_finished_run(&suite.name, &run_key).await?,
        Some(k) => Some(
            store
                .eval_run(k)
                .await?
                .map(|r| r.run_key)
                .ok_or_else(|| EvalError::UnknownRun(k.to_owned()))?,
        ),
        None => None,
    };
    store
        .create_run(
            &EvalRun {
                run_key: run_key.clone(),
                suite: suite.name.clone(),
                status: EvalStatus::Running,
                trigger: how.trigger,
                suite_json: suite.snapshot.clone(),
                options_json: serde_json::to_value(opts).unwrap_or(Value::Null),
                config_hash: resolved.hash.clone(),
                total: i64::try_from(plan(suite, opts).len()).unwrap_or(i64::MAX),
                baseline: baseline.clone(),
                summary: None,
                gate: None,
                report_location: None,
                created_ms: 0,
                finished_ms: None,
                stop_reason: None,
                failure_streak: 0,
            }
            .stamped(),
        )
        .await?;
    Ok((run_key, baseline))
}

/// Runs the suite and stores the run and every result as it finishes, so an interrupted run can
/// be resumed ([`resume`]); `config_hash` says what configuration was measured.
pub async fn start<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    how: &Start,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let started = Instant::now();
    let (resolved, _) = prepare(runner, suite, opts).await;
    let (run_key, baseline) = create(runner, suite, opts, &resolved, how).await?;
    complete(
        runner,
        suite,
        opts,
        &resolved,
        run_key,
        baseline,
        started,
        Vec::new(),
        progress,
    )
    .await
}

/// Puts a stored run's results in plan order (targets as the suite lists them, then cases, then
/// repetitions), whatever order they were stored in (a fanned-out run's chunks finish in any
/// order). Results the plan does not know go last.
pub fn in_plan_order(run: &EvalRun, results: &mut [CaseResult]) {
    let Ok((suite, opts)) = stored_suite(run) else {
        return;
    };
    let order: BTreeMap<(String, String, u32), usize> = plan(&suite, &opts)
        .iter()
        .enumerate()
        .map(|(i, (t, c, r))| ((t.label(), c.key.clone(), *r), i))
        .collect();
    results.sort_by_key(|r| {
        order
            .get(&(r.target.clone(), r.case_key.clone(), r.repeat))
            .copied()
            .unwrap_or(usize::MAX)
    });
}

/// A stored run's suite and options, read back from its snapshot.
pub(crate) fn stored_suite(run: &EvalRun) -> Result<(Suite, Options), EvalError> {
    let (suite, findings) = read_suite(&run.suite_json, &run.suite, Path::new("."));
    let suite = suite.ok_or_else(|| EvalError::BadSnapshot {
        run: run.run_key.clone(),
        why: findings
            .first()
            .map(|f| format!("{}: {}", f.path, f.message))
            .unwrap_or_default(),
    })?;
    let opts: Options = serde_json::from_value(run.options_json.clone()).unwrap_or_default();
    Ok((suite, opts))
}

/// Goes on with an interrupted run: the same suite, options and run id; only the (target, case,
/// repetition) without a stored result are called.
pub async fn resume<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    run_key: &str,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let started = Instant::now();
    let store = runner.store();
    let run = store
        .eval_run(run_key)
        .await?
        .ok_or_else(|| EvalError::UnknownRun(run_key.to_owned()))?;
    let (suite, opts) = stored_suite(&run)?;
    let (resolved, _) = prepare(runner, &suite, &opts).await;
    let done = store.eval_results(run_key).await?;
    complete(
        runner,
        &suite,
        &opts,
        &resolved,
        run.run_key,
        run.baseline,
        started,
        done,
        progress,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn complete<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    resolved: &Resolved,
    run_key: String,
    baseline: Option<String>,
    started: Instant,
    done: Vec<CaseResult>,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let store = runner.store();
    let breaker = Breaker::new(stop_after(suite, opts), 0);
    let jobs = Jobs {
        run_key: &run_key,
        done,
        skip: BTreeSet::new(),
        range: None,
        resolved,
        breaker: &breaker,
    };
    // Results are written by one writer beside the calls, with group commit: whatever finished
    // while the previous batch was being written goes in the next batch, one commit each. A
    // result is reported (progress) only once it is stored, so a resume never redoes it.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
    let calls = async move {
        let results = execute(runner, suite, opts, jobs, progress, |r: CaseResult| {
            let (ack, stored) = tokio::sync::oneshot::channel();
            let sent = tx.send((r.clone(), ack));
            async move {
                if sent.is_ok() {
                    // Err: the writer is gone; the result stands in this report.
                    let _ = stored.await;
                }
                r
            }
        })
        .await;
        drop(tx);
        results
    };
    let (results, ()) = tokio::join!(calls, write_batches(store, &run_key, rx));
    let base = match &baseline {
        Some(b) => store.eval_run(b).await?.and_then(|r| r.summary),
        None => None,
    };
    let stopped = breaker.tripped().then(|| breaker.reason());
    let report = finish(
        suite,
        opts,
        run_key,
        started,
        results,
        base.as_deref(),
        stopped,
    );
    store
        .finish_run(&report.run_id, &report, None, None)
        .await?;
    Ok(report)
}

/// Most results per write.
const BATCH_MAX: usize = 256;

/// A finished result and who waits for it to be stored.
type Pending = (CaseResult, tokio::sync::oneshot::Sender<()>);

/// Writes results as they arrive: the first waiting one with every other already waiting (up to
/// [`BATCH_MAX`]) in one transaction, then acknowledges them; returns when the senders are gone.
async fn write_batches<S: EvalStore>(
    store: &S,
    run_key: &str,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::new();
    let mut acks = Vec::new();
    while let Some((first, ack)) = rx.recv().await {
        batch.push(first);
        acks.push(ack);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok((r, ack)) => {
                    batch.push(r);
                    acks.push(ack);
                }
                Err(_) => break,
            }
        }
        if store.record_results(run_key, &batch).await.is_err() {
            // Once more after a pause (a lock timeout, a dropped connection); each insert is
            // idempotent.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Err(e) = store.record_results(run_key, &batch).await {
                // The results stand in this report; a resume would call these cases again.
                tracing::warn!(code = %e.code(), run = %run_key, results = batch.len(), "evaluation results not stored");
            }
        }
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Which planned calls one execution makes.
pub(crate) struct Jobs<'a> {
    pub(crate) run_key: &'a str,
    /// Results already stored (not called again).
    pub(crate) done: Vec<CaseResult>,
    /// (target, case, repetition) stored already whose results are not needed here.
    pub(crate) skip: BTreeSet<(String, String, u32)>,
    /// Only these plan positions (a fan-out chunk); all when `None`.
    pub(crate) range: Option<std::ops::Range<usize>>,
    pub(crate) resolved: &'a Resolved,
    pub(crate) breaker: &'a Breaker,
}

/// Calls every planned job (in the range) that has no result in `done` yet, `record`ing each as
/// it finishes, until the breaker trips; returns the results of the jobs (in the range) in plan
/// order, those of `done` included.
pub(crate) async fn execute<S, P, R, F>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    jobs: Jobs<'_>,
    progress: Progress<'_>,
    record: R,
) -> Vec<CaseResult>
where
    S: Store,
    P: Provider,
    R: Fn(CaseResult) -> F,
    F: std::future::Future<Output = CaseResult>,
{
    let planned: Vec<(&Target, &Case, u32)> = plan(suite, opts)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| jobs.range.as_ref().is_none_or(|r| r.contains(i)))
        .map(|(_, j)| j)
        .collect();
    let total = planned.len();
    let concurrency = opts.concurrency.unwrap_or(suite.concurrency).max(1);
    let ctx = RunContext {
        request_id: Some(format!("eval:{}", jobs.run_key)),
        caller: opts.caller.clone(),
        ..RunContext::new(Trigger::Eval)
    };
    let mut have: BTreeMap<(String, String, u32), CaseResult> = jobs
        .done
        .into_iter()
        .map(|r| ((r.target.clone(), r.case_key.clone(), r.repeat), r))
        .collect();
    let todo: Vec<usize> = (0..planned.len())
        .filter(|i| {
            let (t, c, r) = planned[*i];
            let k = (t.label(), c.key.clone(), r);
            !have.contains_key(&k) && !jobs.skip.contains(&k)
        })
        .collect();
    let already = total - todo.len();
    let breaker = jobs.breaker;
    let resolved = jobs.resolved;
    let (ctx, record, planned_ref) = (&ctx, &record, &planned);
    // Positions, not references, go through the stream: closures over borrowed tuples trip the
    // compiler's higher-ranked `Send` inference for callers that need a `Send` future.
    let fresh: Vec<CaseResult> = futures_util::stream::iter(todo)
        .map(|i: usize| async move {
            let (target, case, repeat) = planned_ref[i];
            if breaker.tripped() {
                return None;
            }
            let r = one(runner, suite, target, case, repeat, ctx, resolved).await;
            if breaker.see(&r) {
                tracing::warn!(run = %ctx.request_id.as_deref().unwrap_or(""), reason = %breaker.reason(), "evaluation stopped early");
            }
            Some(r)
        })
        .buffer_unordered(concurrency)
        .filter_map(|r: Option<CaseResult>| std::future::ready(r))
        // Recording is a second stage: a call's slot is free as soon as its answer is graded,
        // while its result waits to be stored.
        .map(record)
        .buffer_unordered(concurrency.max(BATCH_MAX))
        .enumerate()
        .map(|(n, r)| {
            progress(&r, already + n + 1, total);
            r
        })
        .collect()
        .await;
    for r in fresh {
        have.insert((r.target.clone(), r.case_key.clone(), r.repeat), r);
    }
    planned
        .iter()
        .filter_map(|(t, c, r)| have.remove(&(t.label(), c.key.clone(), *r)))
        .collect()
}

pub(crate) fn finish(
    suite: &Suite,
    opts: &Options,
    run_key: String,
    started: Instant,
    results: Vec<CaseResult>,
    baseline: Option<&[TargetSummary]>,
    stopped: Option<String>,
) -> Report {
    let targets = summarise(&results);
    let mut gates = suite.gates.clone();
    if opts.gates.min_pass_rate.is_some() {
        gates.min_pass_rate = opts.gates.min_pass_rate;
    }
    gates.cutoffs.extend(opts.gates.cutoffs.iter().cloned());
    let mut gate = gate(&targets, &gates);
    if let (Some(max), Some(base)) = (opts.max_regression, baseline) {
        for t in &targets {
            if let Some(b) = base.iter().find(|b| b.target == t.target)
                && b.pass_rate - t.pass_rate > max + 1e-9
            {
                gate.failures.push(format!(
                    "{}: pass rate fell from {:.3} to {:.3}, more than {max}",
                    t.target, b.pass_rate, t.pass_rate
                ));
            }
        }
    }
    if let Some(why) = &stopped {
        gate.failures.push(format!("the run did not finish: {why}"));
    }
    gate.passed = gate.failures.is_empty();
    Report {
        run_id: run_key,
        suite: suite.name.clone(),
        total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        targets,
        gate,
        results,
        stopped,
    }
}

/// Calls one target with `vars`: the run result and its audit row ids (one per route member
/// tried).
async fn call<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    target: &Target,
    vars: &crate::run::Variables,
    ctx: &RunContext,
    resolved: &Resolved,
) -> (RunResult, Vec<i64>) {
    match target {
        Target::Config { config_key } => {
            let r = match resolved.configs.get(config_key) {
                Some(cfg) => {
                    runner
                        .run_resolved(
                            cfg,
                            &Overlay::default(),
                            vars,
                            ctx,
                            new_trace_id(),
                            Instant::now(),
                        )
                        .await
                }
                None => runner.run_once(config_key, vars, ctx).await,
            };
            let ids = r.audit_id.into_iter().collect();
            (r, ids)
        }
        Target::Route { project, route_key } => {
            let r = runner.run_route(project, route_key, vars, ctx).await;
            let ids = r
                .member_attempts
                .iter()
                .filter_map(|a| a.audit_id)
                .collect();
            (r.result, ids)
        }
    }
}

async fn one<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    target: &Target,
    case: &Case,
    repeat: u32,
    ctx: &RunContext,
    resolved: &Resolved,
) -> CaseResult {
    let mut vars = case.vars.clone();
    let mut case_ctx = ctx.clone();
    if let Some((bucket, key)) = &case.media
        && let Err((code, message)) =
            media_case(runner, bucket, key, &mut vars, &mut case_ctx).await
    {
        return CaseResult {
            target: target.label(),
            case_key: case.key.clone(),
            repeat,
            pass: false,
            score: 0.0,
            output: None,
            parsed: None,
            assertions: Vec::new(),
            latency_ms: 0,
            error_code: Some(code.as_str().to_owned()),
            error_message: Some(message),
            trace_id: String::new(),
            audit_ids: Vec::new(),
        };
    }
    let (result, audit_ids) = call(runner, target, &vars, &case_ctx, resolved).await;
    let mut out = CaseResult {
        target: target.label(),
        case_key: case.key.clone(),
        repeat,
        pass: false,
        score: 0.0,
        output: result.content.clone(),
        parsed: result.parsed.clone(),
        assertions: Vec::new(),
        latency_ms: result.total_ms,
        error_code: result.error.as_ref().map(|e| e.code.clone()),
        error_message: result.error.as_ref().map(|e| e.message.clone()),
        trace_id: result.trace_id.clone(),
        audit_ids,
    };
    if !result.is_ok() {
        return out;
    }
    let fields = CaseFields {
        vars: Some(&case.vars),
        expected: case.expected.as_ref(),
    };
    let all: Vec<&super::assert::Assertion> =
        suite.assertions.iter().chain(&case.assertions).collect();
    let mut items: Vec<String> = Vec::new();
    for i in all.iter().flat_map(|a| a.rubric_items(&fields)) {
        if !items.contains(&i) {
            items.push(i);
        }
    }
    let mut answer = Answer {
        text: result.content.clone(),
        parsed: result.parsed.clone(),
        latency_ms: result.total_ms,
        finish_reason: result
            .response
            .as_ref()
            .and_then(|r| r.pointer("/choices/0/finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        // The target call's own cost (content retries included; the judge's is its own row).
        cost_usd: result.cost,
        rubric: None,
    };
    let mut judge_audit = None;
    if let (false, Some(judge)) = (items.is_empty(), &suite.judge) {
        let (verdicts, ids) = judge_call(runner, judge, &answer, case, &items, ctx, resolved).await;
        judge_audit = ids.first().copied();
        out.audit_ids.extend(ids);
        answer.rubric = Some(verdicts);
    }
    out.assertions = all
        .iter()
        .map(|a| {
            let mut g = a.grade(&answer, &fields);
            if a.is_rubric() {
                g.audit_id = judge_audit;
            }
            g
        })
        .collect();
    let (pass, score) = case_score(&out.assertions, case.threshold.or(suite.threshold));
    out.pass = pass;
    out.score = score;
    out
}

/// Resolves a media case's object into its variables, as the upload pipeline does (presigned
/// `MEDIA_URL`, or `MEDIA_DATA` when the case's `MEDIA_MODE` is `inline`); the object must be
/// audio within the size limit.
async fn media_case<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    bucket: &str,
    key: &str,
    vars: &mut crate::run::Variables,
    ctx: &mut RunContext,
) -> Result<(), (Code, String)> {
    let Some(src) = runner.media() else {
        return Err((
            Code::ObjectOperationUnsupported,
            "this runner has no object store for media cases".into(),
        ));
    };
    let object_err = |e: crate::ports::ObjectError| (e.code(), e.to_string());
    let meta = src.store.head(bucket, key).await.map_err(object_err)?;
    let format = crate::media::check_media(
        key,
        meta.content_type.as_deref(),
        meta.size,
        src.settings.media_max_bytes,
    )?;
    let inline = vars
        .get("MEDIA_MODE")
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case("inline"));
    let obj = crate::model::media::ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: Some(meta.size),
        etag: meta.etag.clone(),
        version_id: meta.version_id.clone(),
    };
    let seconds = crate::media::media_vars(
        src.store.as_ref(),
        &src.settings,
        &obj,
        meta.size,
        format,
        inline,
        vars,
        &mut ctx.redact,
    )
    .await
    .map_err(object_err)?;
    ctx.media_seconds = seconds.or(meta.duration_seconds);
    Ok(())
}

/// One judge call for every rubric item of a case: the judge answers
/// `{"results": [{"pass", "score", "reason"}, ...]}` (or the bare list), one entry per item in
/// order; anything else is a failed verdict saying why, never a pass.
async fn judge_call<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    judge: &Target,
    answer: &Answer,
    case: &Case,
    items: &[String],
    ctx: &RunContext,
    resolved: &Resolved,
) -> (Result<Vec<RubricVerdict>, String>, Vec<i64>) {
    let mut vars = crate::run::Variables::new();
    vars.insert(
        "OUTPUT".into(),
        Value::String(answer.text.clone().unwrap_or_default()),
    );
    let numbered: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}. {t}", i + 1))
        .collect();
    vars.insert("RUBRIC".into(), Value::String(numbered.join("\n")));
    vars.insert(
        "RUBRIC_JSON".into(),
        Value::String(Value::from(items.to_vec()).to_string()),
    );
    vars.insert(
        "VARS".into(),
        Value::String(Value::Object(case.vars.clone()).to_string()),
    );
    vars.insert(
        "EXPECTED".into(),
        Value::String(case.expected.clone().unwrap_or(Value::Null).to_string()),
    );
    let (r, ids) = call(runner, judge, &vars, ctx, resolved).await;
    if let Some(e) = &r.error {
        return (Err(format!("the judge call failed: {}", e.code)), ids);
    }
    let audit_id = ids.last().copied();
    let parsed = super::assert::parsed(&Answer {
        text: r.content.clone(),
        parsed: r.parsed.clone(),
        ..Answer::default()
    });
    (rubric_verdicts(parsed.as_ref(), items, audit_id), ids)
}

/// Validates a judge's answer against the items it was sent.
fn rubric_verdicts(
    answer: Option<&Value>,
    items: &[String],
    audit_id: Option<i64>,
) -> Result<Vec<RubricVerdict>, String> {
    let list = match answer {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) if o.get("results").is_some_and(Value::is_array) => o
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Some(v @ Value::Object(o)) if o.contains_key("pass") => vec![v.clone()],
        Some(_) => return Err("the judge's answer is not {\"results\": [...]}".into()),
        None => return Err("the judge's answer is not JSON".into()),
    };
    if list.len() != items.len() {
        return Err(format!(
            "the judge gave {} verdict(s) for {} rubric item(s)",
            list.len(),
            items.len()
        ));
    }
    items
        .iter()
        .zip(list)
        .enumerate()
        .map(|(i, (item, v))| {
            let pass = v
                .get("pass")
                .and_then(Value::as_bool)
                .ok_or_else(|| format!("verdict {}: pass must be true or false", i + 1))?;
            let score = match v.get("score") {
                None | Some(Value::Null) => f64::from(u8::from(pass)),
                Some(s) => s
                    .as_f64()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| format!("verdict {}: score must be from 0 to 1", i + 1))?,
            };
            Ok(RubricVerdict {
                item: item.clone(),
                pass,
                score,
                reason: v
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                audit_id,
            })
        })
        .collect()
}

/// Per-target numbers from the results.
pub fn summarise(results: &[CaseResult]) -> Vec<TargetSummary> {
    let mut by_target: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in results {
        if !by_target.contains_key(r.target.as_str()) {
            order.push(&r.target);
        }
        by_target.entry(&r.target).or_default().push(r);
    }
    order
        .into_iter()
        .map(|t| {
            let rs = &by_target[t];
            let n = rs.len();
            let passed = rs.iter().filter(|r| r.pass).count();
            let errors = rs.iter().filter(|r| r.error_code.is_some()).count();
            let mut metrics: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for g in rs.iter().flat_map(|r| &r.assertions) {
                if let (Some(m), true) = (&g.metric, g.verdict != Verdict::NotEvaluated) {
                    let e = metrics.entry(m.clone()).or_insert((0.0, 0));
                    e.0 += g.score;
                    e.1 += 1;
                }
            }
            let mut lat: Vec<u64> = rs.iter().map(|r| r.latency_ms).collect();
            lat.sort_unstable();
            let mut outcomes: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
            for r in rs.iter().filter(|r| r.error_code.is_none()) {
                let e = outcomes.entry(&r.case_key).or_insert((false, false));
                if r.pass {
                    e.0 = true;
                } else {
                    e.1 = true;
                }
            }
            TargetSummary {
                target: t.to_owned(),
                results: n,
                passed,
                failed: n - passed - errors,
                errors,
                pass_rate: ratio(passed, n),
                mean_score: if n == 0 {
                    0.0
                } else {
                    rs.iter().map(|r| r.score).sum::<f64>() / n as f64
                },
                metrics: metrics
                    .into_iter()
                    .map(|(k, (sum, count))| (k, sum / count.max(1) as f64))
                    .collect(),
                latency_p50_ms: percentile(&lat, 50),
                latency_p95_ms: percentile(&lat, 95),
                flaky: outcomes
                    .into_iter()
                    .filter(|(_, (p, f))| *p && *f)
                    .map(|(k, _)| k.to_owned())
                    .collect(),
            }
        })
        .collect()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Checks every target against the gates.
pub fn gate(targets: &[TargetSummary], gates: &Gates) -> GateOutcome {
    let mut failures = Vec::new();
    for t in targets {
        if let Some(min) = gates.min_pass_rate
            && t.pass_rate + 1e-9 < min
        {
            failures.push(format!(
                "{}: pass rate {:.3} is below {min}",
                t.target, t.pass_rate
            ));
        }
        for (metric, min) in &gates.cutoffs {
            match t.metrics.get(metric) {
                Some(v) if *v + 1e-9 >= *min => {}
                Some(v) => failures.push(format!(
                    "{}: metric {metric} {v:.3} is below {min}",
                    t.target
                )),
                None => failures.push(format!("{}: metric {metric} was not measured", t.target)),
            }
        }
    }
    GateOutcome {
        passed: failures.is_empty(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::eval::Graded;

    fn result(target: &str, case: &str, pass: bool, score: f64, ms: u64) -> CaseResult {
        CaseResult {
            target: target.into(),
            case_key: case.into(),
            repeat: 0,
            pass,
            score,
            output: None,
            parsed: None,
            assertions: vec![Graded {
                label: "contains".into(),
                verdict: if pass { Verdict::Pass } else { Verdict::Fail },
                score,
                reason: String::new(),
                weight: 1.0,
                metric: Some("acc".into()),
                audit_id: None,
            }],
            latency_ms: ms,
            error_code: None,
            error_message: None,
            trace_id: String::new(),
            audit_ids: Vec::new(),
        }
    }

    #[test]
    fn targets_are_summarised_with_rates_metrics_percentiles_and_flaky_cases() {
        let mut err = result("t", "c", false, 0.0, 900);
        err.error_code = Some("NETWORK_ERROR".into());
        err.assertions.clear();
        let rs = [
            result("t", "a", true, 1.0, 10),
            result("t", "a", false, 0.0, 20),
            result("t", "b", true, 1.0, 30),
            err,
            result("u", "a", true, 1.0, 5),
        ];
        let s = summarise(&rs);
        assert_eq!(s.len(), 2);
        let t = &s[0];
        assert_eq!((t.results, t.passed, t.failed, t.errors), (4, 2, 1, 1));
        assert!((t.pass_rate - 0.5).abs() < 1e-9);
        assert!((t.mean_score - 0.5).abs() < 1e-9);
        assert!((t.metrics["acc"] - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!((t.latency_p50_ms, t.latency_p95_ms), (20, 900));
        assert_eq!(t.flaky, ["a"]);
        let g = gate(
            &s,
            &Gates {
                min_pass_rate: Some(0.6),
                cutoffs: vec![("acc".into(), 0.5), ("tone".into(), 0.1)],
            },
        );
        assert!(!g.passed);
        assert_eq!(g.failures.len(), 3, "{:?}", g.failures);
        assert!(
            gate(
                &s[1..],
                &Gates {
                    min_pass_rate: Some(1.0),
                    cutoffs: vec![("acc".into(), 1.0)]
                }
            )
            .passed
        );
    }
}
