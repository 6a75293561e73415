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
use serde::Serialize;
use serde_json::Value;

use super::assert::{Answer, CaseFields, Graded, Verdict, case_score};
use super::suite::{Case, Gates, Suite, Target, unfilled};
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::model::ResolvedConfig;
use crate::ports::{Provider, Store};
use crate::request::{collect_strings, placeholders};
use crate::run::{RunContext, RunResult, Runner, new_trace_id};

/// Narrowing and overrides from the command line.
#[derive(Debug, Clone, Default)]
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
}

/// One (target, case, repetition).
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `project/route_key` or the config key.
    pub target: String,
    /// The case.
    pub case_key: String,
    /// 0-based repetition.
    pub repeat: u32,
    /// Passed its assertions.
    pub pass: bool,
    /// 0..=1.
    pub score: f64,
    /// The answer's text.
    pub output: Option<String>,
    /// The answer parsed as JSON, when the request asked for JSON.
    pub parsed: Option<Value>,
    /// Every assertion's outcome.
    pub assertions: Vec<Graded>,
    /// Whole call, milliseconds.
    pub latency_ms: u64,
    /// The call's failure code, if it failed.
    pub error_code: Option<String>,
    /// Its message.
    pub error_message: Option<String>,
    /// The call's trace id.
    pub trace_id: String,
    /// The audit rows of the call (one per route member tried).
    pub audit_ids: Vec<i64>,
}

/// A target's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    /// The target.
    pub target: String,
    /// Results (cases x repetitions).
    pub results: usize,
    /// Passed.
    pub passed: usize,
    /// Failed their assertions.
    pub failed: usize,
    /// The call itself failed.
    pub errors: usize,
    /// passed / results.
    pub pass_rate: f64,
    /// Mean case score.
    pub mean_score: f64,
    /// Mean score per named metric.
    pub metrics: BTreeMap<String, f64>,
    /// Latency percentiles, milliseconds.
    pub latency_p50_ms: u64,
    /// 95th percentile.
    pub latency_p95_ms: u64,
    /// Cases that passed some repetitions and failed others.
    pub flaky: Vec<String>,
}

/// Whether the run's gates held.
#[derive(Debug, Clone, Serialize)]
pub struct GateOutcome {
    /// All held.
    pub passed: bool,
    /// Each gate that did not, in words.
    pub failures: Vec<String>,
}

/// A finished evaluation run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's id (on every call's audit row as `request_id` = `eval:<id>`).
    pub run_id: String,
    /// The suite.
    pub suite: String,
    /// Whole run, milliseconds.
    pub total_ms: u64,
    /// Per target.
    pub targets: Vec<TargetSummary>,
    /// The gates.
    pub gate: GateOutcome,
    /// Every result, in (target, case, repetition) order.
    pub results: Vec<CaseResult>,
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

/// Runs the suite; `progress` sees each result as it finishes, with (done, total).
pub async fn run<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    progress: &(dyn Fn(&CaseResult, usize, usize) + Sync),
) -> Report {
    let started = Instant::now();
    let run_id = new_trace_id()[..16].to_owned();
    let jobs = plan(suite, opts);
    let total = jobs.len();
    let concurrency = opts.concurrency.unwrap_or(suite.concurrency).max(1);
    let ctx = RunContext {
        trigger: "eval".into(),
        request_id: Some(format!("eval:{run_id}")),
        redact: Vec::new(),
    };
    let mut results: Vec<(usize, CaseResult)> =
        futures_util::stream::iter(jobs.into_iter().enumerate())
            .map(|(i, (target, case, repeat))| {
                let ctx = &ctx;
                async move { (i, one(runner, suite, target, case, repeat, ctx).await) }
            })
            .buffer_unordered(concurrency)
            .enumerate()
            .map(|(done, (i, r))| {
                progress(&r, done + 1, total);
                (i, r)
            })
            .collect()
            .await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<CaseResult> = results.into_iter().map(|(_, r)| r).collect();
    let targets = summarise(&results);
    let mut gates = suite.gates.clone();
    if opts.gates.min_pass_rate.is_some() {
        gates.min_pass_rate = opts.gates.min_pass_rate;
    }
    gates.cutoffs.extend(opts.gates.cutoffs.iter().cloned());
    let gate = gate(&targets, &gates);
    Report {
        run_id,
        suite: suite.name.clone(),
        total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        targets,
        gate,
        results,
    }
}

async fn one<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    target: &Target,
    case: &Case,
    repeat: u32,
    ctx: &RunContext,
) -> CaseResult {
    let (result, audit_ids): (RunResult, Vec<i64>) = match target {
        Target::Config { config_key } => {
            let r = runner.run_once(config_key, &case.vars, ctx).await;
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
