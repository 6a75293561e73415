//! Who may make an HTTP call, and what a signed call leaves behind: [`admit`] runs
//! [`crate::access::check`] before anything is resolved; [`log_key_call`] writes the
//! `ai_user_call_log` row of a call a key made (`access::record`'s, through the store).
//!
//! Invariants: a refused call is answered here, before any job runs (no provider call, no audit
//! row); the key-call row's status is the one the caller was answered with.

use super::reply::Reply;
pub use crate::access::record::Logged;
use crate::access::{self, Granted, HttpCall};
use crate::app::App;
use crate::model::access::Action;
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

/// Writes the `ai_user_call_log` row of a call a key made (the database down: to the audit
/// spool; see [`crate::access::record::key_call`]).
pub async fn log_key_call(
    state: &App,
    granted: Option<&Granted>,
    logged: Logged<'_>,
    result: &RunResult,
) {
    let runner = &state.runner;
    crate::access::record::key_call(
        runner.store(),
        runner.audit_spool(),
        granted,
        logged,
        result,
    )
    .await;
}
