//! Who may make an HTTP call, and what a signed call leaves behind: [`admit`] runs
//! [`crate::access::check`] before anything is resolved; [`log_key_call`] writes the
//! `ai_user_call_log` row of a call a key signed.
//!
//! Invariants: a refused call is answered here, before any job runs (no provider call, no audit
//! row); the key-call row's status is the one the caller was answered with.

use serde_json::Value;

use super::reply::Reply;
use crate::access::{self, Granted, HttpCall};
use crate::app::App;
use crate::model::access::{Action, KeyOwner};
use crate::ports::{AccessStore, KeyCall};
use crate::run::RunResult;

/// Admits an HTTP call asking for `action` (`None` when its body could not be read): the
/// caller's identity when it may go on, or the reply refusing it.
pub async fn admit(
    state: &App,
    http: &HttpCall,
    action: Option<&Action>,
) -> Result<Granted, Reply> {
    check(state, http, action)
        .await
        .map_err(|d| Reply::denied(&d))
}

/// [`admit`], with the refusal as it is (an edge that answers in another protocol's shape).
pub async fn check(
    state: &App,
    http: &HttpCall,
    action: Option<&Action>,
) -> Result<Granted, access::Denied> {
    access::check(
        state.runner.store(),
        state.runner.keyring(),
        state.access(),
        http,
        action,
        crate::model::now_ms(),
    )
    .await
    .inspect_err(|d| {
        tracing::warn!(code = %d.code, access_key_id = d.access_key_id.as_deref().unwrap_or(""),
            source_ip = http.source_ip.as_deref().unwrap_or(""), "API call refused");
    })
}

/// What a key-call row says about the call.
pub struct Logged<'a> {
    /// `ai_project_v2.name`, `-` for a config run.
    pub project: &'a str,
    /// The route key, or the config key of a config run.
    pub route_key: &'a str,
    /// The status the caller was answered with.
    pub status: u16,
}

/// Writes the `ai_user_call_log` row of a call a key signed (a failure is logged: the call
/// happened and its audit row is written).
pub async fn log_key_call(
    state: &App,
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
    };
    if let Err(e) = state.runner.store().log_call(&call).await {
        tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), access_key_id = %call.access_key_id, "ai_user_call_log row not written");
    }
}
