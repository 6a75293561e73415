//! Who may use the console: the token `ai-runner dev` printed, like Jupyter's.
//!
//! Invariants, checked for every request before any handler runs:
//! - on a loopback bind, the `Host` names this machine and port (a page on another site cannot
//!   reach the console through DNS rebinding);
//! - the token comes from the `token` query parameter (the printed URL: answered with a cookie and,
//!   for a page, a redirect that drops it from the address bar), or an `Authorization:
//!   token|Bearer` header; or the console's cookie carries its session value (derived from the
//!   token, the port and a per-process random: never the token, which every server on this
//!   host would receive); all are compared in constant time;
//! - a state-changing request authenticated by the cookie alone must come from the console's own
//!   origin (`Origin`, else `Sec-Fetch-Site: same-origin`): no cross-site request forgery;
//! - every answer carries a Content-Security-Policy without scripts, `nosniff`, a referrer only
//!   to itself, and no framing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Console;
use crate::code::Code;

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Serve it.
    Pass,
    /// Serve it and keep the token in a cookie (an API call that carried it in the URL).
    PassAndRemember,
    /// Keep the token in a cookie and send the browser to the same address without it.
    Remember { location: String },
    /// Refuse.
    Refuse(Code, &'static str),
}

/// Constant-time equality of two byte strings (lengths are not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query_token(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// The path and query without the `token` parameter.
fn without_token(path: &str, query: &str) -> String {
    let rest: Vec<(String, String)> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "token")
        .collect();
    // Always a path on this host: `//evil.example/` would be another site.
    let path = format!("/{}", path.trim_start_matches(['/', '\\']));
    match serde_urlencoded::to_string(&rest) {
        Ok(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    }
}

/// Whether `host` (the `Host` header) names this machine on the console's port (browsers leave
/// port 80 out).
fn local_host(host: &str, port: u16, bound: &str) -> bool {
    ["127.0.0.1", "localhost", "[::1]", bound].iter().any(|h| {
        host.eq_ignore_ascii_case(&format!("{h}:{port}"))
            || (port == 80 && host.eq_ignore_ascii_case(h))
    })
}

fn verdict(c: &Console, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Verdict {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if c.loopback && !local_host(host, c.port, &c.bound) {
        return Verdict::Refuse(
            Code::ConsoleCrossOrigin,
            "this console answers only to 127.0.0.1, localhost and [::1] on its port",
        );
    }
    let token = c.token.as_bytes();
    let from_query = query_token(query).is_some_and(|t| same(t.as_bytes(), token));
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("token ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .is_some_and(|t| same(t.trim().as_bytes(), token));
    let from_cookie =
        cookie_value(headers, &c.cookie).is_some_and(|t| same(t.as_bytes(), c.session.as_bytes()));
    if !(from_query || from_header || from_cookie) {
        return Verdict::Refuse(
            Code::ConsoleTokenInvalid,
            "open the console with the URL `ai-runner dev` printed: it carries the token",
        );
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !from_query && !from_header {
        // The cookie rides along with any request the browser makes, whoever made the page.
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        // Browsers send `Origin: null` in some cases (privacy settings); the fetch metadata
        // header then says whether the request came from our own pages.
        let same_origin = match origin.filter(|o| *o != "null") {
            Some(o) => o.eq_ignore_ascii_case(&format!("http://{host}")),
            None => headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"same-origin"),
        };
        if !same_origin {
            return Verdict::Refuse(
                Code::ConsoleCrossOrigin,
                "a change from another site: submit the console's own form",
            );
        }
    }
    if from_query {
        // A page always drops the token from the address bar (and the history), even when the
        // cookie is already there.
        let page = *method == Method::GET && !matches!(path, "/routes" | "/invoke");
        if page {
            return Verdict::Remember {
                location: without_token(path, query),
            };
        }
        if !from_cookie {
            return Verdict::PassAndRemember;
        }
    }
    Verdict::Pass
}

/// Content-Security-Policy of every answer: no script, nothing from elsewhere.
pub(super) const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn harden(headers: &mut HeaderMap) {
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: with it browsers send `Origin: null` on our own form posts.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The middleware: admits, remembers or refuses every request.
pub(super) async fn admit(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let v = verdict(&c, req.method(), &path, &query, req.headers());
    let cookie = || {
        HeaderValue::from_str(&format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            c.cookie, c.session
        ))
        .ok()
    };
    let mut resp = match v {
        Verdict::Pass => next.run(req).await,
        Verdict::PassAndRemember => {
            let mut r = next.run(req).await;
            if let Some(v) = cookie() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Verdict::Remember { location } => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(l) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, l);
            }
            if let Some(v) = cookie() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Verdict::Refuse(code, message) => {
            tracing::warn!(code = %code, path, "console request refused");
            super::page::refusal(
                code,
                message,
                matches!(path.as_str(), "/routes" | "/invoke"),
            )
        }
    };
    harden(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(loopback: bool) -> Console {
        let settings = crate::config::Settings::from_vars(&std::collections::HashMap::from([
            ("AI_PEPPER".to_owned(), "p".repeat(32)),
            ("AI_RUNNER_DB_PATH".to_owned(), "never-opened.db".to_owned()),
        ]))
        .unwrap();
        Console {
            app: crate::app::App::new(&settings).unwrap(),
            token: "t0k3n-abcdefghijklmnop".into(),
            cookie: "ai_runner_console_8899".into(),
            session: "5e55-10n-abcdefghijklmnop".into(),
            port: 8899,
            bound: "127.0.0.1".into(),
            loopback,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_request_without_the_token_is_refused_and_the_printed_url_sets_the_cookie() {
        let c = console(true);
        let h = headers(&[("host", "127.0.0.1:8899")]);
        assert_eq!(
            verdict(&c, &Method::GET, "/audit", "", &h),
            Verdict::Refuse(
                Code::ConsoleTokenInvalid,
                "open the console with the URL `ai-runner dev` printed: it carries the token"
            )
        );
        assert!(matches!(
            verdict(&c, &Method::GET, "/audit", "token=wrong-token-abcdefgh", &h),
            Verdict::Refuse(Code::ConsoleTokenInvalid, _)
        ));
        assert_eq!(
            verdict(
                &c,
                &Method::GET,
                "/audit",
                "status=error&token=t0k3n-abcdefghijklmnop",
                &h
            ),
            Verdict::Remember {
                location: "/audit?status=error".into()
            }
        );
        let h = headers(&[
            ("host", "localhost:8899"),
            (
                "cookie",
                "a=b; ai_runner_console_8899=5e55-10n-abcdefghijklmnop",
            ),
        ]);
        assert_eq!(verdict(&c, &Method::GET, "/", "", &h), Verdict::Pass);
        // The printed URL opened again: still redirected, never left in the address bar.
        assert_eq!(
            verdict(
                &c,
                &Method::GET,
                "//evil.example/",
                "token=t0k3n-abcdefghijklmnop",
                &h
            ),
            Verdict::Remember {
                location: "/evil.example/".into()
            }
        );
    }

    #[test]
    fn the_cookie_admits_by_its_session_value_never_by_the_token() {
        let c = console(true);
        // What a server on another localhost port received could not be the token.
        let token_cookie = headers(&[
            ("host", "127.0.0.1:8899"),
            ("cookie", "ai_runner_console_8899=t0k3n-abcdefghijklmnop"),
        ]);
        assert!(matches!(
            verdict(&c, &Method::GET, "/", "", &token_cookie),
            Verdict::Refuse(Code::ConsoleTokenInvalid, _)
        ));
        // And the session value is not a token.
        let session_as_token = headers(&[
            ("host", "127.0.0.1:8899"),
            ("authorization", "token 5e55-10n-abcdefghijklmnop"),
        ]);
        assert!(matches!(
            verdict(&c, &Method::GET, "/", "", &session_as_token),
            Verdict::Refuse(Code::ConsoleTokenInvalid, _)
        ));
        let token = "t0k3n-abcdefghijklmnop";
        let a = super::super::session_value(token, 8899);
        assert!(!a.contains(token));
        assert_ne!(
            a,
            super::super::session_value(token, 8900),
            "bound to the port"
        );
        assert_ne!(
            a,
            super::super::session_value(token, 8899),
            "and to the process"
        );
    }

    #[test]
    fn a_foreign_host_is_refused_on_loopback_even_with_the_token() {
        let c = console(true);
        let h = headers(&[
            ("host", "evil.example:8899"),
            ("authorization", "token t0k3n-abcdefghijklmnop"),
        ]);
        assert!(matches!(
            verdict(&c, &Method::GET, "/", "", &h),
            Verdict::Refuse(Code::ConsoleCrossOrigin, _)
        ));
        assert_eq!(
            verdict(&console(false), &Method::GET, "/", "", &h),
            Verdict::Pass
        );
    }

    #[test]
    fn a_cookie_borne_post_must_come_from_the_consoles_own_origin() {
        let c = console(true);
        let cookie = "ai_runner_console_8899=5e55-10n-abcdefghijklmnop";
        let ours = headers(&[
            ("host", "127.0.0.1:8899"),
            ("cookie", cookie),
            ("origin", "http://127.0.0.1:8899"),
        ]);
        assert_eq!(verdict(&c, &Method::POST, "/try", "", &ours), Verdict::Pass);
        let theirs = headers(&[
            ("host", "127.0.0.1:8899"),
            ("cookie", cookie),
            ("origin", "https://evil.example"),
        ]);
        assert!(matches!(
            verdict(&c, &Method::POST, "/try", "", &theirs),
            Verdict::Refuse(Code::ConsoleCrossOrigin, _)
        ));
        let null = headers(&[
            ("host", "127.0.0.1:8899"),
            ("cookie", cookie),
            ("origin", "null"),
        ]);
        assert!(matches!(
            verdict(&c, &Method::POST, "/try", "", &null),
            Verdict::Refuse(Code::ConsoleCrossOrigin, _)
        ));
        let unknown = headers(&[("host", "127.0.0.1:8899"), ("cookie", cookie)]);
        assert!(matches!(
            verdict(&c, &Method::POST, "/invoke", "", &unknown),
            Verdict::Refuse(Code::ConsoleCrossOrigin, _)
        ));
        let fetch = headers(&[
            ("host", "127.0.0.1:8899"),
            ("cookie", cookie),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(
            verdict(&c, &Method::POST, "/try", "", &fetch),
            Verdict::Pass
        );
        // A script with the token itself is not a forgery.
        let api = headers(&[
            ("host", "127.0.0.1:8899"),
            ("authorization", "Bearer t0k3n-abcdefghijklmnop"),
        ]);
        assert_eq!(
            verdict(&c, &Method::POST, "/invoke", "", &api),
            Verdict::Pass
        );
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
