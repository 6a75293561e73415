//! An evaluation run written out: JSON (every field of [`Report`], stable names), JUnit XML (what
//! CI systems display: one testsuite per target, one testcase per case and repetition) and one
//! self-contained HTML page (no network loads: summary, targets side by side, a filterable
//! per-case table, score and latency bars).
//!
//! Invariants: every text that came from a model or a dataset is escaped (an answer holding
//! `<script>` shows as text); the numbers in the HTML are the JSON's.

use std::fmt::Write;

use super::assert::Verdict;
use super::run::Report;

/// A stored run as a report: its results in plan order, summarised again (what `eval show` and
/// the console show).
pub fn stored(
    run: crate::model::eval::EvalRun,
    results: &mut Vec<crate::model::eval::CaseResult>,
) -> Report {
    super::run::in_plan_order(&run, results);
    let targets = super::run::summarise(results);
    Report {
        run_id: run.run_key,
        suite: run.suite,
        total_ms: u64::try_from(run.finished_ms.unwrap_or(run.created_ms) - run.created_ms)
            .unwrap_or(0),
        targets,
        gate: run.gate.unwrap_or(super::run::GateOutcome {
            passed: false,
            failures: vec!["the run did not finish (`ai-runner eval resume` it)".into()],
        }),
        results: std::mem::take(results),
        stopped: run.stop_reason,
    }
}

/// The report's one script: the case filter (handlers attached here, not inline, so a page
/// served with a Content-Security-Policy can allow exactly this script by its hash).
pub const FILTER_SCRIPT: &str = "function f(){var q=document.getElementById('filter').value.toLowerCase();\
var only=document.getElementById('failing').checked;document.querySelectorAll('tr.case').forEach(function(tr){\
var show=tr.textContent.toLowerCase().indexOf(q)>=0&&(!only||!tr.classList.contains('pass'));\
tr.style.display=show?'':'none';});}\
document.getElementById('filter').addEventListener('input',f);\
document.getElementById('failing').addEventListener('change',f);";

/// The report as pretty JSON.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

pub use crate::html::escape;

/// The report as JUnit XML.
pub fn junit(r: &Report) -> String {
    let failures: usize = r.targets.iter().map(|t| t.failed).sum();
    let errors: usize = r.targets.iter().map(|t| t.errors).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        escape(&r.suite),
        r.results.len(),
        r.total_ms as f64 / 1000.0
    );
    for t in &r.targets {
        let time: u64 = r
            .results
            .iter()
            .filter(|c| c.target == t.target)
            .map(|c| c.latency_ms)
            .sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
            escape(&t.target),
            t.results,
            t.failed,
            t.errors,
            time as f64 / 1000.0
        );
        for c in r.results.iter().filter(|c| c.target == t.target) {
            let _ = write!(
                x,
                "    <testcase classname=\"{}.{}\" name=\"{}#{}\" time=\"{:.3}\"",
                escape(&r.suite),
                escape(&t.target),
                escape(&c.case_key),
                c.repeat,
                c.latency_ms as f64 / 1000.0
            );
            if let Some(code) = &c.error_code {
                let _ = writeln!(
                    x,
                    ">\n      <error type=\"{}\" message=\"{}\"/>\n    </testcase>",
                    escape(code),
                    escape(c.error_message.as_deref().unwrap_or(""))
                );
            } else if !c.pass {
                let reasons: Vec<String> = c
                    .assertions
                    .iter()
                    .filter(|g| g.verdict == Verdict::Fail)
                    .map(|g| format!("{}: {}", g.label, g.reason))
                    .collect();
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"score {:.3}\">{}</failure>\n    </testcase>",
                    c.score,
                    escape(&reasons.join("\n"))
                );
            } else {
                x.push_str("/>\n");
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Inline SVG histograms per target: case scores in ten bins of 0.1, and latency in ten bins up
/// to the slowest result (no script, no network).
fn charts(h: &mut String, r: &Report) {
    const BINS: usize = 10;
    let max_ms = r
        .results
        .iter()
        .map(|c| c.latency_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    h.push_str("<h2>Charts</h2><div id=\"charts\">");
    for t in &r.targets {
        let mine: Vec<&crate::model::eval::CaseResult> =
            r.results.iter().filter(|c| c.target == t.target).collect();
        let mut scores = [0usize; BINS];
        let mut latency = [0usize; BINS];
        for c in &mine {
            let s = ((c.score * BINS as f64) as usize).min(BINS - 1);
            scores[s] += 1;
            let l = usize::try_from(c.latency_ms * BINS as u64 / (max_ms + 1)).unwrap_or(0);
            latency[l.min(BINS - 1)] += 1;
        }
        let _ = write!(
            h,
            "<figure data-target=\"{}\"><figcaption>{}</figcaption>",
            escape(&t.target),
            escape(&t.target)
        );
        for (title, bins, axis) in [
            ("score", &scores, "0 .. 1".to_owned()),
            ("latency", &latency, format!("0 .. {max_ms} ms")),
        ] {
            let top = bins.iter().copied().max().unwrap_or(0).max(1);
            let _ = write!(
                h,
                "<svg class=\"chart {title}\" width=\"220\" height=\"80\" role=\"img\" aria-label=\"{title} histogram\"><title>{title} ({axis})</title>"
            );
            for (i, n) in bins.iter().enumerate() {
                let height = n * 60 / top;
                let _ = write!(
                    h,
                    "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{height}\" fill=\"#2563eb\" data-count=\"{n}\"><title>{n}</title></rect>",
                    i * 22,
                    65 - height
                );
            }
            let _ = write!(
                h,
                "<text x=\"0\" y=\"78\" font-size=\"10\">{title} {axis}</text></svg>"
            );
        }
        h.push_str("</figure>");
    }
    h.push_str("</div>");
}

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{suite} · ai-runner evaluation</title>\
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f4f4f4}}\
.pass{{color:#166534}}.fail{{color:#b91c1c}}.error{{color:#9a3412}}.bar{{display:inline-block;height:10px;background:#2563eb}}\
pre{{white-space:pre-wrap;max-width:60ch;margin:0}}#gate{{font-weight:bold}}</style></head><body>\
<h1>Evaluation <span id=\"suite\">{suite}</span></h1><p>run <code id=\"run-id\">{run}</code>, {n} result(s), {ms} ms</p>\
<p id=\"gate\" class=\"{gate_class}\">gate: {gate}</p>",
        suite = escape(&r.suite),
        run = escape(&r.run_id),
        n = r.results.len(),
        ms = r.total_ms,
        gate_class = if r.gate.passed { "pass" } else { "fail" },
        gate = if r.gate.passed {
            "passed".to_owned()
        } else {
            escape(&r.gate.failures.join("; "))
        },
    );
    if let Some(why) = &r.stopped {
        let _ = write!(
            h,
            "<p id=\"stopped\" class=\"fail\">stopped early: {}</p>",
            escape(why)
        );
    }
    h.push_str("<h2>Targets</h2><table id=\"targets\"><tr><th>target</th><th>results</th><th>passed</th><th>failed</th><th>errors</th><th>pass rate</th><th>mean score</th><th>p50 ms</th><th>p95 ms</th><th>metrics</th><th>flaky</th></tr>");
    for t in &r.targets {
        let metrics: Vec<String> = t
            .metrics
            .iter()
            .map(|(k, v)| format!("{}={v:.3}", escape(k)))
            .collect();
        let _ = write!(
            h,
            "<tr data-target=\"{t_}\"><td>{t_}</td><td>{}</td><td class=\"passed\">{}</td><td>{}</td><td>{}</td>\
<td class=\"pass-rate\">{:.3}</td><td class=\"mean-score\">{:.3} <span class=\"bar\" style=\"width:{}px\"></span></td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.results,
            t.passed,
            t.failed,
            t.errors,
            t.pass_rate,
            t.mean_score,
            (t.mean_score * 100.0).round() as u32,
            t.latency_p50_ms,
            t.latency_p95_ms,
            metrics.join(" "),
            escape(&t.flaky.join(", ")),
            t_ = escape(&t.target),
        );
    }
    h.push_str("</table>");
    charts(&mut h, r);
    h.push_str("<h2>Cases</h2><p><input id=\"filter\" placeholder=\"filter cases\"> \
<label><input type=\"checkbox\" id=\"failing\"> failing only</label></p>\
<table id=\"cases\"><tr><th>target</th><th>case</th><th>#</th><th>result</th><th>score</th><th>ms</th><th>output</th><th>assertions</th></tr>");
    let max_ms = r
        .results
        .iter()
        .map(|c| c.latency_ms)
        .max()
        .unwrap_or(1)
        .max(1);
    for c in &r.results {
        let (class, word) = match (&c.error_code, c.pass) {
            (Some(code), _) => ("error", escape(code)),
            (None, true) => ("pass", "pass".to_owned()),
            (None, false) => ("fail", "fail".to_owned()),
        };
        let asserts: Vec<String> = c
            .assertions
            .iter()
            .map(|g| {
                format!(
                    "{} {}: {}",
                    match g.verdict {
                        Verdict::Pass => "✓",
                        Verdict::Fail => "✗",
                        Verdict::NotEvaluated => "–",
                    },
                    escape(&g.label),
                    escape(&g.reason)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr class=\"case {class}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td>\
<td>{:.3}</td><td>{} <span class=\"bar\" style=\"width:{}px\"></span></td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
            escape(&c.target),
            escape(&c.case_key),
            c.repeat,
            c.score,
            c.latency_ms,
            (c.latency_ms * 80 / max_ms),
            escape(
                c.output
                    .as_deref()
                    .or(c.error_message.as_deref())
                    .unwrap_or("")
            ),
            asserts.join("\n"),
        );
    }
    h.push_str("</table><script>");
    h.push_str(FILTER_SCRIPT);
    h.push_str("</script></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::run::{CaseResult, GateOutcome, summarise};

    #[test]
    fn model_text_is_escaped_in_html_and_xml() {
        let results = vec![CaseResult {
            target: "t<1>".into(),
            case_key: "c&\"d\"".into(),
            repeat: 0,
            pass: false,
            score: 0.0,
            output: Some("<script>alert(1)</script>".into()),
            parsed: None,
            assertions: Vec::new(),
            latency_ms: 5,
            error_code: None,
            error_message: None,
            trace_id: String::new(),
            audit_ids: Vec::new(),
        }];
        let r = Report {
            run_id: "r".into(),
            suite: "s".into(),
            total_ms: 5,
            targets: summarise(&results),
            gate: GateOutcome {
                passed: true,
                failures: Vec::new(),
            },
            results,
            stopped: None,
        };
        let h = html(&r);
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!h.contains("<script>alert"));
        let x = junit(&r);
        assert!(x.contains("name=\"t&lt;1&gt;\""), "{x}");
        assert!(x.contains("c&amp;&quot;d&quot;#0"), "{x}");
        assert_eq!(escape("a\u{1}b"), "a\u{FFFD}b");
    }
}
