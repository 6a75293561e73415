//! oss-trigger's job: every new object of an upload notification through the media pipeline
//! (S3, SQS-wrapped S3, EventBridge, FC OSS).
//!
//! Invariants: S3 / EventBridge / OSS notifications are answered with a report per object, or
//! fail (so the platform redelivers) when an object failed in a way worth retrying; an SQS batch
//! is answered with `batchItemFailures` naming only the messages to redeliver.

use serde_json::json;

use crate::app::App;
use crate::code::Code;
use crate::function::Call;
use crate::function::inbound::ObjectEvent;
use crate::function::reply::Reply;
use crate::media;
use crate::model::media::ObjectRef;
use crate::run::RunContext;

/// Processes the objects a notification names.
pub async fn process(state: &App, event: ObjectEvent, call: Call) -> Reply {
    let ctx = RunContext {
        deadline: call.deadline,
        request_id: call.request_id,
        ..RunContext::new(crate::model::Trigger::Oss)
    };
    match event {
        ObjectEvent::Test => Reply::ok(json!({"ignored": "s3:TestEvent"})),
        ObjectEvent::Objects(objs) => {
            let reports = process_all(state, &objs, &ctx).await;
            let retry: Vec<&media::Report> = reports.iter().filter(|r| r.needs_retry()).collect();
            if let Some(first) = retry.first() {
                let code = match &first.outcome {
                    media::Outcome::Failed { code, .. } => *code,
                    _ => Code::ObjectFailed,
                };
                return Reply::failed(
                    code,
                    format!(
                        "{} of {} objects failed and should be redelivered: {}",
                        retry.len(),
                        reports.len(),
                        serde_json::to_string(&retry).unwrap_or_default()
                    ),
                );
            }
            Reply::ok(json!({"objects": reports}))
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
            Reply::ok(json!({"batchItemFailures": failures, "objects": all}))
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
                state.object_settings(),
                o,
                ctx,
                false,
            )
            .await,
        );
    }
    out
}
