//! The three functions' handlers: from a parsed event to a run (or an upload's pipeline) and
//! back to the caller's shape.
//!
//! Invariants: handlers hold no business logic: parsing is [`super::events`], running is
//! [`crate::run`] and [`crate::media`], answering is [`super::reply`].

use serde_json::{Value, json};

use super::events::{self, ObjectEvent, RunOnceRequest, RunRouteRequest};
use super::reply::{Failure, input_failure, reply, shape};
use crate::app::App;
use crate::code::Code;
use crate::media;
use crate::model::media::ObjectRef;
use crate::run::RunContext;

/// Handles one run-route invocation (direct, API Gateway, or an EventBridge schedule).
pub async fn run_route(
    state: &App,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let source = events::detect(&payload);
    let inv = match events::parse::<RunRouteRequest>(payload, &["project", "route_key"]) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let req = inv.request;
    if req.dry_run {
        return match state
            .runner
            .dry_run(&req.project, &req.route_key, &req.variables)
            .await
        {
            Ok(d) => shape(inv.source, None, "", &d),
            Err(e) => input_failure(inv.source, &e),
        };
    }
    let ctx = RunContext {
        trigger: req
            .trigger
            .unwrap_or_else(|| inv.source.trigger().to_owned()),
        request_id: platform_request_id.or(inv.request_id),
        redact: Vec::new(),
    };
    let result = state
        .runner
        .run_route(&req.project, &req.route_key, &req.variables, &ctx)
        .await;
    shape(
        inv.source,
        result.result.failure.as_deref(),
        &result.result.trace_id,
        &result,
    )
}

/// Handles one run-once invocation.
pub async fn run_once(
    state: &App,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let source = events::detect(&payload);
    let inv = match events::parse::<RunOnceRequest>(payload, &["config_key"]) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let ctx = RunContext {
        trigger: inv.source.trigger().to_owned(),
        request_id: platform_request_id.or(inv.request_id),
        redact: Vec::new(),
    };
    let result = state
        .runner
        .run_once(&inv.request.config_key, &inv.request.variables, &ctx)
        .await;
    reply(inv.source, &result)
}

/// Handles one upload notification (S3, SQS-wrapped S3, EventBridge, FC OSS).
///
/// S3 / EventBridge / OSS: answers a report per object, or fails (so the platform redelivers)
/// when an object failed in a way worth retrying. SQS: answers `batchItemFailures` naming only
/// the messages to redeliver.
pub async fn oss_trigger(
    state: &App,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let event = match events::parse_object_event(&payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected event");
            return Err(Failure {
                error_type: e.code().as_str().to_owned(),
                error_message: e.to_string(),
            });
        }
    };
    let ctx = RunContext {
        trigger: "oss".into(),
        request_id: platform_request_id,
        redact: Vec::new(),
    };
    match event {
        ObjectEvent::Test => Ok(json!({"ignored": "s3:TestEvent"})),
        ObjectEvent::Objects(objs) => {
            let reports = process_all(state, &objs, &ctx).await;
            let retry: Vec<&media::Report> = reports.iter().filter(|r| r.needs_retry()).collect();
            if let Some(first) = retry.first() {
                let code = match &first.outcome {
                    media::Outcome::Failed { code, .. } => *code,
                    _ => Code::ObjectFailed,
                };
                return Err(Failure {
                    error_type: code.as_str().to_owned(),
                    error_message: format!(
                        "{} of {} objects failed and should be redelivered: {}",
                        retry.len(),
                        reports.len(),
                        serde_json::to_string(&retry).unwrap_or_default()
                    ),
                });
            }
            Ok(json!({"objects": reports}))
        }
        ObjectEvent::Sqs(messages) => {
            let mut failures = Vec::new();
            let mut all = Vec::new();
            for (id, parsed) in messages {
                let failed = match parsed {
                    Err(e) => {
                        tracing::warn!(message_id = %id, code = %e.code(), error = %e, "unusable SQS message");
                        true
                    }
                    Ok(ObjectEvent::Test) => false,
                    Ok(ObjectEvent::Objects(objs)) => {
                        let reports = process_all(state, &objs, &ctx).await;
                        let failed = reports.iter().any(media::Report::needs_retry);
                        all.extend(reports);
                        failed
                    }
                    Ok(ObjectEvent::Sqs(_)) => true,
                };
                if failed {
                    failures.push(json!({"itemIdentifier": id}));
                }
            }
            Ok(json!({"batchItemFailures": failures, "objects": all}))
        }
    }
}

async fn process_all(state: &App, objs: &[ObjectRef], ctx: &RunContext) -> Vec<media::Report> {
    let mut out = Vec::with_capacity(objs.len());
    for o in objs {
        out.push(
            media::process(
                &state.runner,
                state.objects.as_ref(),
                &state.object_settings,
                o,
                ctx,
                false,
            )
            .await,
        );
    }
    out
}
