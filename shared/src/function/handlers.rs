//! The three functions' handlers: from a parsed event to a run (or an upload's pipeline) and
//! back to the caller's shape.
//!
//! Invariants: handlers hold no business logic: parsing is [`super::events`], access control
//! [`crate::access`], running [`crate::run`] and [`crate::media`], answering [`super::reply`].
//! An API call is admitted (signature, scope, quota) before anything is resolved or sent; a
//! refused one makes no provider call and writes no audit row.

use serde_json::{Value, json};

use super::Call;
use super::events::{self, EvalRequest, ObjectEvent, RouteCall, RunOnceRequest, Source};
use super::reply::{Failure, code_failure, denied, input_failure, reply, shape, with_limits};
use crate::access::{self, Granted, HttpCall};
use crate::app::App;
use crate::code::Code;
use crate::eval::fanout;
use crate::eval::run::{EvalError, Options, Start};
use crate::eval::suite::Target;
use crate::media;
use crate::model::access::Action;
use crate::model::media::ObjectRef;
use crate::ports::{AccessStore, KeyCall};
use crate::run::RunContext;

/// Handles one run-route invocation: a route run (direct, API Gateway, or an EventBridge
/// schedule), the start of an evaluation run (`{"eval": "<suite>"}`), or an SQS batch of an
/// evaluation run's chunks.
pub async fn run_route(state: &App, payload: Value, call: Call) -> Result<Value, Failure> {
    if let Some(messages) = events::sqs_messages(&payload) {
        return Ok(eval_chunks(state, messages).await);
    }
    let source = events::detect(&payload);
    let http = events::http_call(&payload);
    let parsed = events::parse::<RouteCall>(payload, &["project", "route_key"]);
    let action = parsed.as_ref().ok().map(|inv| match &inv.request {
        RouteCall::Run(r) => Action::Route {
            project: r.project.clone(),
            route_key: r.route_key.clone(),
            dry_run: r.dry_run,
        },
        RouteCall::Eval(e) => Action::Eval(e.eval.clone()),
    });
    let granted = match admit(state, http.as_ref(), action.as_ref()).await {
        Ok(g) => g,
        Err(refused) => return Ok(refused),
    };
    let inv = match parsed {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let limits = granted.as_ref().and_then(|g| g.limits);
    let req = match inv.request {
        RouteCall::Run(r) => r,
        RouteCall::Eval(e) => {
            let mut out = eval_start(state, inv.source, e, granted.as_ref()).await;
            limited(&mut out, limits);
            return out;
        }
    };
    if req.dry_run {
        return match state
            .runner
            .dry_run(&req.project, &req.route_key, &req.variables)
            .await
        {
            Ok(d) => shape(inv.source, None, "", &d),
            Err(e) => input_failure(inv.source, &e),
        }
        .map(|mut v| {
            with_limits(&mut v, limits);
            v
        });
    }
    let ctx = RunContext {
        deadline: call.deadline,
        trigger: trigger_label(inv.source, req.trigger.as_deref()).to_owned(),
        request_id: request_id(inv.source, inv.request_id, call.request_id),
        redact: Vec::new(),
        caller: granted.as_ref().map(|g| g.caller.clone()),
        media_seconds: None,
    };
    let result = state
        .runner
        .run_route(&req.project, &req.route_key, &req.variables, &ctx)
        .await;
    let mut out = shape(
        inv.source,
        result.result.failure.as_deref(),
        &result.result.trace_id,
        &result,
    );
    limited(&mut out, limits);
    log_key_call(
        state,
        granted.as_ref(),
        &req.project,
        &req.route_key,
        &out,
        &result.result,
    )
    .await;
    out
}

/// The audit row's request id: for API calls the platform's own request id (the one API Gateway
/// writes to its access log, so the two join), else the invocation's.
fn request_id(source: Source, event: Option<String>, call: Option<String>) -> Option<String> {
    if source.is_http() {
        event.or(call)
    } else {
        call.or(event)
    }
}

/// Admits an API call (`None` for other events, which their platform authorised): the caller's
/// identity when it may go on, or the answer refusing it.
async fn admit(
    state: &App,
    http: Option<&HttpCall>,
    action: Option<&Action>,
) -> Result<Option<Granted>, Value> {
    let Some(http) = http else {
        return Ok(None);
    };
    let store = state.runner.store();
    match access::check(
        store,
        state.runner.keyring(),
        state.access(),
        http,
        action,
        crate::model::now_ms(),
    )
    .await
    {
        Ok(g) => Ok(Some(g)),
        Err(d) => {
            tracing::warn!(code = %d.code, access_key_id = d.access_key_id.as_deref().unwrap_or(""),
                source_ip = http.source_ip.as_deref().unwrap_or(""), "API call refused");
            Err(denied(&d))
        }
    }
}

fn limited(out: &mut Result<Value, Failure>, limits: Option<access::Limits>) {
    if let Ok(v) = out {
        with_limits(v, limits);
    }
}

/// Writes the `ai_user_call_log` row of a signed call (a failure is logged: the call happened
/// and its audit row is written).
async fn log_key_call(
    state: &App,
    granted: Option<&Granted>,
    project: &str,
    route_key: &str,
    out: &Result<Value, Failure>,
    result: &crate::run::RunResult,
) {
    let Some(key) = granted.and_then(|g| g.key.as_ref()) else {
        return;
    };
    let status = match out {
        Ok(v) => v
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200),
        Err(_) => 500,
    };
    let tokens = |n: &str| {
        result
            .usage
            .as_ref()
            .and_then(|u| u.get(n))
            .and_then(Value::as_i64)
    };
    let user_key = matches!(key.owner, crate::model::access::KeyOwner::User(_));
    let call = KeyCall {
        access_key_id: key.access_key_id.clone(),
        user_id: key.user_id,
        key_id: user_key.then_some(key.row_id),
        project_name: project.to_owned(),
        route_key: route_key.to_owned(),
        http_status: status,
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

/// The audit row's `trigger_source`: decided by the event's shape, never by what a caller writes.
/// Only a direct invocation (which needs `lambda:InvokeFunction`, e.g. a schedule's constant
/// input) may say `schedule`; anything else it says is ignored.
fn trigger_label(source: Source, asked: Option<&str>) -> &'static str {
    match (source, asked) {
        (Source::Direct, Some("schedule")) => "schedule",
        (
            Source::Direct
            | Source::ApiGatewayV1
            | Source::ApiGatewayV2
            | Source::Schedule
            | Source::FcTimer
            | Source::FcHttp,
            _,
        ) => source.trigger(),
    }
}

/// Starts an evaluation run of a catalog suite: queued in chunks when `EVAL_QUEUE_URL` is set,
/// else run in this invocation (small suites only: the function's timeout bounds it).
async fn eval_start(
    state: &App,
    source: Source,
    req: EvalRequest,
    granted: Option<&Granted>,
) -> Result<Value, Failure> {
    let trigger = match source {
        Source::Schedule | Source::FcTimer => "schedule",
        Source::ApiGatewayV1 | Source::ApiGatewayV2 | Source::FcHttp => "api",
        Source::Direct if req.trigger.as_deref() == Some("schedule") => "schedule",
        Source::Direct => "api",
    };
    let mut opts = Options {
        tags: req.tags,
        limit: req.limit,
        caller: granted.map(|g| g.caller.clone()),
        ..Options::default()
    };
    let key = granted.and_then(|g| g.key.as_ref());
    for t in &req.targets {
        match Target::parse(t) {
            Some(t) => opts.targets.push(t),
            None => {
                return code_failure(
                    source,
                    Code::InvalidInput,
                    &format!("target {t:?} is not project/route_key or config:KEY"),
                );
            }
        }
    }
    // A signed caller may start a run only of targets (and a judge) its key may run itself.
    if let Some(key) = key {
        match fanout::suite_targets(&state.runner, &req.eval, &opts).await {
            Ok(targets) => {
                if let Some(t) = targets.iter().find(|t| !key.permits(&target_action(t))) {
                    tracing::warn!(access_key_id = %key.access_key_id, target = %t.label(), "evaluation target out of the key's scope");
                    let d = access::Denied::new(Code::AuthScopeDenied, Some(&key.access_key_id));
                    return Ok(denied(&d));
                }
            }
            Err(e) => return code_failure(source, e.code(), &e.to_string()),
        }
    }
    let how = Start {
        trigger: trigger.into(),
        baseline: req.baseline,
    };
    let sink = report_sink(state);
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
        None => fanout::start_inline(&state.runner, &req.eval, &opts, &how, sink)
            .await
            .map(|r| {
                json!({"run_id": r.run_id, "suite": r.suite, "status": if r.stopped.is_some() { "stopped" } else { "finished" },
                       "gate": r.gate, "targets": r.targets, "stopped": r.stopped})
            }),
    };
    match out {
        Ok(body) => shape(source, None, "", &body),
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), suite = %req.eval, "evaluation not started");
            code_failure(source, e.code(), &e.to_string())
        }
    }
}

fn target_action(t: &Target) -> Action {
    match t {
        Target::Route { project, route_key } => Action::Route {
            project: project.clone(),
            route_key: route_key.clone(),
            dry_run: false,
        },
        Target::Config { config_key } => Action::Config(config_key.clone()),
    }
}

fn report_sink(state: &App) -> Option<fanout::ReportSink<'_>> {
    Some(fanout::ReportSink {
        store: state.objects.as_ref(),
        bucket: state.object_settings().bucket.as_deref()?,
        prefix: &state.eval_settings().reports_prefix,
    })
}

/// Works an SQS batch of evaluation chunks; answers `batchItemFailures` naming only the messages
/// to redeliver (a malformed message is logged and dropped: redelivering cannot fix it).
async fn eval_chunks(state: &App, messages: Vec<(String, String)>) -> Value {
    let sink = report_sink(state);
    let mut failures = Vec::new();
    let mut worked = Vec::new();
    for (id, body) in messages {
        let chunk: fanout::Chunk = match serde_json::from_str(&body) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "not an evaluation chunk; dropped");
                continue;
            }
        };
        match fanout::work(&state.runner, &chunk, sink).await {
            Ok(w) => worked.push(json!({"message_id": id, "run": chunk.eval_run, "worked": w})),
            Err(EvalError::UnknownRun(run)) => {
                tracing::error!(message_id = %id, run = %run, "chunk of an unknown run; dropped");
            }
            Err(e) => {
                tracing::warn!(message_id = %id, code = %e.code(), error = %crate::error::chain(&e), "chunk to redeliver");
                failures.push(json!({"itemIdentifier": id}));
            }
        }
    }
    json!({"batchItemFailures": failures, "chunks": worked})
}

/// Handles one run-once invocation.
pub async fn run_once(state: &App, payload: Value, call: Call) -> Result<Value, Failure> {
    let source = events::detect(&payload);
    // The scheduled audit replay: `{"audit_replay": {"limit": N}}` as a direct invocation (a
    // schedule's constant input; never from API events).
    if source == Source::Direct
        && let Some(replay) = payload.get("audit_replay")
    {
        let limit = replay
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(500);
        return audit_replay(state, limit).await;
    }
    let http = events::http_call(&payload);
    let parsed = events::parse::<RunOnceRequest>(payload, &["config_key"]);
    let action = parsed
        .as_ref()
        .ok()
        .map(|inv| Action::Config(inv.request.config_key.clone()));
    let granted = match admit(state, http.as_ref(), action.as_ref()).await {
        Ok(g) => g,
        Err(refused) => return Ok(refused),
    };
    let inv = match parsed {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let ctx = RunContext {
        deadline: call.deadline,
        trigger: inv.source.trigger().to_owned(),
        request_id: request_id(inv.source, inv.request_id, call.request_id),
        redact: Vec::new(),
        caller: granted.as_ref().map(|g| g.caller.clone()),
        media_seconds: None,
    };
    let result = state
        .runner
        .run_once(&inv.request.config_key, &inv.request.variables, &ctx)
        .await;
    let mut out = reply(inv.source, &result);
    limited(&mut out, granted.as_ref().and_then(|g| g.limits));
    log_key_call(
        state,
        granted.as_ref(),
        "-",
        &inv.request.config_key,
        &out,
        &result,
    )
    .await;
    out
}

/// Writes spooled audit rows into the database; fails (so the schedule's retry or the next
/// tick tries again) while rows stay spooled.
async fn audit_replay(state: &App, limit: usize) -> Result<Value, Failure> {
    let Some(spool) = state.runner.audit_spool() else {
        return Ok(json!({"replayed": 0, "note": "no audit spool is configured (OSS_BUCKET)"}));
    };
    match spool.replay(state.runner.store(), limit).await {
        Ok(done) if done.failed.is_empty() => {
            Ok(serde_json::to_value(&done).unwrap_or(Value::Null))
        }
        Ok(done) => Err(Failure {
            error_type: Code::AuditSpooled.as_str().to_owned(),
            error_message: format!(
                "{} replayed, {} still spooled (first: {:?})",
                done.replayed,
                done.remaining,
                done.failed.first()
            ),
        }),
        Err(e) => Err(Failure {
            error_type: e.code().as_str().to_owned(),
            error_message: e.to_string(),
        }),
    }
}

/// Handles one upload notification (S3, SQS-wrapped S3, EventBridge, FC OSS).
///
/// S3 / EventBridge / OSS: answers a report per object, or fails (so the platform redelivers)
/// when an object failed in a way worth retrying. SQS: answers `batchItemFailures` naming only
/// the messages to redeliver.
pub async fn oss_trigger(state: &App, payload: Value, call: Call) -> Result<Value, Failure> {
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
        deadline: call.deadline,
        trigger: "oss".into(),
        request_id: call.request_id,
        redact: Vec::new(),
        caller: None,
        media_seconds: None,
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
