//! What an invocation answers, typed until the last moment: a [`Reply`] is an answer or a
//! [`Fault`] (its code, message and trace id) with the rate-limit state an HTTP caller is told,
//! rendered per platform only where it leaves the process ([`Reply::into_lambda`] for the
//! Runtime API and FC's event invoke, [`Reply::into_http`] for FC's HTTP trigger).
//!
//! Invariants: HTTP callers always get an HTTP response (status from [`http_status`], body
//! `{"error":{"code","message"},"trace_id"}`, `content-type: application/json`); other callers
//! get the answer's JSON or a platform error ([`Failure`]) whose `errorType` is the stable code.

use serde_json::{Value, json};

use crate::access::{Denied, Limits};
use crate::code::Code;
use crate::error::RunError;
pub use crate::status::http_status;

/// A failed invocation as the platform reports it, `{errorType, errorMessage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub error_type: String,
    /// Short message (with the trace id when a run happened).
    pub error_message: String,
}

impl Failure {
    /// A failure with its stable code and short message.
    pub fn new(code: Code, message: String) -> Self {
        Self {
            error_type: code.as_str().to_owned(),
            error_message: message,
        }
    }
}

impl From<Failure> for lambda_runtime::Diagnostic {
    fn from(f: Failure) -> Self {
        lambda_runtime::Diagnostic {
            error_type: f.error_type,
            error_message: f.error_message,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Stable code.
    pub code: Code,
    /// Short message.
    pub message: String,
    /// The run's trace id, when a run happened.
    pub trace_id: Option<String>,
}

/// An invocation's answer, before any platform's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The answer's JSON, or why there is none.
    pub outcome: Result<Value, Fault>,
    /// `X-RateLimit-Limit` / `X-RateLimit-Remaining` for an HTTP caller.
    pub limits: Option<Limits>,
    /// `Retry-After` (seconds) for an HTTP caller.
    pub retry_after: Option<u64>,
    /// An answer already rendered in another protocol's shape (the OpenAI-compatible API's
    /// completions, streams and error objects): sent as it is, status and headers included.
    pub rendered: Option<HttpAnswer>,
}

/// An HTTP answer: status, headers in order, body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, `content-type` first.
    pub headers: Vec<(&'static str, String)>,
    /// The body's text (JSON, or an SSE stream for the OpenAI-compatible API).
    pub body: String,
}

impl Reply {
    /// An answer.
    pub fn ok(body: Value) -> Self {
        Self {
            outcome: Ok(body),
            limits: None,
            retry_after: None,
            rendered: None,
        }
    }

    /// An answer serialised from `body`.
    pub fn json<T: serde::Serialize>(body: &T) -> Self {
        Self::ok(serde_json::to_value(body).unwrap_or(Value::Null))
    }

    /// A failure with its code and short message (the one way a reply fails).
    pub fn failed(code: Code, message: impl Into<String>) -> Self {
        Self {
            outcome: Err(Fault {
                code,
                message: message.into(),
                trace_id: None,
            }),
            limits: None,
            retry_after: None,
            rendered: None,
        }
    }

    /// A failure of this error (an event that could not be read, a job that could not start).
    pub fn error(e: &RunError) -> Self {
        Self::failed(e.code(), e.to_string())
    }

    /// A finished run: its result, or its failure with the run's trace id.
    pub fn run<T: serde::Serialize>(
        failure: Option<&RunError>,
        trace_id: &str,
        result: &T,
    ) -> Self {
        match failure {
            None => Self::json(result),
            Some(e) => {
                let mut r = Self::error(e);
                if let Err(f) = &mut r.outcome {
                    f.trace_id = Some(trace_id.to_owned());
                }
                // An open circuit breaker says when to come back.
                r.retry_after = e.retry_after_secs();
                r
            }
        }
    }

    /// An API call the access check refused: the code the caller may see (an unknown key looks
    /// like a bad signature), `Retry-After` and `X-RateLimit-*` for limits.
    pub fn denied(denied: &Denied) -> Self {
        Self {
            retry_after: denied.retry_after,
            limits: denied.limits,
            ..Self::failed(denied.shown(), denied.message())
        }
    }

    /// An HTTP answer rendered elsewhere (the OpenAI-compatible API), sent as it is (a direct
    /// caller, which never gets one, would get its body, or a failure for a non-2xx status).
    pub fn rendered(answer: HttpAnswer) -> Self {
        let outcome = if (200..300).contains(&answer.status) {
            Ok(serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body.clone())))
        } else {
            Err(Fault {
                code: Code::InvalidInput,
                message: answer.body.clone(),
                trace_id: None,
            })
        };
        Self {
            outcome,
            limits: None,
            retry_after: None,
            rendered: Some(answer),
        }
    }

    /// The same reply telling the caller its rate-limit state, when there is one.
    #[must_use]
    pub fn with_limits(mut self, limits: Option<Limits>) -> Self {
        if limits.is_some() {
            self.limits = limits;
        }
        self
    }

    /// The HTTP status an HTTP caller gets.
    pub fn status(&self) -> u16 {
        if let Some(a) = &self.rendered {
            return a.status;
        }
        match &self.outcome {
            Ok(_) => 200,
            Err(f) => http_status(f.code),
        }
    }

    /// Rendered for an HTTP caller.
    pub fn into_http(self) -> HttpAnswer {
        if let Some(mut a) = self.rendered {
            if let Some(l) = self.limits {
                a.headers.push(("x-ratelimit-limit", l.limit.to_string()));
                a.headers
                    .push(("x-ratelimit-remaining", l.remaining.to_string()));
            }
            return a;
        }
        let status = self.status();
        let body = match self.outcome {
            Ok(v) => v,
            Err(f) => {
                let mut body = json!({"error": {"code": f.code.as_str(), "message": f.message}});
                if let Some(t) = f.trace_id {
                    body["trace_id"] = json!(t);
                }
                body
            }
        };
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(s) = self.retry_after {
            headers.push(("retry-after", s.to_string()));
        }
        if let Some(l) = self.limits {
            headers.push(("x-ratelimit-limit", l.limit.to_string()));
            headers.push(("x-ratelimit-remaining", l.remaining.to_string()));
        }
        HttpAnswer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// Rendered for the Lambda Runtime API (and FC's event invoke): an HTTP caller's API Gateway
    /// proxy response (valid for payload 1.0 and 2.0), or another caller's JSON or platform error.
    pub fn into_lambda(self, http: bool) -> Result<Value, Failure> {
        if http {
            let a = self.into_http();
            let headers: serde_json::Map<String, Value> = a
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            return Ok(json!({
                "statusCode": a.status,
                "headers": headers,
                "isBase64Encoded": false,
                "body": a.body,
            }));
        }
        self.outcome.map_err(|f| {
            let message = match f.trace_id {
                Some(t) => format!("{} (trace_id {t})", f.message),
                None => f.message,
            };
            Failure::new(f.code, message)
        })
    }
}

/// Rendered headers as an HTTP header map, for the edges that answer over HTTP themselves (FC's
/// runtime, a Lambda response stream's prelude); a later value of a name replaces an earlier one
/// (`content-type` first, then the answer's own); a value that is not a valid header is dropped.
pub fn header_map(headers: Vec<(&'static str, String)>) -> axum::http::HeaderMap {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            map.insert(axum::http::HeaderName::from_static(name), v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_class_gets_its_http_status() {
        assert_eq!(http_status(Code::InvalidInput), 400);
        assert_eq!(http_status(Code::MissingMediaUrl), 400);
        assert_eq!(http_status(Code::ConfigNotFound), 404);
        assert_eq!(http_status(Code::RouteNotFound), 404);
        assert_eq!(http_status(Code::SchemaInvalid), 422);
        assert_eq!(http_status(Code::Http429RateLimit), 502);
        assert_eq!(http_status(Code::NoActiveMembers), 503);
        assert_eq!(http_status(Code::DecryptFailed), 500);
    }

    #[test]
    fn every_code_maps_to_a_client_or_server_error_status() {
        for c in Code::ALL {
            assert!((400..600).contains(&http_status(*c)), "{c}");
        }
    }

    #[test]
    fn a_run_failure_names_its_trace_to_http_callers_in_the_body_and_to_others_in_the_message() {
        let e = RunError::InvalidInput("bad".into());
        let reply = Reply::run(Some(&e), "t-1", &json!({}));
        let http = reply.clone().into_lambda(true).unwrap();
        assert_eq!(http["statusCode"], 400);
        let body: Value = serde_json::from_str(http["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "INVALID_INPUT");
        assert_eq!(body["trace_id"], "t-1");
        let direct = reply.into_lambda(false).unwrap_err();
        assert_eq!(direct.error_type, "INVALID_INPUT");
        assert!(direct.error_message.ends_with("(trace_id t-1)"), "{direct}");
    }

    #[test]
    fn limits_and_retry_after_become_headers_after_the_content_type() {
        let mut d = Denied::new(Code::RateLimited, Some("ak"));
        d.retry_after = Some(1);
        d.limits = Some(Limits {
            limit: 5,
            remaining: 0,
        });
        let a = Reply::denied(&d).into_http();
        assert_eq!(a.status, 429);
        let names: Vec<&str> = a.headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "retry-after",
                "x-ratelimit-limit",
                "x-ratelimit-remaining"
            ]
        );
        assert!(!a.body.contains("trace_id"), "{}", a.body);
        let ok = Reply::ok(json!({"a": 1})).into_lambda(false).unwrap();
        assert_eq!(ok, json!({"a": 1}), "other callers get the answer itself");
    }
}
