//! OpenAI error objects: `{"error": {"message", "type", "param", "code"}}` with our stable code in
//! `code`, and the status each SDK turns into its exception class (400 `BadRequestError`, 401
//! `AuthenticationError`, 403 `PermissionDeniedError`, 404 `NotFoundError`, 422
//! `UnprocessableEntityError`, 429 `RateLimitError`, 5xx `InternalServerError`; 402 and 413 are
//! plain `APIStatusError`s).
//!
//! Invariants: the status comes from [`crate::status::openai_status`] (a refusal may override it
//! only with a reason: 413 for a body over the limit); `type` is decided by the code's class in an
//! exhaustive match; a message never carries a secret (it is the run's error text, already
//! scrubbed, or a fixed sentence).

use serde_json::{Value, json};

use crate::access::Denied;
use crate::code::{Class, Code};
use crate::run::RunResult;

/// An OpenAI-shaped error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Our stable code (`error.code`).
    pub code: Code,
    /// `error.message`.
    pub message: String,
    /// `error.param`: the request field it is about.
    pub param: Option<String>,
    /// `Retry-After`, seconds.
    pub retry_after: Option<u64>,
    /// `X-RateLimit-Limit` / `X-RateLimit-Remaining`.
    pub limits: Option<crate::access::Limits>,
}

impl ApiError {
    /// An error with this code and message, at the code's status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: crate::status::openai_status(code),
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            limits: None,
        }
    }

    /// Names the request field the error is about.
    pub fn with_param(self, param: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            ..self
        }
    }

    /// Answers with another status than the code's (a body over the limit: 413).
    pub fn with_status(self, status: u16) -> Self {
        Self { status, ..self }
    }

    /// A failed run: its code and message. A provider rate limit asks to come back in a second
    /// (the SDKs retry it themselves).
    pub fn from_result(r: &RunResult) -> Self {
        // A failed result always carries its typed failure (the two are set together).
        let (code, message) = match &r.failure {
            Some(f) => (f.code(), f.to_string()),
            None => (Code::InvalidInput, "the run did not answer".to_owned()),
        };
        let retry_after = r
            .failure
            .as_deref()
            .and_then(crate::error::RunError::retry_after_secs)
            .or((code == Code::Http429RateLimit).then_some(1));
        let param =
            matches!(code, Code::ConfigNotFound | Code::RouteNotFound).then(|| "model".into());
        Self {
            retry_after,
            param,
            ..Self::new(code, message)
        }
    }

    /// A call the access check refused (an unknown key looks like a bad credential).
    pub fn denied(d: &Denied) -> Self {
        Self {
            retry_after: d.retry_after,
            limits: d.limits,
            ..Self::new(d.shown(), d.message())
        }
    }

    /// `error.type`, in OpenAI's vocabulary.
    #[deny(clippy::wildcard_enum_match_arm)]
    pub fn kind(&self) -> &'static str {
        match self.code.class() {
            Class::Input | Class::NotFound | Class::Unsupported | Class::Rejected => {
                "invalid_request_error"
            }
            Class::Unauthenticated => "authentication_error",
            Class::Forbidden => "permission_error",
            Class::Limited => "rate_limit_error",
            Class::Budget => "insufficient_quota",
            Class::Upstream
            | Class::Deadline
            | Class::Unavailable
            | Class::Internal
            | Class::Failed => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code.as_str(),
        }})
    }

    /// The headers that go with it (`Retry-After`, the rate-limit pair).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(s) = self.retry_after {
            h.push(("retry-after", s.to_string()));
        }
        if let Some(l) = self.limits {
            h.push(("x-ratelimit-limit", l.limit.to_string()));
            h.push(("x-ratelimit-remaining", l.remaining.to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_object_carries_our_code_and_the_sdk_status() {
        let e = ApiError::new(Code::ConfigNotFound, "no such model").with_param("model");
        assert_eq!(e.status, 404);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "no such model", "type": "invalid_request_error",
                "param": "model", "code": "CONFIG_NOT_FOUND"}})
        );
        assert_eq!(
            ApiError::new(Code::AuthMissing, "x").kind(),
            "authentication_error"
        );
        assert_eq!(ApiError::new(Code::BudgetExceeded, "x").status, 402);
        assert_eq!(ApiError::new(Code::RateLimited, "x").status, 429);
        assert_eq!(ApiError::new(Code::Http5xxServerError, "x").status, 502);
    }

    #[test]
    fn a_refused_key_keeps_its_retry_after_and_limits() {
        let d = Denied {
            retry_after: Some(7),
            limits: Some(crate::access::Limits {
                limit: 10,
                remaining: 0,
            }),
            ..Denied::new(Code::QuotaExceeded, Some("ak_1"))
        };
        let e = ApiError::denied(&d);
        assert_eq!(e.status, 429);
        assert_eq!(
            e.headers(),
            [
                ("retry-after", "7".to_owned()),
                ("x-ratelimit-limit", "10".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned())
            ]
        );
        let unknown = ApiError::denied(&Denied::new(Code::AuthKeyUnknown, Some("ak_x")));
        let bad = ApiError::denied(&Denied::new(Code::AuthSignatureInvalid, Some("ak_1")));
        assert_eq!(unknown.body(), bad.body());
    }
}
