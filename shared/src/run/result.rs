//! What a run returns: stable JSON for callers (the CLI's `--json`, the functions' answers) plus
//! the typed failure for the edges.
//!
//! Invariants: field names never change; the typed failure is skipped in JSON (its `{code,
//! message}` is `error`).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorBody, RunError};
use crate::model::cost::{Charge, CostStatus};

/// `ok` or `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Valid answer.
    Ok,
    /// See `error`.
    Error,
}

/// Which config ran, with what model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunMeta {
    /// The config_key.
    pub config_key: String,
    /// The model sent, once resolved.
    pub model: Option<String>,
}

/// The outcome of a run, serialized as stable JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `ok` or `error`.
    pub status: RunStatus,
    /// 32 hex chars, sent as `X-Trace-Id` and stored on the audit row.
    pub trace_id: String,
    /// Whole run, milliseconds.
    pub total_ms: u64,
    /// Waiting on the provider (all attempts and backoff), milliseconds.
    pub provider_ms: u64,
    /// The same in microseconds (benchmarks: overhead = wall time - provider time).
    #[serde(skip)]
    pub provider_us: u64,
    /// Time to first token, for streams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// HTTP attempts in total (retries and content retries included).
    pub attempts: u32,
    /// Provider calls made because content failed validation (1 = first answer was kept).
    pub content_attempts: u32,
    /// Last HTTP status, 0 when none.
    pub http_status: u16,
    /// The assistant message content.
    pub content: Option<String>,
    /// The content parsed, when the request asked for JSON.
    pub parsed: Option<Value>,
    /// The provider's answer (assembled for streams).
    pub response: Option<Value>,
    /// `usage` from the answer.
    pub usage: Option<Value>,
    /// What the run's provider calls cost, in USD (content retries included; a route's result:
    /// every member attempt). `null` when the model has no price: unknown, not free.
    pub cost: Option<f64>,
    /// `priced`, `estimated` or `unpriced` (absent when the run stopped before pricing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_status: Option<CostStatus>,
    /// The same cost, exact (nano-USD) with the price row used.
    #[serde(skip)]
    pub charge: Option<Charge>,
    /// `{code, message}` on failure.
    pub error: Option<ErrorBody>,
    /// config_key and model.
    pub meta: RunMeta,
    /// The committed audit row's id.
    pub audit_id: Option<i64>,
    /// Set if the audit row could not be written (the run result stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_error: Option<String>,
    /// Set when the row went to the audit spool instead (where): auditing was deferred, not
    /// lost; `ai-runner audit replay` (or the scheduled replay) writes it later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_deferred: Option<String>,
    /// The typed failure, for edge conversions (HTTP status, exit code).
    #[serde(skip)]
    pub failure: Option<Arc<RunError>>,
}

impl RunResult {
    /// What an API caller is told of an audit row the database did not take: that it waits
    /// (`audit_deferred: "spooled"`) and the store's code, never where it waits (the spool's
    /// bucket and key) nor the database's own message. The CLI keeps both: its user is the
    /// operator.
    pub fn for_api_caller(&mut self) {
        if self.audit_deferred.is_some() {
            self.audit_deferred = Some("spooled".to_owned());
        }
        if let Some(e) = &mut self.audit_error {
            let code = e.split(':').next().unwrap_or_default().trim().to_owned();
            *e = code;
        }
    }

    /// True when the run produced a valid answer.
    pub fn is_ok(&self) -> bool {
        self.status == RunStatus::Ok
    }

    /// Records what the run cost (`cost` in USD, its status, the exact charge).
    pub fn set_charge(&mut self, c: Charge) {
        self.cost = c.nano.map(crate::model::cost::nano_usd);
        self.cost_status = Some(c.status);
        self.charge = Some(c);
    }

    pub(crate) fn failed(trace_id: String, started: Instant, meta: RunMeta, e: RunError) -> Self {
        Self {
            status: RunStatus::Error,
            trace_id,
            total_ms: started.elapsed().as_millis() as u64,
            provider_ms: 0,
            provider_us: 0,
            ttft_ms: None,
            attempts: 0,
            content_attempts: 0,
            http_status: 0,
            content: None,
            parsed: None,
            response: None,
            usage: None,
            cost: None,
            cost_status: None,
            charge: None,
            error: Some(ErrorBody::from(&e)),
            meta,
            audit_id: None,
            audit_error: None,
            audit_deferred: None,
            failure: Some(Arc::new(e)),
        }
    }
}

impl RunResult {
    /// A failure before any config was resolved (no audit row).
    pub fn failed_early(trace_id: String, started: Instant, config_key: &str, e: RunError) -> Self {
        Self::failed(
            trace_id,
            started,
            RunMeta {
                config_key: config_key.to_owned(),
                model: None,
            },
            e,
        )
    }
}
