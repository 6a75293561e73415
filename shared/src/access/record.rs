//! What a call a key made leaves behind in the access tables: its `ai_user_call_log` row, for
//! every edge that admits keys (the functions, `ai-runner serve`).
//!
//! Invariants: the row's status is the one the caller was answered with; it names the call's
//! audit row and trace and is dated at the call; writing it never fails the call (a row the
//! database does not take goes to the audit spool, replayed with the audit rows; without a
//! spool it is logged).

use serde_json::Value;

use super::Granted;
use crate::model::access::KeyOwner;
use crate::ports::{AccessStore, KeyCall};
use crate::run::RunResult;
use crate::spool::AuditSpool;

/// What a key-call row says about the call.
pub struct Logged<'a> {
    /// `ai_project_v2.name`, `-` for a config run.
    pub project: &'a str,
    /// The route key, or the config key of a config run.
    pub route_key: &'a str,
    /// The status the caller was answered with.
    pub status: u16,
}

/// Writes the `ai_user_call_log` row of a call a key made (a row the database does not take
/// goes to `spool`; without one it is logged). A call no key made writes nothing.
pub async fn key_call<S: AccessStore>(
    store: &S,
    spool: Option<&AuditSpool>,
    granted: Option<&Granted>,
    logged: Logged<'_>,
    result: &RunResult,
) {
    let Some(key) = granted.and_then(|g| g.key.as_ref()) else {
        return;
    };
    let tokens = |n: &str| {
        result
            .usage
            .as_ref()
            .and_then(|u| u.get(n))
            .and_then(Value::as_i64)
    };
    let user_key = matches!(key.owner, KeyOwner::User(_));
    let call = KeyCall {
        access_key_id: key.access_key_id.clone(),
        user_id: key.user_id,
        key_id: user_key.then_some(key.row_id),
        project_name: logged.project.to_owned(),
        route_key: logged.route_key.to_owned(),
        http_status: logged.status,
        duration_ms: result.total_ms,
        tokens_prompt: tokens("prompt_tokens"),
        tokens_completion: tokens("completion_tokens"),
        ai_call_log_id: result.audit_id,
        trace_id: Some(result.trace_id.clone()),
        created_at_ms: Some(crate::model::now_ms()),
    };
    let Err(e) = store.log_call(&call).await else {
        return;
    };
    let Some(spool) = spool else {
        tracing::error!(code = %e.code(), error = %crate::error::chain(&e), row = ?call, "ai_user_call_log row not written and no audit spool is configured; the row is in this log line");
        return;
    };
    match spool.put_key_call(&call).await {
        Ok(at) => {
            tracing::warn!(code = %e.code(), access_key_id = %call.access_key_id, spooled = %at, "ai_user_call_log row spooled for replay");
        }
        Err(se) => {
            tracing::error!(code = %e.code(), spool_code = %se.code(), error = %crate::error::chain(&e), row = ?call, "ai_user_call_log row neither written nor spooled; it is in this log line");
        }
    }
}
