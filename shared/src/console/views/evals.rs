//! Evaluations: runs with their pass rates over time (an SVG chart), and one run's report as
//! [`crate::eval::report`] draws it.
//!
//! Invariants: the report is the evaluation module's, shown under the console's CSP; nothing here
//! grades or summarises.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};

use super::uploads::when;
use super::{OnPage, Page, PageError, S};
use crate::code::Code;
use crate::console::page::{Nav, badge, e, html, link, opt, seg, table_html};
use crate::ports::EvalStore;

/// Pass rate per run over time, one line per suite (SVG, no script).
fn pass_rate_chart(runs: &[crate::model::eval::EvalRun]) -> String {
    let mut by_suite: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for r in runs {
        let Some(summary) = &r.summary else { continue };
        let (passed, total) = summary
            .iter()
            .fold((0usize, 0usize), |(p, t), s| (p + s.passed, t + s.results));
        if total > 0 {
            by_suite
                .entry(r.suite.as_str())
                .or_default()
                .push((r.created_ms, passed as f64 / total as f64));
        }
    }
    if by_suite.is_empty() {
        return "<p class=\"dim\">No finished runs yet.</p>".into();
    }
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let xs: Vec<i64> = by_suite.values().flatten().map(|(t, _)| *t).collect();
    let (lo, hi) = (
        xs.iter().min().copied().unwrap_or(0),
        xs.iter().max().copied().unwrap_or(1),
    );
    let span = ((hi - lo).max(1)) as f64;
    let x = |t: i64| pad + (t - lo) as f64 / span * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v * (h - 2.0 * pad);
    let colors = [
        "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
    ];
    let mut s = format!(
        "<svg id=\"pass-rates\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"pass rate per run\">\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"{}\" font-size=\"10\">100%</text><text x=\"4\" y=\"{}\" font-size=\"10\">0%</text>",
        y(0.0),
        w - pad,
        y(0.0),
        y(1.0) + 4.0,
        y(0.0) + 4.0
    );
    for (i, (suite, pts)) in by_suite.iter().enumerate() {
        let color = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        for (t, v) in pts {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{} {:.1}%</title></circle>",
                x(*t),
                y(*v),
                e(suite),
                v * 100.0
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            w - pad - 120.0,
            pad + 14.0 * i as f64,
            e(suite)
        ));
    }
    s.push_str("</svg>");
    s
}

/// `GET /evals`: runs, newest first, and pass rates over time.
pub(in crate::console) async fn evals(State(c): S) -> Page {
    let mut runs = c
        .app
        .runner
        .store()
        .eval_runs(None, 200)
        .await
        .on_page(Nav::Evals)?;
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let (passed, total) = r.summary.as_ref().map_or((0, 0), |s| {
                s.iter()
                    .fold((0, 0), |(p, t), x| (p + x.passed, t + x.results))
            });
            vec![
                link(&format!("/evals/{}", seg(&r.run_key)), &r.run_key),
                e(&r.suite),
                badge(r.status.as_str()),
                e(&when(r.created_ms)),
                e(r.trigger.as_str()),
                if total > 0 {
                    format!(
                        "{passed}/{total} ({:.1}%)",
                        passed as f64 * 100.0 / total as f64
                    )
                } else {
                    opt(None)
                },
                r.gate.as_ref().map_or_else(
                    || opt(None),
                    |g| badge(if g.passed { "passed" } else { "failed" }),
                ),
            ]
        })
        .collect();
    let mut chronological = runs.clone();
    chronological.reverse();
    let mut body = String::from("<h2>Pass rate over time</h2>");
    body.push_str(&pass_rate_chart(&chronological));
    body.push_str("<h2>Runs</h2>");
    body.push_str(&table_html(
        &[
            "Run",
            "Suite",
            "Status",
            "Started (UTC)",
            "Trigger",
            "Passed",
            "Gate",
        ],
        &rows,
    ));
    Ok(html(StatusCode::OK, "Evaluations", Nav::Evals, &body))
}

/// `GET /evals/{run}`: the run's report, as `eval run --out report.html` writes it.
pub(in crate::console) async fn eval_run(State(c): S, Path(run_key): Path<String>) -> Page {
    let db = c.app.runner.store();
    let run = match db.eval_run(&run_key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(PageError::new(
                Code::UnknownReference,
                format!("no evaluation run {run_key:?}"),
                Nav::Evals,
            ));
        }
        Err(err) => return Err(PageError::logged(err.code(), &err, Nav::Evals)),
    };
    let mut results = db.eval_results(&run_key).await.on_page(Nav::Evals)?;
    let report = crate::eval::report::stored(run, &mut results);
    let page = crate::eval::report::html(&report);
    // The report's own filter script, allowed by its hash and nothing else.
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(
        crate::eval::report::FILTER_SCRIPT.as_bytes(),
    ));
    let csp = crate::console::guard::CSP.replacen(
        "default-src 'none';",
        &format!("default-src 'none'; script-src 'sha256-{hash}';"),
        1,
    );
    let mut r = Html(page).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(r)
}
