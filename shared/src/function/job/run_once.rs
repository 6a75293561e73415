//! run-once's job: one config run, answered with its result.
//!
//! Invariants: the trigger label comes from the request's origin, never from its body; a signed
//! call leaves its key-call row with the status the caller was answered with.

use super::Asked;
use crate::app::App;
use crate::function::admit::{Logged, log_key_call};
use crate::function::inbound::RunOnceRequest;
use crate::function::reply::Reply;
use crate::run::RunContext;

/// Runs the config a request names.
pub async fn run(state: &App, asked: &Asked, req: RunOnceRequest) -> Reply {
    let ctx = RunContext {
        deadline: asked.deadline,
        request_id: asked.request_id.clone(),
        caller: asked.caller(),
        ..RunContext::new(asked.origin.trigger())
    };
    let mut result = state
        .runner
        .run_once(&req.config_key, &req.variables, &ctx)
        .await;
    if asked.is_http() {
        result.for_api_caller();
    }
    let reply = Reply::run(result.failure.as_deref(), &result.trace_id, &result);
    let logged = Logged {
        project: "-",
        route_key: &req.config_key,
        status: reply.status(),
    };
    log_key_call(state, asked.granted.as_ref(), logged, &result).await;
    reply
}
