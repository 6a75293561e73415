//! run-route's job: a route run (or its dry run), answered with its result.
//!
//! Invariants: the trigger label comes from the request's origin; only a direct invocation (which
//! needs `lambda:InvokeFunction`, e.g. a schedule's constant input) may say `schedule`, anything
//! else a body says is ignored. A dry run calls nothing and writes nothing.

use super::{Asked, Origin};
use crate::app::App;
use crate::function::admit::{Logged, log_key_call};
use crate::function::inbound::RunRouteRequest;
use crate::function::reply::Reply;
use crate::run::{RunContext, Trigger};

/// Runs (or dry-runs) the route a request names.
pub async fn run(state: &App, asked: &Asked, req: RunRouteRequest) -> Reply {
    if req.dry_run {
        return match state
            .runner
            .dry_run(&req.project, &req.route_key, &req.variables)
            .await
        {
            Ok(d) => Reply::json(&d),
            Err(e) => Reply::error(&e),
        };
    }
    let ctx = RunContext {
        deadline: asked.deadline,
        request_id: asked.request_id.clone(),
        caller: asked.caller(),
        ..RunContext::new(trigger_label(asked.origin, req.trigger.as_deref()))
    };
    let mut result = state
        .runner
        .run_route(&req.project, &req.route_key, &req.variables, &ctx)
        .await;
    if asked.is_http() {
        result.result.for_api_caller();
    }
    let reply = Reply::run(
        result.result.failure.as_deref(),
        &result.result.trace_id,
        &result,
    );
    let logged = Logged {
        project: &req.project,
        route_key: &req.route_key,
        status: reply.status(),
    };
    log_key_call(state, asked.granted.as_ref(), logged, &result.result).await;
    reply
}

/// The audit row's `trigger_source`: decided by the origin, never by what a caller writes, but
/// for a direct invocation's `schedule`.
fn trigger_label(origin: Origin, asked: Option<&str>) -> Trigger {
    match (origin, asked) {
        (Origin::Direct, Some("schedule")) => Trigger::Schedule,
        (Origin::Direct | Origin::Http(_) | Origin::Schedule, _) => origin.trigger(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::inbound::HttpSource;

    #[test]
    fn only_a_direct_invocation_may_label_itself_a_schedule() {
        assert_eq!(trigger_label(Origin::Direct, Some("schedule")), "schedule");
        assert_eq!(trigger_label(Origin::Direct, Some("cli")), "lambda");
        assert_eq!(
            trigger_label(Origin::Http(HttpSource::ApiGatewayV2), Some("schedule")),
            "apigw"
        );
        assert_eq!(
            trigger_label(Origin::Http(HttpSource::FcHttp), None),
            "http"
        );
        assert_eq!(trigger_label(Origin::Schedule, None), "schedule");
    }
}
