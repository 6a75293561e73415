//! The run's audit row: what a run leaves behind once its config is resolved, whatever happened
//! (the row's facts, its bodies scrubbed of the key and of redacted values, large bodies spilled
//! to an object), written through [`crate::audit`].
//!
//! Invariants: called exactly once per resolved run; a failure to write is the spool's or the
//! log's, never the caller's answer.

use serde_json::Value;

use super::runner::{Overlay, Runner, Spill};
use super::{RunContext, RunResult};
use crate::audit::{self, Facts, Subject};
use crate::ports::{Provider, Store};
use crate::request::BuiltRequest;

impl<S: Store, P: Provider> Runner<S, P> {
    pub(super) async fn audit(
        &self,
        subject: &Subject,
        r: &mut RunResult,
        sent: Sent<'_>,
        overlay: &Overlay,
        ctx: &RunContext,
    ) {
        let Sent {
            built,
            response,
            key,
        } = sent;
        let handover = overlay.handover.as_ref();
        r.total_ms = r.total_ms.max(1).max(r.provider_ms);
        let facts = Facts {
            body: built.map(|b| &b.body),
            response,
            usage: r.usage.as_ref(),
            http_status: r.http_status,
            duration_ms: r.total_ms,
            provider_ms: Some(r.provider_ms),
            ttft_ms: r.ttft_ms,
            attempts: r.attempts,
            error: r.failure.as_ref().map(|e| (e.code(), e.to_string())),
            handover: match (handover, &r.failure) {
                (Some(rules), Some(e)) => !ctx.relayed() && rules.hands_over(e),
                _ => false,
            },
            charge: r.charge,
        };
        let mut row = audit::row(subject, &facts, key, &ctx.redact);
        if let Some(spill) = &self.spill {
            let label = subject.route_attempt.unwrap_or(1);
            for (column, which) in [
                (&mut row.request_body_json, "request"),
                (&mut row.response_body_json, "response"),
            ] {
                spill_column(
                    spill,
                    column,
                    &format!("{}{}/{label}-{which}.json", spill.prefix, subject.trace_id),
                )
                .await;
            }
        }
        let row = audit::bounded(row, self.audit_max_body);
        match self.store.insert_audit(&row).await {
            Ok(id) => r.audit_id = Some(id),
            Err(e) => {
                tracing::error!(trace_id = %subject.trace_id, code = %e.code(), error = %crate::error::chain(&e), "audit row not written");
                r.audit_error = Some(format!("{}: {e}", e.code()));
                // Not dropped: the row waits in the spool for the replay.
                match &self.spool {
                    Some(spool) => match spool.put(&row).await {
                        Ok(at) => {
                            tracing::warn!(trace_id = %subject.trace_id, spooled = %at, "audit row spooled for replay");
                            r.audit_deferred = Some(at);
                        }
                        Err(se) => {
                            tracing::error!(trace_id = %subject.trace_id, code = %se.code(), row = %serde_json::to_string(&row).unwrap_or_default(), "audit row neither written nor spooled; it is in this log line");
                        }
                    },
                    None => {
                        tracing::error!(trace_id = %subject.trace_id, row = %serde_json::to_string(&row).unwrap_or_default(), "no audit spool is configured; the row is in this log line");
                    }
                }
            }
        }
        match &r.failure {
            None => {
                tracing::info!(trace_id = %subject.trace_id, config_key = %subject.config_key, total_ms = r.total_ms, provider_ms = r.provider_ms, attempts = r.attempts, "run ok")
            }
            Some(e) => {
                tracing::warn!(trace_id = %subject.trace_id, config_key = %subject.config_key, code = %e.code(), error = %crate::error::chain(e.as_ref()), "run failed")
            }
        }
    }
}

/// What went on the wire, for the audit row (all absent when the run stopped before sending).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sent<'a> {
    pub(super) built: Option<&'a BuiltRequest>,
    pub(super) response: Option<&'a Value>,
    pub(super) key: Option<&'a crate::Secret>,
}

/// Moves a body longer than the threshold to an object and leaves a JSON reference in its place
/// (valid JSON, so MariaDB's `json_valid` check still passes). On failure the body stays inline:
/// nothing is lost.
async fn spill_column(spill: &Spill, column: &mut Option<String>, key: &str) {
    let Some(body) = column.as_ref().filter(|b| b.len() > spill.threshold) else {
        return;
    };
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.as_bytes());
    let sha = crate::hex::encode(&digest);
    let bytes = body.len();
    match spill
        .store
        .put(
            &spill.bucket,
            key,
            body.clone().into_bytes(),
            "application/json",
        )
        .await
    {
        Ok(()) => {
            *column = Some(
                serde_json::json!({"$ref": format!("s3://{}/{key}", spill.bucket), "bytes": bytes, "sha256": sha})
                    .to_string(),
            );
        }
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "spill-over failed; body kept in the audit row")
        }
    }
}
