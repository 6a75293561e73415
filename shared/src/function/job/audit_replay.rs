//! run-once's second job: the scheduled audit replay, spooled audit rows written into the
//! database.
//!
//! Invariants: fails (so the schedule's retry or the next tick tries again) while rows stay
//! spooled; each row is written once ([`crate::spool`] keys them).

use serde_json::json;

use crate::app::App;
use crate::code::Code;
use crate::function::reply::Reply;

/// Replays at most `limit` spooled rows.
pub async fn replay(state: &App, limit: usize) -> Reply {
    let Some(spool) = state.runner.audit_spool() else {
        return Reply::ok(
            json!({"replayed": 0, "note": "no audit spool is configured (OSS_BUCKET)"}),
        );
    };
    match spool.replay(state.runner.store(), limit).await {
        Ok(done) if done.failed.is_empty() => Reply::json(&done),
        Ok(done) => Reply::failed(
            Code::AuditSpooled,
            format!(
                "{} replayed, {} still spooled (first: {:?})",
                done.replayed,
                done.remaining,
                done.failed.first()
            ),
        ),
        Err(e) => Reply::failed(e.code(), e.to_string()),
    }
}
