//! The functions' jobs, one module each, chosen from the parsed [`Inbound`]: [`run_once`] (a
//! config), [`run_route`] (a route, or its dry run), [`eval_start`] (an evaluation run started by
//! a schedule or an API call), [`eval_worker`] (an SQS batch of evaluation chunks),
//! [`audit_replay`] (spooled audit rows written back), [`oss_trigger`] (upload
//! notifications) and [`openai`] (the OpenAI-compatible API).
//!
//! Invariants: jobs hold no business logic: parsing is [`super::inbound`], access control
//! [`super::admit`], running [`crate::run`], [`crate::media`] and [`crate::eval`], answering
//! [`super::reply`]. An HTTP call is admitted (signature, scope, quota) before its body's errors
//! are told or anything is resolved or sent; a refused one makes no provider call and writes no
//! audit row.

pub mod audit_replay;
pub mod eval_start;
pub mod eval_worker;
pub mod openai;
pub mod oss_trigger;
pub mod run_once;
pub mod run_route;

use std::time::Instant;

use super::Call;
use super::admit::admit;
use super::inbound::{HttpSource, Inbound, Request};
use super::reply::Reply;
use crate::access::Granted;
use crate::app::App;
use crate::eval::fanout;
use crate::model::access::Caller;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A direct invocation.
    Direct,
    /// An HTTP call.
    Http(HttpSource),
    /// A schedule's tick.
    Schedule,
}

impl Origin {
    /// The audit row's `trigger_source` for this origin.
    pub fn trigger(self) -> crate::model::Trigger {
        match self {
            Origin::Direct => crate::model::Trigger::Lambda,
            Origin::Http(s) => s.trigger(),
            Origin::Schedule => crate::model::Trigger::Schedule,
        }
    }
}

/// A request as a job gets it: where it came from, who was admitted, by when it must answer.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Where it came from.
    pub origin: Origin,
    /// The audit row's request id: for HTTP calls the platform's own (the one API Gateway writes
    /// to its access log, so the two join), else the invocation's.
    pub request_id: Option<String>,
    /// When the run must have answered.
    pub deadline: Option<Instant>,
    /// The admitted caller of an HTTP call.
    pub granted: Option<Granted>,
}

impl Asked {
    /// Whether an HTTP caller asked (told less of the audit spool than an operator).
    pub fn is_http(&self) -> bool {
        matches!(self.origin, Origin::Http(_))
    }

    /// Who called, for the audit row.
    pub fn caller(&self) -> Option<Caller> {
        self.granted.as_ref().map(|g| g.caller.clone())
    }
}

/// Answers one parsed invocation.
pub async fn answer(state: &App, inbound: Inbound, call: Call) -> Reply {
    match inbound {
        Inbound::Direct(request) => {
            let asked = Asked {
                origin: Origin::Direct,
                request_id: call.request_id,
                deadline: call.deadline,
                granted: None,
            };
            requested(state, asked, request).await
        }
        Inbound::Schedule(s) => {
            let asked = Asked {
                origin: Origin::Schedule,
                request_id: call.request_id.or(s.request_id),
                deadline: call.deadline,
                granted: None,
            };
            requested(state, asked, s.request).await
        }
        Inbound::Http(h) => {
            let h = *h;
            let action = h.request.as_ref().ok().map(Request::action);
            let granted = match admit(state, &h.call, action.as_ref()).await {
                Ok(g) => g,
                Err(refused) => return refused,
            };
            let request = match h.request {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
                    return Reply::error(&e);
                }
            };
            let asked = Asked {
                origin: Origin::Http(h.source),
                request_id: h.request_id.or(call.request_id),
                deadline: call.deadline,
                granted: Some(granted),
            };
            requested(state, asked, request).await
        }
        Inbound::OpenAi(h) => {
            let asked = Asked {
                origin: Origin::Http(h.source),
                request_id: call.request_id,
                deadline: call.deadline,
                granted: None,
            };
            openai::answer(state, *h, asked).await
        }
        Inbound::EvalChunks(messages) => eval_worker::work(state, messages).await,
        Inbound::Objects(event) => oss_trigger::process(state, event, call).await,
        Inbound::AuditReplay { limit } => audit_replay::replay(state, limit).await,
        Inbound::Invalid(e) => {
            tracing::warn!(code = %e.code(), error = %e, "rejected invocation");
            Reply::error(&e)
        }
    }
}

/// Runs what a request asks for; an admitted caller is told its rate-limit state.
async fn requested(state: &App, asked: Asked, request: Request) -> Reply {
    let limits = asked.granted.as_ref().and_then(|g| g.limits);
    let reply = match request {
        Request::RunOnce(r) => run_once::run(state, &asked, r).await,
        Request::Route(r) => run_route::run(state, &asked, r).await,
        Request::Eval(e) => eval_start::start(state, &asked, e).await,
    };
    reply.with_limits(limits)
}

/// Where a finished run's reports are written: the object store's bucket, when one is set.
fn report_sink(state: &App) -> Option<fanout::ReportSink<'_>> {
    Some(fanout::ReportSink {
        store: state.objects.as_ref(),
        bucket: state.object_settings().bucket.as_deref()?,
        prefix: &state.eval_settings().reports_prefix,
    })
}
