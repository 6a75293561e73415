//! The HTTP status each [`Code`] maps to: the one decision every HTTP edge (the functions' API
//! answers, the console, the OpenAI-compatible API) shares.
//!
//! Invariants: the status is decided by the code's [`Class`] in [`class_status`], an exhaustive
//! match without a wildcard arm, so a new class does not compile until it has a status; no code
//! overrides its class's status on our own API; the OpenAI-compatible API overrides one, written
//! out with its reason in [`openai_status`].

use crate::code::{Class, Code};

/// The HTTP status an HTTP caller (API Gateway, an HTTP trigger, the console) sees for a failure
/// with this code.
pub fn http_status(code: Code) -> u16 {
    class_status(code.class())
}

/// The HTTP status an OpenAI-protocol caller (`/v1/chat/completions`) sees: the class's status,
/// except where the SDKs need another to raise the right exception. The provider's own rate limit
/// (after our retries) is a 429 there, so the SDK's retry with `Retry-After` takes over; on our
/// own API it stays an upstream failure (502), as it always was.
pub fn openai_status(code: Code) -> u16 {
    if code == Code::Http429RateLimit {
        429
    } else {
        http_status(code)
    }
}

/// The HTTP status of a class of failure.
#[deny(clippy::wildcard_enum_match_arm)]
pub fn class_status(class: Class) -> u16 {
    match class {
        Class::Input => 400,
        Class::Unauthenticated => 401,
        Class::Budget => 402,
        Class::Forbidden => 403,
        Class::NotFound => 404,
        Class::Unsupported => 415,
        Class::Rejected => 422,
        Class::Limited => 429,
        // Our own setup, and a command's work that failed for reasons reported beside it.
        Class::Internal | Class::Failed => 500,
        // The provider is the gateway's upstream, whatever it did wrong.
        Class::Upstream => 502,
        Class::Unavailable => 503,
        Class::Deadline => 504,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_answers_with_its_class_status() {
        assert_eq!(http_status(Code::MediaUnsupported), 415);
        assert_eq!(http_status(Code::ObjectNotFound), 404);
        assert_eq!(http_status(Code::CatalogInvalid), 400);
        assert_eq!(http_status(Code::ProviderRedirect), 502);
        assert_eq!(http_status(Code::DeadlineExceeded), 504);
    }

    #[test]
    fn the_openai_api_answers_a_provider_rate_limit_with_429() {
        assert_eq!(openai_status(Code::Http429RateLimit), 429);
        assert_eq!(http_status(Code::Http429RateLimit), 502);
        assert_eq!(openai_status(Code::BudgetExceeded), 402);
        assert_eq!(openai_status(Code::SchemaInvalid), 422);
    }

    #[test]
    fn every_status_is_a_client_or_server_error() {
        for class in Class::ALL {
            assert!((400..600).contains(&class_status(*class)), "{class:?}");
        }
    }
}
