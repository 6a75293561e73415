//! Comparing two runs of a suite: per target, pass rate, mean score and latency side by side;
//! per case, what newly fails, what newly passes, and how scores moved.
//!
//! Invariants: pure over stored results; cases are matched on (target, case key), repetitions
//! folded (a case passes when all its repetitions pass, its score is their mean).

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::summarise;
use crate::model::eval::CaseResult;

/// One target in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetDelta {
    /// The target.
    pub target: String,
    /// Pass rate in run A, run B.
    pub pass_rate: (Option<f64>, Option<f64>),
    /// Mean score in A, B.
    pub mean_score: (Option<f64>, Option<f64>),
    /// p50 latency in A, B.
    pub latency_p50_ms: (Option<u64>, Option<u64>),
}

/// One case that moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseDelta {
    /// The target.
    pub target: String,
    /// The case.
    pub case_key: String,
    /// Passed in A.
    pub before: bool,
    /// Passed in B.
    pub after: bool,
    /// Score in B minus score in A.
    pub score_delta: f64,
}

/// Run B against run A.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Per target.
    pub targets: Vec<TargetDelta>,
    /// Passed in A, fails in B.
    pub newly_failing: Vec<CaseDelta>,
    /// Failed in A, passes in B.
    pub newly_passing: Vec<CaseDelta>,
    /// Same verdict, different score.
    pub score_changes: Vec<CaseDelta>,
}

fn fold(results: &[CaseResult]) -> BTreeMap<(String, String), (bool, f64)> {
    let mut acc: BTreeMap<(String, String), (bool, f64, usize)> = BTreeMap::new();
    for r in results {
        let e = acc
            .entry((r.target.clone(), r.case_key.clone()))
            .or_insert((true, 0.0, 0));
        e.0 &= r.pass;
        e.1 += r.score;
        e.2 += 1;
    }
    acc.into_iter()
        .map(|(k, (p, s, n))| (k, (p, s / n.max(1) as f64)))
        .collect()
}

/// Compares run B (`after`) with run A (`before`).
pub fn compare(before: &[CaseResult], after: &[CaseResult]) -> Comparison {
    let (sa, sb) = (summarise(before), summarise(after));
    let mut names: Vec<String> = sa.iter().map(|t| t.target.clone()).collect();
    names.extend(
        sb.iter()
            .map(|t| t.target.clone())
            .filter(|t| !sa.iter().any(|a| &a.target == t)),
    );
    let targets = names
        .into_iter()
        .map(|name| {
            let a = sa.iter().find(|t| t.target == name);
            let b = sb.iter().find(|t| t.target == name);
            TargetDelta {
                pass_rate: (a.map(|t| t.pass_rate), b.map(|t| t.pass_rate)),
                mean_score: (a.map(|t| t.mean_score), b.map(|t| t.mean_score)),
                latency_p50_ms: (a.map(|t| t.latency_p50_ms), b.map(|t| t.latency_p50_ms)),
                target: name,
            }
        })
        .collect();
    let (fa, fb) = (fold(before), fold(after));
    let mut out = Comparison {
        targets,
        newly_failing: Vec::new(),
        newly_passing: Vec::new(),
        score_changes: Vec::new(),
    };
    for (key, (pass_b, score_b)) in &fb {
        let Some((pass_a, score_a)) = fa.get(key) else {
            continue;
        };
        let d = CaseDelta {
            target: key.0.clone(),
            case_key: key.1.clone(),
            before: *pass_a,
            after: *pass_b,
            score_delta: score_b - score_a,
        };
        match (pass_a, pass_b) {
            (true, false) => out.newly_failing.push(d),
            (false, true) => out.newly_passing.push(d),
            _ if d.score_delta.abs() > 1e-9 => out.score_changes.push(d),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(target: &str, case: &str, pass: bool, score: f64) -> CaseResult {
        CaseResult {
            target: target.into(),
            case_key: case.into(),
            repeat: 0,
            pass,
            score,
            output: None,
            parsed: None,
            assertions: Vec::new(),
            latency_ms: 10,
            error_code: None,
            error_message: None,
            trace_id: String::new(),
            audit_ids: Vec::new(),
        }
    }

    #[test]
    fn cases_that_moved_are_listed_with_their_score_deltas() {
        let a = [
            r("t", "x", true, 1.0),
            r("t", "y", false, 0.0),
            r("t", "z", false, 0.2),
        ];
        let b = [
            r("t", "x", false, 0.5),
            r("t", "y", true, 1.0),
            r("t", "z", false, 0.4),
            r("t", "new", true, 1.0),
        ];
        let c = compare(&a, &b);
        assert_eq!(c.newly_failing.len(), 1);
        assert_eq!(c.newly_failing[0].case_key, "x");
        assert!((c.newly_failing[0].score_delta + 0.5).abs() < 1e-9);
        assert_eq!(c.newly_passing[0].case_key, "y");
        assert_eq!(c.score_changes[0].case_key, "z");
        assert_eq!(c.targets[0].pass_rate, (Some(1.0 / 3.0), Some(0.5)));
    }
}
