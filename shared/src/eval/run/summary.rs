//! Per-target numbers from a run's results (rates, metrics, latency percentiles, flaky cases)
//! and the gates they are checked against.
//!
//! Invariants: pure: computed from the results alone.

use std::collections::BTreeMap;

use super::{CaseResult, GateOutcome, TargetSummary};
use crate::eval::assert::Verdict;
use crate::eval::suite::Gates;

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

/// Nearest-rank percentile of sorted values, 0 of none.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    crate::model::percentile(sorted, p).unwrap_or(0)
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
