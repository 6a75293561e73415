//! run-route's second job: starting an evaluation run of a catalog suite, queued in chunks when
//! `EVAL_QUEUE_URL` is set, else run in this invocation (small suites only: the function's
//! timeout bounds it).
//!
//! Invariants: a signed caller may start a run only of targets (and a judge) its key may run
//! itself; the run's trigger is `schedule` for schedules (and a direct invocation saying so),
//! `api` otherwise.

use serde_json::{Value, json};

use super::{Asked, Origin, report_sink};
use crate::access::Denied;
use crate::app::App;
use crate::code::Code;
use crate::eval::fanout;
use crate::eval::run::{Options, Start};
use crate::eval::suite::Target;
use crate::function::inbound::EvalRequest;
use crate::function::reply::Reply;
use crate::model::Trigger;
use crate::model::access::Action;

/// Starts the run a request asks for.
pub async fn start(state: &App, asked: &Asked, req: EvalRequest) -> Reply {
    let trigger = match asked.origin {
        Origin::Schedule => Trigger::Schedule,
        Origin::Http(_) => Trigger::Api,
        Origin::Direct if req.trigger.as_deref() == Some("schedule") => Trigger::Schedule,
        Origin::Direct => Trigger::Api,
    };
    let mut opts = Options {
        tags: req.tags,
        limit: req.limit,
        caller: asked.caller(),
        ..Options::default()
    };
    for t in &req.targets {
        match Target::parse(t) {
            Some(t) => opts.targets.push(t),
            None => {
                return Reply::failed(
                    Code::InvalidInput,
                    format!("target {t:?} is not project/route_key or config:KEY"),
                );
            }
        }
    }
    if let Some(key) = asked.granted.as_ref().and_then(|g| g.key.as_ref()) {
        match fanout::suite_targets(&state.runner, &req.eval, &opts).await {
            Ok(targets) => {
                if let Some(t) = targets
                    .iter()
                    .find(|t| target_action(t).is_some_and(|a| !key.permits(&a)))
                {
                    tracing::warn!(access_key_id = %key.access_key_id, target = %t.label(), "evaluation target out of the key's scope");
                    let d = Denied::new(Code::AuthScopeDenied, Some(&key.access_key_id));
                    return Reply::denied(&d);
                }
            }
            Err(e) => return Reply::failed(e.code(), e.to_string()),
        }
    }
    let how = Start {
        trigger,
        baseline: req.baseline,
    };
    let out = match &state.queue {
        Some(q) => fanout::start_queued(
            &state.runner,
            &req.eval,
            &opts,
            &how,
            q.as_ref(),
            state.eval_settings().chunk_size,
        )
        .await
        .map(|q| serde_json::to_value(q).unwrap_or(Value::Null)),
        None => fanout::start_inline(&state.runner, &req.eval, &opts, &how, report_sink(state))
            .await
            .map(|r| {
                json!({"run_id": r.run_id, "suite": r.suite, "status": if r.stopped.is_some() { "stopped" } else { "finished" },
                       "gate": r.gate, "targets": r.targets, "stopped": r.stopped})
            }),
    };
    match out {
        Ok(body) => Reply::ok(body),
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), suite = %req.eval, "evaluation not started");
            Reply::failed(e.code(), e.to_string())
        }
    }
}

/// What a key must permit for a target to run (`echo` calls nothing, so needs nothing).
fn target_action(t: &Target) -> Option<Action> {
    match t {
        Target::Route { project, route_key } => Some(Action::Route {
            project: project.clone(),
            route_key: route_key.clone(),
            dry_run: false,
        }),
        Target::Config { config_key } => Some(Action::Config(config_key.clone())),
        Target::Echo => None,
    }
}
