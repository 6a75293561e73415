//! The run-once and run-route JSON API on `ai-runner serve`: the bodies the functions take
//! ([`crate::invocation`]), answered with the JSON a function answers (`RunResult`,
//! `RouteResult`, a dry run), at the status of its code.
//!
//! Invariants: admission comes first (a body that does not parse is authenticated and counted,
//! then refused); every run is spawned and counted in flight (see [`super`]); a call a key made
//! leaves its key-call row, as on the functions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{InFlight, Server, admit, error, http_call, read_body, status};
use crate::access::record::{self, Logged};
use crate::code::Code;
use crate::error::RunError;
use crate::invocation::{Body, Request as Call};
use crate::openai::ApiError;
use crate::run::{RunContext, Trigger};

/// `POST /run-once`.
pub(super) async fn run_once(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    call(s, peer, req, Body::Config).await
}

/// `POST /run-route`.
pub(super) async fn run_route(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    call(s, peer, req, Body::Route).await
}

async fn call(s: Arc<Server>, peer: SocketAddr, req: Request, kind: Body) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, s.app.settings().openai.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error(&e),
    };
    let http = http_call("POST", parts.uri.path(), &parts.headers, &body, peer);
    let parsed = std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|t| kind.from_str(t).map_err(|e| e.to_string()));
    let action = parsed.as_ref().ok().map(Call::action);
    let granted = match admit(&s, &http, action.as_ref()).await {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    let call = match parsed {
        Ok(c) => c,
        Err(why) => {
            return error(&ApiError::new(
                Code::InvalidInput,
                format!("the body is not a request this endpoint takes: {why}"),
            ));
        }
    };
    let ctx = RunContext {
        caller: Some(granted.caller.clone()),
        ..RunContext::new(Trigger::Serve)
    };
    let guard = InFlight::new(&s);
    let runner = Arc::clone(&s);
    let ran = tokio::spawn(async move {
        let _in_flight = guard;
        let r = &runner.app.runner;
        let store = runner.app.runner.store();
        let logged = |project, route_key, status| Logged {
            project,
            route_key,
            status,
        };
        match call {
            Call::RunOnce(c) => {
                let mut out = r.run_once(&c.config_key, &c.variables, &ctx).await;
                out.for_api_caller();
                let status = answer_status(out.failure.as_deref().map(|e| e.code()));
                let row = logged("-", &c.config_key, status);
                record::key_call(store, r.audit_spool(), Some(&granted), row, &out).await;
                let wait = out.failure.as_deref().and_then(RunError::retry_after_secs);
                (status, json!(out), wait)
            }
            Call::Route(c) if c.dry_run => match r.dry_run(&c.project, &c.route_key, &c.variables).await {
                Ok(d) => (200, json!(d), None),
                Err(e) => (
                    crate::status::http_status(e.code()),
                    json!({"status": "error", "error": {"code": e.code().as_str(), "message": e.to_string()}}),
                    None,
                ),
            },
            Call::Route(c) => {
                let mut out = r.run_route(&c.project, &c.route_key, &c.variables, &ctx).await;
                out.result.for_api_caller();
                let status = answer_status(out.result.failure.as_deref().map(|e| e.code()));
                let row = logged(&c.project, &c.route_key, status);
                record::key_call(store, r.audit_spool(), Some(&granted), row, &out.result).await;
                let wait = out.result.failure.as_deref().and_then(RunError::retry_after_secs);
                (status, json!(out), wait)
            }
            Call::Eval(_) => (
                400,
                json!({"status": "error", "error": {"code": Code::InvalidInput.as_str(),
                    "message": "evaluation runs start on the run-route function or with `ai-runner eval run`"}}),
                None,
            ),
        }
    })
    .await;
    match ran {
        Ok((code, body, wait)) => {
            let mut answer = (status(code), axum::Json(body)).into_response();
            // An open circuit breaker says when to come back.
            if let Some(secs) = wait {
                answer
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, secs.into());
            }
            answer
        }
        Err(_) => error(&ApiError::new(
            Code::IoError,
            "the run stopped unexpectedly",
        )),
    }
}

fn answer_status(code: Option<Code>) -> u16 {
    code.map_or(200, crate::status::http_status)
}
