//! The OpenAI-compatible API on the functions: `POST /v1/chat/completions`, `GET /v1/models` and
//! `GET /v1/models/{id}`. Behind API Gateway and the Runtime API a call is answered whole (a
//! streaming caller gets the whole `text/event-stream` at once, which every SDK reads the same
//! way); Function Compute's HTTP trigger streams ([`prepare`], then [`run`] with a tap, relayed
//! by `fc`).
//!
//! Invariants: the caller is admitted before its body's errors are told or anything runs; a run
//! is an ordinary run-once or route run with the caller's turn, its trigger the request's origin;
//! a call a key made leaves its key-call row with the status it was answered with.

use super::{Asked, Origin};
use crate::access::Limits;
use crate::app::App;
use crate::function::admit::{Logged, check, log_key_call};
use crate::function::inbound::{Endpoint, OpenAiInbound};
use crate::function::reply::{HttpAnswer, Reply};
use crate::model::access::Action;
use crate::openai::{self, Answer, ApiError, ChatRequest, render, stream};
use crate::run::RunContext;

/// A chat call let in and ready to run.
#[derive(Debug)]
pub struct ChatCall {
    /// What it asks.
    pub chat: ChatRequest,
    /// Its run's context (the caller, the turn; an edge that streams adds the tap).
    pub ctx: RunContext,
    /// Where it came from and who was admitted.
    pub asked: Asked,
    /// The caller's rate-limit state.
    pub limits: Option<Limits>,
}

/// A call after admission: answered already (refused, a bad body, the model list), or a chat
/// to run.
#[derive(Debug)]
pub enum Prepared {
    /// The answer.
    Answered(Reply),
    /// A chat call to run.
    Chat(Box<ChatCall>),
}

/// Answers one call, whole.
pub async fn answer(state: &App, h: OpenAiInbound, asked: Asked) -> Reply {
    match prepare(state, h, asked).await {
        Prepared::Answered(r) => r,
        Prepared::Chat(c) => whole(state, *c).await,
    }
}

/// Runs a chat call and answers it in one piece (a streaming caller's stream at once).
async fn whole(state: &App, c: ChatCall) -> Reply {
    let (stream, include_usage, limits) = (c.chat.turn.stream, c.chat.include_usage, c.limits);
    let a = run(state, c).await;
    reply(render::answer(&a, stream, include_usage)).with_limits(limits)
}

/// Admits the call and reads its body.
pub async fn prepare(state: &App, h: OpenAiInbound, asked: Asked) -> Prepared {
    let parsed = match &h.endpoint {
        Endpoint::ChatCompletions => Some(openai::parse(&h.call.body, &state.settings().openai)),
        Endpoint::Models | Endpoint::Model(_) => None,
    };
    let action = match &parsed {
        Some(Ok(c)) => Some(c.target.action()),
        Some(Err(_)) => None,
        None => Some(Action::Models),
    };
    let granted = match check(state, &h.call, action.as_ref()).await {
        Ok(g) => g,
        Err(d) => return Prepared::Answered(reply(render::error(&ApiError::denied(&d)))),
    };
    let limits = granted.limits;
    let asked = Asked {
        origin: Origin::Http(h.source),
        request_id: h.request_id.or(asked.request_id),
        granted: Some(granted),
        ..asked
    };
    let chat = match parsed {
        None => {
            return Prepared::Answered(
                models(state, &asked, &h.endpoint).await.with_limits(limits),
            );
        }
        Some(Err(e)) => return Prepared::Answered(reply(render::error(&e)).with_limits(limits)),
        Some(Ok(c)) => c,
    };
    let ctx = RunContext {
        deadline: asked.deadline,
        request_id: asked.request_id.clone(),
        caller: asked.caller(),
        turn: Some(std::sync::Arc::clone(&chat.turn)),
        ..RunContext::new(asked.origin.trigger())
    };
    Prepared::Chat(Box::new(ChatCall {
        chat,
        ctx,
        asked,
        limits,
    }))
}

/// Runs a chat call and leaves its key-call row. The context (and with it a stream's tap) is
/// dropped when the run ends, which closes a relay's end.
pub async fn run(state: &App, call: ChatCall) -> Answer {
    let ChatCall {
        chat, ctx, asked, ..
    } = call;
    let answered = openai::chat(&state.runner, &chat, &ctx).await;
    drop(ctx);
    let (project, route_key) = chat.target.logged_names();
    let logged = Logged {
        project,
        route_key,
        status: answered.status(),
    };
    log_key_call(state, asked.granted.as_ref(), logged, &answered.result).await;
    answered
}

/// `GET /v1/models` (what the caller's key may run) and `GET /v1/models/{id}`.
async fn models(state: &App, asked: &Asked, endpoint: &Endpoint) -> Reply {
    let key = asked.granted.as_ref().and_then(|g| g.key.as_ref());
    let snapshot = match state.runner.store().snapshot().await {
        Ok(s) => s,
        Err(e) => return reply(render::error(&ApiError::new(e.code(), e.to_string()))),
    };
    let found = match endpoint {
        Endpoint::Model(id) => render::model_named(&snapshot, key, id).ok_or(id),
        Endpoint::Models | Endpoint::ChatCompletions => Ok(render::models(&snapshot, key)),
    };
    match found {
        Ok(body) => reply(render::Rendered {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
        }),
        Err(id) => reply(render::error(&openai::unknown_model(id))),
    }
}

/// A rendered answer as the function's reply.
pub fn reply(r: render::Rendered) -> Reply {
    Reply::rendered(HttpAnswer {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

/// A call answered by an edge that can stream (Function Compute's HTTP trigger, a streaming
/// Function URL).
#[derive(Debug)]
pub enum Streaming {
    /// The whole answer.
    Whole(HttpAnswer),
    /// A stream: these headers (`content-type` included), then the SSE events as they come.
    Events {
        /// Headers.
        headers: Vec<(&'static str, String)>,
        /// The events.
        events: tokio::sync::mpsc::Receiver<String>,
    },
}

/// Answers a call, relaying a streaming chat chunk by chunk (its run spawned, so the stream
/// going away cannot cancel it) and anything else whole.
pub async fn streaming(
    state: std::sync::Arc<App>,
    h: OpenAiInbound,
    call: crate::function::Call,
) -> Streaming {
    let asked = Asked {
        origin: Origin::Http(h.source),
        request_id: call.request_id,
        deadline: call.deadline,
        granted: None,
    };
    let mut c = match prepare(&state, h, asked).await {
        Prepared::Answered(r) => return Streaming::Whole(r.into_http()),
        Prepared::Chat(c) if !c.chat.turn.stream => {
            return Streaming::Whole(whole(&state, *c).await.into_http());
        }
        Prepared::Chat(c) => c,
    };
    let trace_id = crate::run::new_trace_id();
    let (tap, chunks) = crate::ports::StreamTap::channel();
    c.ctx.tap = Some(tap);
    c.ctx.trace_id = Some(trace_id.clone());
    let relayed = stream::Relayed {
        trace_id,
        model: c.chat.target.model_id(),
        include_usage: c.chat.include_usage,
    };
    let mut headers = Vec::new();
    if let Some(l) = c.limits {
        headers.push(("x-ratelimit-limit", l.limit.to_string()));
        headers.push(("x-ratelimit-remaining", l.remaining.to_string()));
    }
    let ran = tokio::spawn(async move { run(&state, *c).await });
    match stream::relay(chunks, async move { ran.await.ok() }, relayed).await {
        stream::Streamed::Whole(r) => {
            headers.extend(r.headers);
            Streaming::Whole(HttpAnswer {
                status: r.status,
                headers,
                body: r.body,
            })
        }
        stream::Streamed::Events {
            headers: named,
            events,
        } => {
            headers.push(("content-type", "text/event-stream".to_owned()));
            headers.push(("cache-control", "no-cache".to_owned()));
            headers.extend(named);
            Streaming::Events { headers, events }
        }
    }
}
