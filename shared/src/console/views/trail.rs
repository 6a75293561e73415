//! The audit trail: filtered keyset pages, one row with its bodies (spilled ones fetched from the
//! spill-over location and checked against their digest), and a trace's calls.
//!
//! Invariants: pages use the keyset cursor, never an offset; a spilled body is read only from the
//! spill-over location and shown only when its digest matches.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::not_found;
use super::{OnPage, Page, PageError, S};
use crate::code::Code;
use crate::console::page::{
    Nav, badge, e, facts_html, html, json_text_block, link, opt, query, seg, table_html, usd,
};
use crate::model::trail::{TrailCursor, TrailFilter};

/// Rows per trail page.
const PAGE: u32 = 50;

fn filter_form(f: &TrailFilter) -> String {
    let input = |name: &str, label: &str, v: &Option<String>, kind: &str| {
        format!(
            "<label>{label}<input type=\"{kind}\" name=\"{name}\" id=\"f-{name}\" value=\"{}\"></label>",
            e(v.as_deref().unwrap_or(""))
        )
    };
    let status = |v: &str, label: &str| {
        let sel = if f.status.map(|s| s.as_str()) == Some(v) || (v.is_empty() && f.status.is_none())
        {
            " selected"
        } else {
            ""
        };
        format!("<option value=\"{v}\"{sel}>{label}</option>")
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/audit\">{}{}{}{}{}\
         <label>Status<select name=\"status\" id=\"f-status\">{}{}{}</select></label>{}{}\
         <button id=\"filter\">Filter</button> <a href=\"/audit\">clear</a></form>",
        input("since", "Since (UTC)", &f.since, "text"),
        input("until", "Until (UTC)", &f.until, "text"),
        input("config", "Config", &f.config_key, "text"),
        input("project", "Project", &f.project, "text"),
        input("route", "Route", &f.route_key, "text"),
        status("", "any"),
        status("ok", "ok"),
        status("error", "error"),
        input("code", "Error code", &f.error_code, "text"),
        input("trace", "Trace id", &f.trace_id, "text"),
    )
}

/// `GET /audit`: the trail, filtered, a keyset page at a time.
pub(in crate::console) async fn trail(State(c): S, Query(q): Query<Vec<(String, String)>>) -> Page {
    let fields: HashMap<String, String> = q.into_iter().collect();
    let filter = match TrailFilter::parse(&fields) {
        Ok(f) => f,
        Err(err) => {
            return Err(PageError::new(
                Code::InvalidInput,
                err.to_string(),
                Nav::Trail,
            ));
        }
    };
    let after = match fields.get("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match TrailCursor::decode(a) {
            Some(c) => Some(c),
            None => {
                return Err(PageError::new(
                    Code::InvalidInput,
                    "after: not a page cursor",
                    Nav::Trail,
                ));
            }
        },
    };
    let page = c
        .app
        .runner
        .store()
        .audit_page(&filter, after.as_ref(), PAGE)
        .await
        .on_page(Nav::Trail)?;
    let rows: Vec<Vec<String>> = page
        .rows
        .iter()
        .map(|r| {
            let route = match (&r.project_name, &r.route_key) {
                (Some(p), Some(k)) => format!(
                    "{} <span class=\"dim\">#{}</span>",
                    e(&format!("{p}/{k}")),
                    r.route_attempt.unwrap_or(0)
                ),
                _ => opt(None),
            };
            let status = match (&r.error_code, r.status.as_deref()) {
                (Some(code), _) => format!("{} <code>{}</code>", badge("error"), e(code)),
                (None, Some(s)) => badge(s),
                (None, None) => badge("ok"),
            };
            vec![
                link(&format!("/audit/{}", r.id), &format!("#{}", r.id)),
                e(&r.created_at),
                e(&r.config_key),
                opt(r.model_name.as_deref()),
                route,
                status,
                r.http_status.to_string(),
                r.duration_ms.to_string(),
                r.total_tokens.map_or_else(|| opt(None), |t| t.to_string()),
                usd(r.cost_nano_usd),
                opt(r.trigger_source.as_deref()),
                r.trace_id.as_ref().map_or_else(
                    || opt(None),
                    |t| link(&format!("/trace/{}", seg(t)), t.get(..8).unwrap_or(t)),
                ),
            ]
        })
        .collect();
    let mut body = filter_form(&filter);
    body.push_str(&table_html(
        &[
            "Id",
            "Time (UTC)",
            "Config",
            "Model",
            "Route",
            "Status",
            "HTTP",
            "ms",
            "Tokens",
            "Cost",
            "Trigger",
            "Trace",
        ],
        &rows,
    ));
    body.push_str("<div class=\"pager\">");
    if after.is_some() {
        body.push_str(&link(
            &format!("/audit{}", query(&filter.pairs())),
            "« newest",
        ));
    }
    if let Some(next) = &page.next {
        let mut pairs = filter.pairs();
        pairs.push(("after", next.encode()));
        body.push_str(&format!(
            "<a id=\"older\" href=\"/audit{}\">older »</a>",
            query(&pairs)
        ));
    }
    body.push_str("</div>");
    Ok(html(StatusCode::OK, "Audit trail", Nav::Trail, &body))
}

/// A spilled body's object: `{"$ref": "s3://bucket/key", "bytes", "sha256"}`.
fn spilled(text: &str) -> Option<(String, String, Option<String>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let r = v.get("$ref")?.as_str()?.strip_prefix("s3://")?;
    let (bucket, key) = r.split_once('/')?;
    Some((
        bucket.to_owned(),
        key.to_owned(),
        v.get("sha256").and_then(Value::as_str).map(str::to_owned),
    ))
}

fn body_section(id: i64, which: &str, text: Option<&str>) -> String {
    let mut h = format!(
        "<h2>{} body</h2>",
        if which == "request" {
            "Request"
        } else {
            "Response"
        }
    );
    match text {
        None => h.push_str(&opt(None)),
        Some(t) => {
            if spilled(t).is_some() {
                h.push_str(&format!(
                    "<p>Stored in object storage. <a id=\"fetch-{which}\" href=\"/audit/{id}/body/{which}\">Fetch it</a></p>"
                ));
            }
            h.push_str(&json_text_block(t));
        }
    }
    h
}

/// `GET /audit/{id}`: one row, bodies pretty-printed.
pub(in crate::console) async fn detail(State(c): S, Path(id): Path<i64>) -> Page {
    let row = match c.app.runner.store().audit_row(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(PageError::new(
                Code::InvalidInput,
                format!("no audit row #{id}"),
                Nav::Trail,
            ));
        }
        Err(err) => return Err(PageError::logged(err.code(), &err, Nav::Trail)),
    };
    let text = |k: &str| row.get(k).and_then(Value::as_str);
    let mut facts = Vec::new();
    for (k, v) in &row {
        if matches!(
            k.as_str(),
            "request_body_json" | "response_body_json" | "created_at"
        ) {
            continue;
        }
        let cell = match (k.as_str(), v) {
            (_, Value::Null) => opt(None),
            ("trace_id", Value::String(t)) => link(&format!("/trace/{}", seg(t)), t),
            (_, Value::String(s)) => e(s),
            (_, other) => e(&other.to_string()),
        };
        facts.push((k.as_str(), cell));
    }
    let mut body = facts_html(&facts);
    body.push_str(&body_section(id, "request", text("request_body_json")));
    body.push_str(&body_section(id, "response", text("response_body_json")));
    Ok(html(
        StatusCode::OK,
        &format!("Audit row #{id}"),
        Nav::Trail,
        &body,
    ))
}

/// `GET /audit/{id}/body/{which}`: a spilled body, fetched from object storage on demand and
/// checked against the SHA-256 the row recorded.
pub(in crate::console) async fn spilled_body(
    State(c): S,
    Path((id, which)): Path<(i64, String)>,
) -> Page {
    let column = match which.as_str() {
        "request" => "request_body_json",
        "response" => "response_body_json",
        _ => return Ok(not_found().await),
    };
    let row = match c.app.runner.store().audit_row(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(PageError::new(
                Code::InvalidInput,
                format!("no audit row #{id}"),
                Nav::Trail,
            ));
        }
        Err(err) => return Err(PageError::logged(err.code(), &err, Nav::Trail)),
    };
    let Some((bucket, key, sha)) = row.get(column).and_then(Value::as_str).and_then(spilled) else {
        return Err(PageError::new(
            Code::InvalidInput,
            "this body was not spilled",
            Nav::Trail,
        ));
    };
    // A provider's answer is stored as sent: one shaped like a reference must not make the
    // console read any object it can reach. Only the spill-over location is ours.
    let ours = c.app.object_settings().bucket.as_deref() == Some(bucket.as_str())
        && key.starts_with(&c.app.object_settings().spill_prefix);
    if !ours {
        return Err(PageError::new(
            Code::ObjectAccessDenied,
            "this body names an object outside the spill-over location",
            Nav::Trail,
        ));
    }
    let bytes = c
        .app
        .objects
        .get(&bucket, &key, crate::ports::ObjectPin::NONE)
        .await
        .on_page(Nav::Trail)?;
    use sha2::Digest;
    let got = crate::hex::encode(&sha2::Sha256::digest(&bytes));
    let mut body = facts_html(&[
        ("Object", e(&format!("s3://{bucket}/{key}"))),
        ("Bytes", bytes.len().to_string()),
        (
            "SHA-256",
            match sha {
                Some(s) if s == got => format!("{} {}", badge("ok"), e(&got)),
                Some(s) => format!(
                    "{} recorded {} · fetched {}",
                    badge("error"),
                    e(&s),
                    e(&got)
                ),
                None => e(&got),
            },
        ),
    ]);
    body.push_str(&json_text_block(&String::from_utf8_lossy(&bytes)));
    Ok(html(
        StatusCode::OK,
        &format!("Audit row #{id}: {which} body"),
        Nav::Trail,
        &body,
    ))
}

/// `GET /trace/{trace}`: a run's rows in order (a route's member attempts and handovers).
pub(in crate::console) async fn trace(State(c): S, Path(trace): Path<String>) -> Page {
    let rows = c
        .app
        .runner
        .store()
        .audit_rows_for_trace(&trace)
        .await
        .on_page(Nav::Trail)?;
    let t = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_i64);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = n(r, "id").unwrap_or_default();
            vec![
                n(r, "route_attempt").map_or_else(|| opt(None), |a| a.to_string()),
                link(&format!("/audit/{id}"), &format!("#{id}")),
                opt(t(r, "created_at_text").as_deref()),
                opt(t(r, "config_key").as_deref()),
                opt(t(r, "model_name").as_deref()),
                match t(r, "error_code") {
                    Some(code) => format!("{} <code>{}</code>", badge("error"), e(&code)),
                    None => badge("ok"),
                },
                opt(t(r, "handover_reason").as_deref()),
                n(r, "duration_ms").unwrap_or_default().to_string(),
                usd(n(r, "cost_nano_usd")),
            ]
        })
        .collect();
    let route = rows.first().and_then(|r| {
        Some(format!(
            "{}/{} ({})",
            t(r, "project_name")?,
            t(r, "route_key")?,
            t(r, "route_policy").unwrap_or_default()
        ))
    });
    let mut body = facts_html(&[
        ("Trace", e(&trace)),
        ("Route", opt(route.as_deref())),
        ("Rows", rows.len().to_string()),
    ]);
    body.push_str(&table_html(
        &[
            "Member",
            "Row",
            "Time (UTC)",
            "Config",
            "Model",
            "Status",
            "Handover reason",
            "ms",
            "Cost",
        ],
        &table,
    ));
    Ok(html(
        StatusCode::OK,
        &format!("Trace {trace}"),
        Nav::Trail,
        &body,
    ))
}

// ---- uploads and evaluations -----------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_references_name_their_bucket_key_and_digest() {
        assert_eq!(
            spilled(r#"{"$ref":"s3://b/ai-runner/spill/t/x.json","bytes":9,"sha256":"ab"}"#),
            Some((
                "b".into(),
                "ai-runner/spill/t/x.json".into(),
                Some("ab".into())
            ))
        );
        assert_eq!(spilled(r#"{"model":"m"}"#), None);
    }
}
