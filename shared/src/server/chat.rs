//! `POST /v1/chat/completions`, `GET /v1/models` and `GET /v1/models/{id}` on `ai-runner serve`.
//!
//! A streaming call is relayed by [`crate::openai::stream`]: the answer opens at the first chunk
//! the provider relays, and a run that ends before any is answered whole.
//!
//! Invariants: every run is spawned and holds the stream's tap, so the caller's end closes when
//! the run is over, and a caller that goes away only stops the relay: the provider's stream is
//! dropped at its next chunk and the run's audit row says `CLIENT_DISCONNECTED`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{InFlight, Server, add_headers, admit, error, http_call, read_body};
use crate::access::Granted;
use crate::access::record::{self, Logged};
use crate::model::access::Action;
use crate::openai::stream::{self, stopped};
use crate::openai::{self, Answer, ApiError, ChatRequest, render};
use crate::ports::StreamTap;
use crate::run::{RunContext, Trigger, new_trace_id};

/// `GET /v1/models`: the configs and routes the caller may run.
pub(super) async fn models(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let call = http_call("GET", "/v1/models", &headers, b"", peer);
    // Listing asks for nothing in particular: the list is cut to the key's scope.
    let granted = match admit(&s, &call, Some(&Action::Models)).await {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    match s.app.runner.store().snapshot().await {
        Ok(snapshot) => axum::Json(render::models(&snapshot, granted.key.as_ref())).into_response(),
        Err(e) => error(&ApiError::new(e.code(), e.to_string())),
    }
}

/// `GET /v1/models/{id}`: one model the caller may run, else 404.
pub(super) async fn model(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let call = http_call("GET", &format!("/v1/models/{id}"), &headers, b"", peer);
    let granted = match admit(&s, &call, Some(&Action::Models)).await {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    match s.app.runner.store().snapshot().await {
        Ok(snapshot) => match render::model_named(&snapshot, granted.key.as_ref(), &id) {
            Some(m) => axum::Json(m).into_response(),
            None => error(&openai::unknown_model(&id)),
        },
        Err(e) => error(&ApiError::new(e.code(), e.to_string())),
    }
}

/// `POST /v1/chat/completions`.
pub(super) async fn completions(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let settings = &s.app.settings().openai;
    let body = match read_body(body, settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error(&e),
    };
    let http = http_call("POST", parts.uri.path(), &parts.headers, &body, peer);
    let parsed = openai::parse(&body, settings);
    let action = parsed.as_ref().ok().map(|c| c.target.action());
    // A caller learns what is wrong with its body only once it is let in.
    let granted = match admit(&s, &http, action.as_ref()).await {
        Ok(g) => g,
        Err(e) => return error(&e),
    };
    let chat = match parsed {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let trace_id = new_trace_id();
    let mut ctx = RunContext {
        caller: Some(granted.caller.clone()),
        turn: Some(Arc::clone(&chat.turn)),
        trace_id: Some(trace_id.clone()),
        ..RunContext::new(Trigger::Serve)
    };
    let mut limits = Vec::new();
    if let Some(l) = granted.limits {
        limits.push(("x-ratelimit-limit", l.limit.to_string()));
        limits.push(("x-ratelimit-remaining", l.remaining.to_string()));
    }
    if !chat.turn.stream {
        let answer = spawn_run(&s, chat, ctx, granted).await;
        let mut r = match answer {
            Some(a) => answered(&a, false, false),
            None => error(&stopped()),
        };
        add_headers(r.headers_mut(), limits);
        return r;
    }
    let (tap, chunks) = StreamTap::channel();
    ctx.tap = Some(tap);
    let relayed = stream::Relayed {
        trace_id,
        model: chat.target.model_id(),
        include_usage: chat.include_usage,
    };
    let done = spawn_run(&s, chat, ctx, granted);
    let mut r = match stream::relay(chunks, done, relayed).await {
        stream::Streamed::Whole(whole) => super::rendered(whole),
        stream::Streamed::Events { headers, events } => {
            let body = futures_util::stream::unfold(events, |mut rx| async move {
                rx.recv().await.map(|s| (Ok::<_, Infallible>(s), rx))
            });
            let mut r = sse(Body::from_stream(body));
            add_headers(r.headers_mut(), headers);
            r
        }
    };
    add_headers(r.headers_mut(), limits);
    r
}

/// Runs the call on its own task (a caller that goes away cannot cancel it), counted in flight,
/// and leaves the key-call row of a call a key made.
fn spawn_run(
    s: &Arc<Server>,
    chat: ChatRequest,
    ctx: RunContext,
    granted: Granted,
) -> impl std::future::Future<Output = Option<Answer>> + Send + 'static {
    let guard = InFlight::new(s);
    let server = Arc::clone(s);
    let run = tokio::spawn(async move {
        let _in_flight = guard;
        let a = openai::chat(&server.app.runner, &chat, &ctx).await;
        // The tap goes with the context: the relay's end closes now, not when the task is freed.
        drop(ctx);
        let (project, route_key) = chat.target.logged_names();
        let logged = Logged {
            project,
            route_key,
            status: a.status(),
        };
        let runner = &server.app.runner;
        let spool = runner.audit_spool();
        record::key_call(runner.store(), spool, Some(&granted), logged, &a.result).await;
        a
    });
    async move { run.await.ok() }
}

/// A finished call's answer, whole.
fn answered(a: &Answer, stream: bool, include_usage: bool) -> Response {
    super::rendered(render::answer(a, stream, include_usage))
}

fn sse(body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
