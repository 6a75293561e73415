//! An HTTP call to the OpenAI-compatible API (`POST .../v1/chat/completions`, `GET
//! .../v1/models`), told from the run-once / run-route JSON API by its path alone: whatever
//! function receives it (the template routes `/v1/*` to run-once) answers it the same way.
//!
//! Invariants: the body is kept as the bytes the platform delivered; the job parses it with the
//! OpenAI request rules (`OPENAI_*` settings) only after the caller is admitted.

use super::http::HttpSource;
use crate::access::HttpCall;

/// Which endpoint of the OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}`.
    Model(String),
}

impl Endpoint {
    /// The endpoint a call's path names (the path as requested, or without its stage).
    pub fn of(call: &HttpCall) -> Option<Self> {
        call.paths.iter().find_map(|p| {
            let p = p.trim_end_matches('/');
            if p.ends_with("/v1/chat/completions") {
                Some(Self::ChatCompletions)
            } else if p.ends_with("/v1/models") {
                Some(Self::Models)
            } else {
                // An id may hold a slash (`route:<project>/<route_key>`): everything after
                // `/v1/models/` is the id.
                // The SDKs percent-encode it (`route%3Ashop%2Fask`); the platform passes the
                // path as sent.
                let (_, id) = p.split_once("/v1/models/")?;
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                (!id.is_empty()).then(|| Self::Model(id.into_owned()))
            }
        })
    }
}

/// An OpenAI-protocol call, parsed as far as it can be before admission.
#[derive(Debug)]
pub struct OpenAiInbound {
    /// Which front sent it.
    pub source: HttpSource,
    /// What access control reads (the body's bytes included).
    pub call: HttpCall,
    /// The platform's request id.
    pub request_id: Option<String>,
    /// Which endpoint.
    pub endpoint: Endpoint,
}
