//! What a function answers: the caller's shape for a finished run or a rejected event, and the
//! HTTP status each [`Code`] maps to.
//!
//! Invariants: HTTP callers always get an HTTP response (status from [`http_status`], body
//! `{"error":{"code","message"},"trace_id"}`); direct callers get the result JSON or a platform
//! error whose `errorType` is the stable code. [`http_status`] is an exhaustive match: a new code
//! does not compile until it has a status.

use serde_json::{Value, json};

use super::events::{self, Source};
use crate::access::{Denied, Limits};
use crate::code::Code;
use crate::error::RunError;
use crate::run::RunResult;
pub use crate::status::http_status;

/// A failed direct invocation, reported to the platform as `{errorType, errorMessage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub error_type: String,
    /// Short message (with the trace id when a run happened).
    pub error_message: String,
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

/// The answer to an event that could not be parsed.
pub(crate) fn input_failure(source: Source, e: &RunError) -> Result<Value, Failure> {
    code_failure(source, e.code(), &e.to_string())
}

/// A failure with its code and short message, shaped for the caller (an HTTP error response, or
/// the platform's error).
pub(crate) fn code_failure(source: Source, code: Code, message: &str) -> Result<Value, Failure> {
    if source.is_http() {
        Ok(events::http_response(
            http_status(code),
            &json!({"error": {"code": code.as_str(), "message": message}}),
        ))
    } else {
        Err(Failure {
            error_type: code.as_str().to_owned(),
            error_message: message.to_owned(),
        })
    }
}

/// The answer to an API call the access check refused: the code the caller may see (an unknown
/// key looks like a bad signature), `Retry-After` and `X-RateLimit-*` for limits.
pub(crate) fn denied(denied: &Denied) -> Value {
    let code = denied.shown();
    let mut resp = events::http_response(
        http_status(code),
        &json!({"error": {"code": code.as_str(), "message": denied.message()}}),
    );
    if let Some(s) = denied.retry_after {
        resp["headers"]["retry-after"] = json!(s.to_string());
    }
    with_limits(&mut resp, denied.limits);
    resp
}

/// Adds `X-RateLimit-Limit` / `X-RateLimit-Remaining` to an HTTP answer.
pub(crate) fn with_limits(resp: &mut Value, limits: Option<Limits>) {
    if let (Some(l), Some(headers)) = (
        limits,
        resp.get_mut("headers").and_then(Value::as_object_mut),
    ) {
        headers.insert("x-ratelimit-limit".into(), json!(l.limit.to_string()));
        headers.insert(
            "x-ratelimit-remaining".into(),
            json!(l.remaining.to_string()),
        );
    }
}

/// Shapes a finished run for the caller.
pub fn reply(source: Source, result: &RunResult) -> Result<Value, Failure> {
    shape(source, result.failure.as_deref(), &result.trace_id, result)
}

pub(crate) fn shape<T: serde::Serialize>(
    source: Source,
    failure: Option<&RunError>,
    trace_id: &str,
    result: &T,
) -> Result<Value, Failure> {
    let body = serde_json::to_value(result).unwrap_or(Value::Null);
    match (failure, source.is_http()) {
        (None, true) => Ok(events::http_response(200, &body)),
        (None, false) => Ok(body),
        (Some(e), true) => Ok(events::http_response(
            http_status(e.code()),
            &json!({"error": {"code": e.code().as_str(), "message": e.to_string()}, "trace_id": trace_id}),
        )),
        (Some(e), false) => Err(Failure {
            error_type: e.code().as_str().to_owned(),
            error_message: format!("{e} (trace_id {trace_id})"),
        }),
    }
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
}
