//! The console's HTML: the layout every page shares, and the small builders pages are made of
//! (tables, JSON blocks, links, notices).
//!
//! Invariants: text goes into HTML only through [`e`] (that is, [`crate::html::escape`]) and into
//! URLs only through [`seg`] / [`query`] (percent-encoded, then escaped); builders that take
//! ready HTML say so in their names (`*_html`). No script anywhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use crate::code::Code;
use crate::status::http_status;

/// Escapes text for HTML.
pub(super) fn e(s: &str) -> String {
    crate::html::escape(s)
}

/// A path segment, percent-encoded (then safe inside an attribute).
pub(super) fn seg(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, KEEP).to_string()
}

/// `?k=v&...` (empty when there are no pairs), encoded and escaped for an attribute.
pub(super) fn query(pairs: &[(&str, String)]) -> String {
    match serde_urlencoded::to_string(pairs) {
        Ok(q) if !q.is_empty() => e(&format!("?{q}")),
        _ => String::new(),
    }
}

/// A link; `href` is already encoded (built with [`seg`] / [`query`]), `text` is plain text.
pub(super) fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{href}\">{}</a>", e(text))
}

/// Optional text, or a dash.
pub(super) fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "<span class=\"dim\">–</span>".to_owned(), e)
}

/// JSON, pretty-printed and escaped.
pub(super) fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", e(&text))
}

/// A stored JSON text, pretty-printed when it parses (shown as it is otherwise).
pub(super) fn json_text_block(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => json_block(&v),
        Err(_) => format!("<pre class=\"json\">{}</pre>", e(text)),
    }
}

/// A table from a header row and cells that are already HTML.
pub(super) fn table_html(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<table><thead><tr>");
    for c in head {
        h.push_str(&format!("<th>{}</th>", e(c)));
    }
    h.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        h.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"dim\">nothing yet</td></tr>",
            head.len().max(1)
        ));
    }
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            h.push_str(&format!("<td>{c}</td>"));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// Label / value rows; values are already HTML.
pub(super) fn facts_html(rows: &[(&str, String)]) -> String {
    let mut h = String::from("<table class=\"facts\"><tbody>");
    for (k, v) in rows {
        h.push_str(&format!("<tr><th>{}</th><td>{v}</td></tr>", e(k)));
    }
    h.push_str("</tbody></table>");
    h
}

/// A status badge: `ok`, `error` or other text.
pub(super) fn badge(status: &str) -> String {
    let class = match status {
        "ok" | "succeeded" | "finished" | "passed" => "ok",
        "error" | "failed" | "rejected" | "stopped" => "bad",
        _ => "neutral",
    };
    format!("<span class=\"badge {class}\">{}</span>", e(status))
}

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Catalog,
    Trail,
    Uploads,
    Evals,
}

/// A whole page: title (plain text), the active section, and the body (HTML).
pub(super) fn layout(title: &str, nav: Nav, body: &str) -> String {
    let item = |n: Nav, href: &str, label: &str| {
        let class = if n == nav { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · ai-runner</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
         <body><header><span class=\"brand\">ai-runner</span><nav>{}{}{}{}</nav></header>\
         <main><h1>{}</h1>{body}</main></body></html>",
        e(title),
        item(Nav::Catalog, "/", "Catalog"),
        item(Nav::Trail, "/audit", "Audit trail"),
        item(Nav::Uploads, "/uploads", "Uploads"),
        item(Nav::Evals, "/evals", "Evaluations"),
        e(title),
    )
}

/// A page answer.
pub(super) fn html(status: StatusCode, title: &str, nav: Nav, body: &str) -> Response {
    (status, Html(layout(title, nav, body))).into_response()
}

/// A failure as a page: its code, a short message (never a cause chain) and the status the code
/// maps to.
pub(super) fn failure(code: Code, message: &str, nav: Nav) -> Response {
    let status = StatusCode::from_u16(http_status(code)).unwrap_or(StatusCode::BAD_REQUEST);
    html(
        status,
        "Something went wrong",
        nav,
        &format!(
            "<p class=\"error\"><code>{}</code> {}</p>",
            e(code.as_str()),
            e(message)
        ),
    )
}

/// A refusal before any handler ran: JSON for the predecessor's API paths, a page otherwise.
pub(super) fn refusal(code: Code, message: &str, json: bool) -> Response {
    let status = StatusCode::from_u16(http_status(code)).unwrap_or(StatusCode::FORBIDDEN);
    if json {
        return (
            status,
            axum::Json(serde_json::json!({
                "detail": message,
                "error": {"code": code.as_str(), "message": message}
            })),
        )
            .into_response();
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ai-runner console</title></head>\
         <body><h1>ai-runner console</h1><p><code>{}</code> {}</p></body></html>",
        e(code.as_str()),
        e(message)
    );
    (status, Html(body)).into_response()
}

/// A USD amount from nano-USD.
pub(super) fn usd(nano: Option<i64>) -> String {
    nano.map_or_else(
        || "<span class=\"dim\">–</span>".to_owned(),
        |n| format!("${}", crate::model::cost::nano_usd(n)),
    )
}

const CSS: &str = "\
:root{--fg:#1d232b;--dim:#6a737d;--line:#e1e4e8;--bg:#f6f8fa;--acc:#0b5cad}\
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg)}\
header{display:flex;gap:24px;align-items:center;padding:10px 24px;background:#1d232b;color:#fff}\
header .brand{font-weight:700}header nav a{color:#c9d1d9;margin-right:16px;text-decoration:none}\
header nav a.on,header nav a:hover{color:#fff;border-bottom:2px solid #58a6ff}\
main{padding:16px 24px;max-width:1400px}h1{font-size:20px;margin:8px 0 16px}h2{font-size:16px;margin:24px 0 8px}\
a{color:var(--acc)}table{border-collapse:collapse;margin:8px 0;width:100%}\
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}\
thead th{background:var(--bg);font-weight:600}table.facts{width:auto}table.facts th{background:none;color:var(--dim);font-weight:500;padding-right:24px}\
pre{background:var(--bg);border:1px solid var(--line);padding:8px;overflow:auto;max-height:480px;white-space:pre-wrap;word-break:break-word}\
code{background:var(--bg);padding:1px 4px;border-radius:3px}.dim{color:var(--dim)}\
.badge{display:inline-block;padding:0 6px;border-radius:10px;font-size:12px;border:1px solid var(--line)}\
.badge.ok{background:#dafbe1;color:#116329}.badge.bad{background:#ffebe9;color:#a40e26}.badge.neutral{background:var(--bg)}\
.error{color:#a40e26}.notice{background:#fff8c5;border:1px solid #d4a72c;padding:8px;margin:8px 0}\
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:8px 0}\
form label{display:flex;flex-direction:column;font-size:12px;color:var(--dim)}\
input,select,textarea{font:inherit;padding:4px 6px;border:1px solid #c8ccd1;border-radius:4px}\
textarea{width:100%;min-height:60px}button{font:inherit;padding:5px 12px;border-radius:4px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1f6feb}.try label{margin:6px 0}.try input{width:100%}\
.pager{margin:12px 0;display:flex;gap:16px}svg{background:#fff;border:1px solid var(--line)}";

/// The stylesheet (embedded: no CDN, no build step).
pub(super) async fn stylesheet() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_and_answers_comes_out_as_text() {
        let page = layout(
            "<script>alert(1)</script>",
            Nav::Trail,
            &table_html(
                &["a"],
                &[vec![link(&format!("/configs/{}", seg("x\"><b>")), "<b>")]],
            ),
        );
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("href=\"/configs/x%22%3E%3Cb%3E\""), "{page}");
        assert!(!page.contains("<b>"));
        assert!(json_block(&serde_json::json!({"a": "</pre><script>"})).contains("&lt;/pre&gt;"));
    }

    #[test]
    fn path_segments_and_queries_are_encoded() {
        assert_eq!(
            seg("demo project/路由"),
            "demo%20project%2F%E8%B7%AF%E7%94%B1"
        );
        assert_eq!(
            query(&[("config", "a&b".into()), ("status", "ok".into())]),
            "?config=a%26b&amp;status=ok"
        );
        assert_eq!(query(&[]), "");
    }
}
