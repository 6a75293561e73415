//! Try-it: the form parsed, then a dry run (the exact first request, the key masked, nothing
//! sent or written) or an ordinary audited run with trigger `console`, and its result drawn.
//!
//! Invariants: a run from the console is the runner's, never a shortcut; a bad form is refused
//! before anything is resolved.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::{Page, PageError, S};
use crate::code::Code;
use crate::console::page::{
    Nav, badge, e, facts_html, html, json_block, link, opt, seg, table_html,
};
use crate::run::route::{DryRequest, RouteResult};
use crate::run::{RunContext, RunResult, Trigger, Variables};

/// What the try-it form asked for.
struct TryIt {
    config: Option<String>,
    route: Option<(String, String)>,
    run: bool,
    vars: Variables,
}

fn parse_try(fields: Vec<(String, String)>) -> Result<TryIt, String> {
    let mut t = TryIt {
        config: None,
        route: None,
        run: false,
        vars: Variables::new(),
    };
    let (mut project, mut route) = (None, None);
    let mut extra = None;
    for (k, v) in fields {
        match k.as_str() {
            "config" if !v.is_empty() => t.config = Some(v),
            "project" if !v.is_empty() => project = Some(v),
            "route" if !v.is_empty() => route = Some(v),
            "action" => t.run = v == "run",
            "vars_json" if !v.trim().is_empty() => extra = Some(v),
            _ => {
                if let Some(name) = k.strip_prefix("var.") {
                    if !v.is_empty() {
                        t.vars.insert(name.to_owned(), Value::String(v));
                    }
                }
            }
        }
    }
    if let Some(text) = extra {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => t.vars.extend(m),
            _ => return Err("more variables must be a JSON object".into()),
        }
    }
    t.route = project.zip(route);
    if t.config.is_none() && t.route.is_none() {
        return Err("pick a config, or a project and a route".into());
    }
    Ok(t)
}

fn dry_html(req: &DryRequest, order: Option<&[String]>) -> String {
    let mut facts = vec![("Config", e(&req.config_key)), ("POST", e(&req.url))];
    if let Some(o) = order {
        facts.push((
            "Member order",
            o.iter().map(|k| e(k)).collect::<Vec<_>>().join(" → "),
        ));
    }
    let mut h = facts_html(&facts);
    h.push_str("<h2>Headers (key masked)</h2>");
    h.push_str(&json_block(&Value::Object(req.headers.clone())));
    h.push_str("<h2>Body</h2>");
    h.push_str(&json_block(&Value::Object(req.body.clone())));
    h
}

/// Whether a failure is the answer's validation (JSON, schema, letters) rather than the call.
fn validation_failed(code: &str) -> bool {
    code == Code::SchemaInvalid.as_str() || code == Code::LetterDetected.as_str()
}

fn result_html(r: &RunResult) -> String {
    let status = serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let validation = match &r.error {
        None => badge("passed"),
        Some(err) if validation_failed(&err.code) => {
            format!("{} <code>{}</code>", badge("failed"), e(&err.code))
        }
        Some(_) => "<span class=\"dim\">not reached</span>".to_owned(),
    };
    let mut facts = vec![
        ("Status", badge(&status)),
        (
            "Error",
            r.error.as_ref().map_or_else(
                || opt(None),
                |err| format!("<code>{}</code> {}", e(&err.code), e(&err.message)),
            ),
        ),
        ("Validation", validation),
        ("Provider HTTP status", r.http_status.to_string()),
        (
            "Timings",
            format!(
                "total {} ms · provider {} ms · TTFT {}",
                r.total_ms,
                r.provider_ms,
                r.ttft_ms
                    .map_or_else(|| "–".to_owned(), |t| format!("{t} ms"))
            ),
        ),
        (
            "Attempts",
            format!("{} HTTP · {} content", r.attempts, r.content_attempts),
        ),
        (
            "Cost",
            r.cost.map_or_else(
                || "<span class=\"dim\">unpriced</span>".to_owned(),
                |c| format!("${c}"),
            ),
        ),
        (
            "Trace",
            link(&format!("/trace/{}", seg(&r.trace_id)), &r.trace_id),
        ),
    ];
    if let Some(id) = r.audit_id {
        facts.push((
            "Audit row",
            link(&format!("/audit/{id}"), &format!("#{id}")),
        ));
    }
    if let Some(d) = &r.audit_deferred {
        facts.push(("Audit", format!("deferred to the spool: {}", e(d))));
    }
    let mut h = facts_html(&facts);
    h.push_str("<h2>Answer</h2>");
    h.push_str(&format!(
        "<pre class=\"answer\" id=\"answer\">{}</pre>",
        e(r.content.as_deref().unwrap_or(""))
    ));
    if let Some(p) = &r.parsed {
        h.push_str("<h2>Parsed JSON</h2>");
        h.push_str(&json_block(p));
    }
    if let Some(u) = &r.usage {
        h.push_str("<h2>Usage</h2>");
        h.push_str(&json_block(u));
    }
    h
}

fn route_html(r: &RouteResult) -> String {
    let mut h = facts_html(&[
        (
            "Route",
            e(&format!("{}/{}", r.route.project, r.route.route_key)),
        ),
        ("Answered by", opt(r.answered_by.as_deref())),
    ]);
    h.push_str("<h2>Member attempts</h2>");
    let rows: Vec<Vec<String>> = r
        .member_attempts
        .iter()
        .map(|m| {
            let status = serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                m.attempt.to_string(),
                e(&m.config_key),
                badge(&status),
                m.error
                    .as_ref()
                    .map_or_else(|| opt(None), |err| format!("<code>{}</code>", e(&err.code))),
                if m.handed_over {
                    "handed over".into()
                } else {
                    opt(None)
                },
                format!("{} ms", m.total_ms),
                m.audit_id.map_or_else(
                    || opt(None),
                    |id| link(&format!("/audit/{id}"), &format!("#{id}")),
                ),
            ]
        })
        .collect();
    h.push_str(&table_html(
        &[
            "#",
            "Config",
            "Status",
            "Code",
            "Handover",
            "Time",
            "Audit row",
        ],
        &rows,
    ));
    h.push_str("<h2>Result</h2>");
    h.push_str(&result_html(&r.result));
    h
}

/// `POST /try`: a dry run (nothing sent, nothing written) or an ordinary audited run.
pub(in crate::console) async fn try_it(
    State(c): S,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    let t = match parse_try(fields) {
        Ok(t) => t,
        Err(m) => return Err(PageError::new(Code::InvalidInput, &m, Nav::Catalog)),
    };
    let runner = &c.app.runner;
    let ctx = RunContext::new(Trigger::Console);
    match (&t.route, &t.config, t.run) {
        (Some((p, r)), _, false) => match runner.dry_run(p, r, &t.vars).await {
            Ok(d) => Ok(html(
                StatusCode::OK,
                &format!("Dry run of {p}/{r}"),
                Nav::Catalog,
                &dry_html(&d.request, Some(&d.order)),
            )),
            Err(err) => Err(PageError::logged(err.code(), &err, Nav::Catalog)),
        },
        (Some((p, r)), _, true) => {
            let res = runner.run_route(p, r, &t.vars, &ctx).await;
            Ok(html(
                StatusCode::OK,
                &format!("Run of {p}/{r}"),
                Nav::Catalog,
                &route_html(&res),
            ))
        }
        (None, Some(k), false) => match runner.dry_run_config(k, &t.vars).await {
            Ok(d) => Ok(html(
                StatusCode::OK,
                &format!("Dry run of {k}"),
                Nav::Catalog,
                &dry_html(&d, None),
            )),
            Err(err) => Err(PageError::logged(err.code(), &err, Nav::Catalog)),
        },
        (None, Some(k), true) => {
            let res = runner.run_once(k, &t.vars, &ctx).await;
            Ok(html(
                StatusCode::OK,
                &format!("Run of {k}"),
                Nav::Catalog,
                &result_html(&res),
            ))
        }
        (None, None, _) => Err(PageError::new(
            Code::InvalidInput,
            "pick a config or a route",
            Nav::Catalog,
        )),
    }
}

// ---- audit trail -----------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_try_form_reads_variables_extra_json_and_the_action() {
        let t = parse_try(vec![
            ("project".into(), "p".into()),
            ("route".into(), "r".into()),
            ("var.TEXT".into(), "hi".into()),
            ("var.EMPTY".into(), String::new()),
            ("vars_json".into(), "{\"N\": 3}".into()),
            ("action".into(), "run".into()),
        ])
        .unwrap();
        assert!(t.run);
        assert_eq!(t.route, Some(("p".into(), "r".into())));
        assert_eq!(
            Value::Object(t.vars),
            serde_json::json!({"TEXT": "hi", "N": 3})
        );
        assert!(
            parse_try(vec![
                ("config".into(), "c".into()),
                ("vars_json".into(), "[1]".into())
            ])
            .is_err()
        );
        assert!(parse_try(vec![("action".into(), "dry".into())]).is_err());
    }
}
