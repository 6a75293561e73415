//! Running a suite: every (target, case, repetition) as an ordinary audited call
//! (`trigger_source` = `eval`, `request_id` = the evaluation run's id), graded by its assertions,
//! summarised per target and gated.
//!
//! Invariants: calls run at most `concurrency` at a time; results carry the audit row ids of their
//! calls; a call that fails is an error result (score 0, its code kept), never a crash; the
//! summary is computed from the results only, so a report can always be recomputed from them.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;

use super::assert::{Answer, CaseFields, Verdict, case_score};
pub use crate::model::eval::{CaseResult, GateOutcome, Report, TargetSummary};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::suite::{Case, Gates, Suite, Target, read_suite, unfilled};
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::model::ResolvedConfig;
use crate::model::eval::EvalRun;
use crate::ports::{EvalStore, Provider, Store, StoreError};
use crate::request::{collect_strings, placeholders};
use crate::run::{Overlay, RunContext, RunResult, Runner, new_trace_id};

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
}

/// The planned calls: (target, case, repetition), after the options' narrowing.
pub fn plan<'a>(suite: &'a Suite, opts: &'a Options) -> Vec<(&'a Target, &'a Case, u32)> {
    let targets: Vec<&Target> = if opts.targets.is_empty() {
        suite.targets.iter().collect()
    } else {
        opts.targets.iter().collect()
    };
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

/// Checks made before anything is called: every target resolves (an active config, or an active
/// route with active members), and every case fills the placeholders its targets' prompts leave
/// open. Each problem names the target or the case.
pub async fn preflight<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let targets: Vec<&Target> = if opts.targets.is_empty() {
        suite.targets.iter().collect()
    } else {
        opts.targets.iter().collect()
    };
    for t in targets {
        let needed = match t {
            Target::Config { config_key } => {
                match runner.store().resolve_config(config_key).await {
                    Ok(cfg) => open_placeholders(&cfg, None),
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
                        all
                    }
                    Err(e) => {
                        findings.push(missing_target(t, &e.to_string()));
                        continue;
                    }
                }
            }
        };
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
    findings
}

fn missing_target(t: &Target, why: &str) -> Finding {
    Finding {
        severity: Severity::Error,
        path: format!("target {}", t.label()),
        code: Code::UnknownReference,
        message: why.to_owned(),
    }
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

/// Runs the suite in memory (nothing stored but the calls' audit rows).
pub async fn run<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    progress: Progress<'_>,
) -> Report {
    let run_key = new_trace_id()[..16].to_owned();
    let started = Instant::now();
    let results = execute(
        runner,
        suite,
        opts,
        &run_key,
        Vec::new(),
        progress,
        |r| async { r },
    )
    .await;
    finish(suite, opts, run_key, started, results, None)
}

/// Where a stored run comes from.
#[derive(Debug, Clone)]
pub struct Start {
    /// `cli`, `schedule`, `api`.
    pub trigger: String,
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
}

impl EvalError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Store(e) => e.code(),
            Self::UnknownRun(_) => Code::UnknownReference,
            Self::BadSnapshot { .. } => Code::SuiteInvalid,
        }
    }
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
                status: "running".into(),
                trigger: how.trigger.clone(),
                suite_json: suite.snapshot.clone(),
                options_json: serde_json::to_value(opts).unwrap_or(Value::Null),
                config_hash: config_hash(runner, suite, opts).await,
                total: i64::try_from(plan(suite, opts).len()).unwrap_or(i64::MAX),
                baseline: baseline.clone(),
                summary: None,
                gate: None,
                report_location: None,
                created_ms: 0,
                finished_ms: None,
            }
            .stamped(),
        )
        .await?;
    complete(
        runner,
        suite,
        opts,
        run_key,
        baseline,
        started,
        Vec::new(),
        progress,
    )
    .await
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
    let (suite, findings) = read_suite(&run.suite_json, &run.suite, Path::new("."));
    let suite = suite.ok_or_else(|| EvalError::BadSnapshot {
        run: run_key.to_owned(),
        why: findings
            .first()
            .map(|f| format!("{}: {}", f.path, f.message))
            .unwrap_or_default(),
    })?;
    let opts: Options = serde_json::from_value(run.options_json.clone()).unwrap_or_default();
    let done = store.eval_results(run_key).await?;
    complete(
        runner,
        &suite,
        &opts,
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
    run_key: String,
    baseline: Option<String>,
    started: Instant,
    done: Vec<CaseResult>,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let store = runner.store();
    let key = run_key.clone();
    let results = execute(runner, suite, opts, &run_key, done, progress, |r| {
        let key = key.clone();
        async move {
            if let Err(e) = store.record_result(&key, &r).await {
                // The result stands in this report; a resume would call this case again.
                tracing::warn!(code = %e.code(), run = %key, case = %r.case_key, "evaluation result not stored");
            }
            r
        }
    })
    .await;
    let base = match &baseline {
        Some(b) => store.eval_run(b).await?.and_then(|r| r.summary),
        None => None,
    };
    let report = finish(suite, opts, run_key, started, results, base.as_deref());
    store
        .finish_run(&report.run_id, &report.targets, &report.gate, None)
        .await?;
    Ok(report)
}

/// Calls every planned job that has no result in `done` yet, `record`ing each as it finishes;
/// returns all results in plan order.
async fn execute<S, P, R, F>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    run_key: &str,
    done: Vec<CaseResult>,
    progress: Progress<'_>,
    record: R,
) -> Vec<CaseResult>
where
    S: Store,
    P: Provider,
    R: Fn(CaseResult) -> F,
    F: std::future::Future<Output = CaseResult>,
{
    let jobs = plan(suite, opts);
    let total = jobs.len();
    let concurrency = opts.concurrency.unwrap_or(suite.concurrency).max(1);
    let ctx = RunContext {
        trigger: "eval".into(),
        request_id: Some(format!("eval:{run_key}")),
        redact: Vec::new(),
    };
    let mut have: BTreeMap<(String, String, u32), CaseResult> = done
        .into_iter()
        .map(|r| ((r.target.clone(), r.case_key.clone(), r.repeat), r))
        .collect();
    let already = have.len();
    let mut resolved = BTreeMap::new();
    for t in jobs.iter().map(|(t, _, _)| *t) {
        if let Target::Config { config_key } = t
            && !resolved.contains_key(config_key)
            && let Ok(cfg) = runner.store().resolve_config(config_key).await
        {
            resolved.insert(config_key.clone(), cfg);
        }
    }
    let todo: Vec<(usize, (&Target, &Case, u32))> = jobs
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, (t, c, r))| !have.contains_key(&(t.label(), c.key.clone(), *r)))
        .collect();
    let fresh: Vec<CaseResult> =
        futures_util::stream::iter(todo)
            .map(|(_, (target, case, repeat))| {
                let (ctx, record) = (&ctx, &record);
                let resolved = &resolved;
                async move {
                    record(one(runner, suite, target, case, repeat, ctx, resolved).await).await
                }
            })
            .buffer_unordered(concurrency)
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
    jobs.iter()
        .filter_map(|(t, c, r)| have.remove(&(t.label(), c.key.clone(), *r)))
        .collect()
}

fn finish(
    suite: &Suite,
    opts: &Options,
    run_key: String,
    started: Instant,
    results: Vec<CaseResult>,
    baseline: Option<&[TargetSummary]>,
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
        gate.passed = gate.failures.is_empty();
    }
    Report {
        run_id: run_key,
        suite: suite.name.clone(),
        total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        targets,
        gate,
        results,
    }
}

/// SHA-256 over what the targets resolve to now (model, URL, prompt, params; a route's policy,
/// overrides and members), without keys: equal hashes measured the same configuration.
async fn config_hash<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> Option<String> {
    use sha2::Digest;
    fn config(c: &ResolvedConfig) -> Value {
        serde_json::json!({
            "config_key": c.config_key, "model": c.model, "url": c.connection.base_url,
            "prompt": c.prompt.as_ref().map(|p| serde_json::json!({
                "name": p.name, "version": p.version, "messages": p.messages,
                "response_format": p.response_format, "variables": p.variables})),
            "params": c.params,
        })
    }
    let targets: Vec<&Target> = if opts.targets.is_empty() {
        suite.targets.iter().collect()
    } else {
        opts.targets.iter().collect()
    };
    let mut parts = Vec::new();
    for t in targets {
        parts.push(match t {
            Target::Config { config_key } => config(&runner.store().resolve_config(config_key).await.ok()?),
            Target::Route { project, route_key } => {
                let r = runner.store().resolve_route(project, route_key).await.ok()?;
                serde_json::json!({
                    "route": t.label(), "policy": r.policy, "policy_config": r.policy_config,
                    "variables": r.variables, "params": r.params, "response_format": r.response_format,
                    "prompt": r.prompt.as_ref().map(|p| (&p.name, &p.version, &p.messages)),
                    "members": r.members.iter().map(|m| serde_json::json!({
                        "priority": m.priority, "weight": m.weight, "config": config(&m.config)
                    })).collect::<Vec<_>>(),
                })
            }
        });
    }
    let digest = sha2::Sha256::digest(Value::Array(parts).to_string().as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

async fn one<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    target: &Target,
    case: &Case,
    repeat: u32,
    ctx: &RunContext,
    resolved: &BTreeMap<String, ResolvedConfig>,
) -> CaseResult {
    let (result, audit_ids): (RunResult, Vec<i64>) = match target {
        Target::Config { config_key } => {
            // Resolved once per run: every case measures the same configuration, and a case
            // costs no config query.
            let r = match resolved.get(config_key) {
                Some(cfg) => {
                    runner
                        .run_resolved(
                            cfg,
                            &Overlay::default(),
                            &case.vars,
                            ctx,
                            new_trace_id(),
                            Instant::now(),
                        )
                        .await
                }
                None => runner.run_once(config_key, &case.vars, ctx).await,
            };
            let ids = r.audit_id.into_iter().collect();
            (r, ids)
        }
        Target::Route { project, route_key } => {
            let r = runner.run_route(project, route_key, &case.vars, ctx).await;
            let ids = r
                .member_attempts
                .iter()
                .filter_map(|a| a.audit_id)
                .collect();
            (r.result, ids)
        }
    };
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
    let answer = Answer {
        text: result.content.clone(),
        parsed: result.parsed.clone(),
        latency_ms: result.total_ms,
        finish_reason: result
            .response
            .as_ref()
            .and_then(|r| r.pointer("/choices/0/finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        cost_usd: None,
    };
    let fields = CaseFields {
        vars: Some(&case.vars),
        expected: case.expected.as_ref(),
    };
    out.assertions = suite
        .assertions
        .iter()
        .chain(&case.assertions)
        .map(|a| a.grade(&answer, &fields))
        .collect();
    let (pass, score) = case_score(&out.assertions, case.threshold.or(suite.threshold));
    out.pass = pass;
    out.score = score;
    out
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
