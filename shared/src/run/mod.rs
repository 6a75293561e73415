//! Running things: one config ([`runner`]), a route of configs with a policy ([`route`],
//! [`policy`]), and the result both return ([`result`]).
//!
//! Dependencies point one way inside: `route` uses `runner` and `policy`; `runner` uses only the
//! handover rule of `policy` (to label its audit row), never `route`; `policy` is plain rules
//! over the model. Invariants of the whole: a run never panics and always
//! returns a result; once a config is resolved, exactly one audit row per member attempt is
//! committed (see [`crate::audit`]).

pub mod policy;
mod pricing;
mod record;
pub mod result;
pub mod route;
pub mod runner;

use rand::RngCore;
use serde_json::{Map, Value};

pub use crate::model::Trigger;

pub use result::{RunMeta, RunResult, RunStatus};
pub use route::{DryRequest, DryRun, MemberAttempt, RouteMeta, RouteResult};
pub use runner::{MediaSource, Overlay, Runner, Spill};

/// Runtime variables (`{{NAME}}` values), highest precedence.
pub type Variables = Map<String, Value>;

/// Where a run came from, for the audit row and logs.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// What fired the run (the audit row's `trigger_source`).
    pub trigger: Trigger,
    /// Platform request id (Lambda / FC), if any.
    pub request_id: Option<String>,
    /// Values that must not be stored (presigned URL signatures, inline media): each is
    /// replaced by `[redacted]` in audit rows.
    pub redact: Vec<String>,
    /// When the run must have answered (the platform's deadline minus the reserve for writing
    /// the audit row and replying): no attempt, backoff, content retry or member handover
    /// starts that could not finish before it.
    pub deadline: Option<std::time::Instant>,
    /// Who called (API calls: the access key, the platform's principal, the source address),
    /// recorded on every audit row of the run.
    pub caller: Option<crate::model::access::Caller>,
    /// The input audio's duration in seconds, when the run carries an uploaded recording whose
    /// length is known (models priced per second).
    pub media_seconds: Option<f64>,
    /// The uploaded recording's size in bytes, when known: bounds the duration a per-second
    /// price reserves for when the duration is not known.
    pub media_bytes: Option<u64>,
    /// What an OpenAI-protocol caller sent beside the config's name: its messages and fields,
    /// added to every member's request (`request::build_for`).
    pub turn: Option<std::sync::Arc<crate::request::CallerTurn>>,
    /// A streaming caller: the provider's chunks are relayed to it as they arrive.
    pub tap: Option<crate::ports::StreamTap>,
    /// The run's trace id when the edge chose it (a streaming answer names it before the run
    /// ends); a fresh one otherwise.
    pub trace_id: Option<String>,
}

/// A library call's context (trigger `library`).
impl Default for RunContext {
    fn default() -> Self {
        Self::new(Trigger::Library)
    }
}

impl RunContext {
    /// A context with this trigger and no request id.
    pub fn new(trigger: Trigger) -> Self {
        Self {
            trigger,
            request_id: None,
            redact: Vec::new(),
            deadline: None,
            caller: None,
            media_seconds: None,
            media_bytes: None,
            turn: None,
            tap: None,
            trace_id: None,
        }
    }

    /// The run's trace id: the one the edge chose, else a fresh one.
    pub fn trace_id(&self) -> String {
        self.trace_id.clone().unwrap_or_else(new_trace_id)
    }

    /// Whether part of an answer has reached a streaming caller: from then on nothing is retried
    /// and no route member takes over.
    pub fn relayed(&self) -> bool {
        self.tap
            .as_ref()
            .is_some_and(crate::ports::StreamTap::started)
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }
}

/// A fresh 32-hex-char trace id.
pub fn new_trace_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    crate::hex::encode(&b)
}
