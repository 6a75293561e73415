//! A run's results in promptfoo's output format (its eval JSON, version 3: `evalId`,
//! `results.{version, timestamp, prompts, results, stats}`, `config`), so a team's promptfoo
//! tooling (`promptfoo import`, its viewer, scripts reading `-o results.json`) reads ai-runner's
//! runs.
//!
//! Invariants: one promptfoo result per ai-runner result, in the report's order, with the same
//! pass / fail and score; `failureReason` is promptfoo's (0 none, 1 an assertion failed, 2 an
//! error); nothing here calls or stores anything.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::eval::run::{CaseResult, Report};
use crate::eval::suite::Suite;
use crate::model::eval::Verdict;

/// promptfoo's token counts, all zero (ai-runner's usage lives on the audit rows).
fn no_tokens() -> Value {
    json!({"prompt": 0, "completion": 0, "cached": 0, "total": 0, "numRequests": 0})
}

/// The report as promptfoo's eval JSON, the cases (prompts, vars, descriptions) taken from the
/// suite it ran; `at_ms` (Unix milliseconds) is its `timestamp`.
pub fn results_json(report: &Report, suite: &Suite, at_ms: i64) -> Value {
    let timestamp = format!(
        "{}Z",
        crate::model::utc_datetime_ms(at_ms).replace(' ', "T")
    );
    let cases: BTreeMap<&str, (usize, &crate::eval::suite::Case)> = suite
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.key.as_str(), (i, c)))
        .collect();
    let label_of = |key: &str| -> String {
        cases
            .get(key)
            .and_then(|(_, c)| c.raw.pointer("/metadata/prompt"))
            .and_then(Value::as_str)
            .unwrap_or("prompt")
            .to_owned()
    };
    // promptfoo's columns: one per (prompt, provider), in order of first appearance.
    let mut columns: Vec<(String, String)> = Vec::new();
    for r in &report.results {
        let col = (label_of(&r.case_key), r.target.clone());
        if !columns.contains(&col) {
            columns.push(col);
        }
    }
    let mut metrics: Vec<Metrics> = vec![Metrics::default(); columns.len()];
    let mut results = Vec::new();
    for (i, r) in report.results.iter().enumerate() {
        let label = label_of(&r.case_key);
        let column = columns
            .iter()
            .position(|(l, t)| *l == label && *t == r.target)
            .unwrap_or(0);
        if let Some(m) = metrics.get_mut(column) {
            m.add(r);
        }
        let (test_idx, case) = match cases.get(r.case_key.as_str()) {
            Some((i, c)) => (*i, Some(*c)),
            None => (0, None),
        };
        results.push(result(report, r, i, column, test_idx, &label, case));
    }
    let prompts: Vec<Value> = columns
        .iter()
        .zip(&metrics)
        .enumerate()
        .map(|(i, ((label, target), m))| {
            json!({"id": format!("prompt-{}", i + 1), "raw": label, "label": label,
                   "provider": target, "metrics": m.value()})
        })
        .collect();
    let errors = report
        .results
        .iter()
        .filter(|r| r.error_code.is_some())
        .count();
    let successes = report.results.iter().filter(|r| r.pass).count();
    json!({
        "evalId": format!("eval-ai-runner-{}", report.run_id),
        "results": {
            "version": 3,
            "timestamp": timestamp,
            "prompts": prompts,
            "results": results,
            "stats": {
                "successes": successes,
                "failures": report.results.len() - successes - errors,
                "errors": errors,
                "tokenUsage": no_tokens(),
                "durationMs": report.total_ms,
            },
        },
        "config": {"description": report.suite},
        "shareableUrl": null,
    })
}

fn result(
    report: &Report,
    r: &CaseResult,
    i: usize,
    column: usize,
    test_idx: usize,
    label: &str,
    case: Option<&crate::eval::suite::Case>,
) -> Value {
    let raw = case.map(|c| &c.raw);
    let vars = case.map_or(Value::Object(Map::new()), |c| Value::Object(c.vars.clone()));
    // promptfoo shows an informational (weight 0) assertion as passed.
    let components: Vec<Value> = r
        .assertions
        .iter()
        .map(|g| {
            json!({"pass": g.verdict == Verdict::Pass || g.weight <= 0.0, "score": g.score,
                   "reason": g.reason,
                   "assertion": {"type": g.label, "weight": g.weight, "metric": g.metric}})
        })
        .collect();
    // Each metric's weighted mean over the assertions that feed it, as promptfoo's.
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for g in r
        .assertions
        .iter()
        .filter(|g| g.verdict != Verdict::NotEvaluated)
    {
        if let Some(m) = &g.metric {
            let e = sums.entry(m.as_str()).or_default();
            e.0 += g.score * g.weight;
            e.1 += g.weight;
        }
    }
    let named: Map<String, Value> = sums
        .into_iter()
        .map(|(m, (sum, w))| {
            (
                m.to_owned(),
                Value::from(if w > 0.0 { sum / w } else { 0.0 }),
            )
        })
        .collect();
    let first_failure = r
        .assertions
        .iter()
        .find(|g| g.verdict == Verdict::Fail)
        .map(|g| g.reason.clone());
    let error = r
        .error_message
        .clone()
        .or_else(|| if r.pass { None } else { first_failure.clone() });
    let failure_reason = match (&r.error_code, r.pass) {
        (Some(_), _) => 2,
        (None, true) => 0,
        (None, false) => 1,
    };
    let reason = first_failure.unwrap_or_else(|| "All assertions passed".into());
    json!({
        "id": format!("{}-{i}", report.run_id),
        "promptIdx": column,
        "testIdx": test_idx,
        "promptId": format!("prompt-{}", column + 1),
        "prompt": {"raw": case.and_then(|c| c.prompt.clone()).unwrap_or_default(), "label": label, "config": {}},
        "provider": {"id": r.target, "label": ""},
        "vars": vars,
        "testCase": {
            "vars": vars,
            "assert": raw.and_then(|c| c.get("assert")).cloned().unwrap_or_else(|| json!([])),
            "options": {},
            "description": raw.and_then(|c| c.get("description")).cloned().unwrap_or(Value::Null),
            "metadata": raw.and_then(|c| c.get("metadata")).cloned().unwrap_or_else(|| json!({})),
        },
        "response": r.output.as_ref().map(|o| json!({"output": o, "tokenUsage": no_tokens()})),
        "error": error,
        "success": r.pass,
        "score": r.score,
        "latencyMs": r.latency_ms,
        "gradingResult": {
            "pass": r.pass,
            "score": r.score,
            "reason": reason,
            "namedScores": named,
            "componentResults": components,
        },
        "namedScores": named,
        "cost": 0,
        "tokenUsage": no_tokens(),
        "failureReason": failure_reason,
        "metadata": {"ai_runner": {"case_key": r.case_key, "repeat": r.repeat, "trace_id": r.trace_id, "audit_ids": r.audit_ids}},
    })
}

/// promptfoo's per-column counts.
#[derive(Debug, Clone, Default)]
struct Metrics {
    score: f64,
    pass: usize,
    fail: usize,
    error: usize,
    assert_pass: usize,
    assert_fail: usize,
    latency_ms: u64,
}

impl Metrics {
    fn add(&mut self, r: &CaseResult) {
        self.score += r.score;
        match (&r.error_code, r.pass) {
            (Some(_), _) => self.error += 1,
            (None, true) => self.pass += 1,
            (None, false) => self.fail += 1,
        }
        self.assert_pass += r
            .assertions
            .iter()
            .filter(|g| g.verdict == Verdict::Pass)
            .count();
        self.assert_fail += r
            .assertions
            .iter()
            .filter(|g| g.verdict == Verdict::Fail)
            .count();
        self.latency_ms += r.latency_ms;
    }

    fn value(&self) -> Value {
        json!({"score": self.score, "testPassCount": self.pass, "testFailCount": self.fail,
               "testErrorCount": self.error, "assertPassCount": self.assert_pass,
               "assertFailCount": self.assert_fail, "totalLatencyMs": self.latency_ms,
               "tokenUsage": no_tokens(), "namedScores": {}, "namedScoresCount": {}, "cost": 0})
    }
}
