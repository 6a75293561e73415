//! The Lambda Runtime API: the invocation loop, and the init error a state that failed to build
//! is reported as.
//!
//! With `FUNCTION_URL_STREAMING=true`, an HTTP call that came through a Function URL (its host is
//! `*.lambda-url.<region>.on.aws`) is answered as a response stream (lambda_runtime's
//! `StreamResponse`: the metadata prelude with status and headers, then the body): a streaming
//! chat to the OpenAI-compatible API chunk by chunk as the provider sends it, every other answer
//! in one piece. API Gateway events and direct invocations are answered buffered, as always.
//!
//! Invariants: every invocation's deadline is the runtime's `Lambda-Runtime-Deadline-Ms` less the
//! reserve; an init error's `errorType` is the stable code; a streamed chat's run is its own task
//! (the stream going away cannot cancel it).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use lambda_runtime::{FunctionResponse, MetadataPrelude, StreamResponse};
use serde_json::{Value, json};

use super::inbound::{Endpoint, Inbound, OpenAiInbound};
use super::job;
use super::job::openai::{self as api, Streaming};
use super::{Call, Function};
use crate::app::App;
use crate::config::Platform;
use crate::error::RunError;

/// A streamed answer's body.
type Chunks = Pin<Box<dyn Stream<Item = Result<String, std::io::Error>> + Send>>;

/// What one invocation answers: buffered JSON, or a response stream.
type Answer = FunctionResponse<Value, Chunks>;

/// Serves the Runtime API's invocations until the process is stopped.
pub async fn serve(state: Arc<App>, function: Function) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let state = Arc::clone(&state);
            async move {
                // The Runtime API's Lambda-Runtime-Deadline-Ms, as epoch milliseconds.
                let now_ms = crate::model::now_ms();
                let left = i64::try_from(event.context.deadline)
                    .ok()
                    .map(|d| Duration::from_millis(u64::try_from(d - now_ms).unwrap_or(0)));
                let call = Call::with_time_left(
                    Some(event.context.request_id.clone()),
                    left,
                    state.deadline_reserve(),
                );
                let inbound = Inbound::parse(function, event.payload);
                if state.settings().openai.function_url_streaming && through_function_url(&inbound)
                {
                    return Ok::<Answer, super::reply::Failure>(
                        streamed(state, inbound, call).await,
                    );
                }
                let http = inbound.is_http();
                job::answer(&state, inbound, call)
                    .await
                    .into_lambda(http)
                    .map(FunctionResponse::BufferedResponse)
            }
        },
    ))
    .await
}

/// Whether an HTTP call came through a Function URL (API Gateway's hosts are others).
fn through_function_url(inbound: &Inbound) -> bool {
    let call = match inbound {
        Inbound::Http(h) => &h.call,
        Inbound::OpenAi(h) => &h.call,
        _ => return false,
    };
    call.header("host")
        .is_some_and(|h| h.contains(".lambda-url."))
}

/// An HTTP call through a streaming Function URL, answered as a response stream.
async fn streamed(state: Arc<App>, inbound: Inbound, call: Call) -> Answer {
    match inbound {
        Inbound::OpenAi(h) if h.endpoint == Endpoint::ChatCompletions => {
            chat(state, *h, call).await
        }
        other => {
            let a = job::answer(&state, other, call).await.into_http();
            whole(a.status, a.headers, a.body)
        }
    }
}

/// A chat call: relayed chunk by chunk when it streams, else answered in one piece.
async fn chat(state: Arc<App>, h: OpenAiInbound, call: Call) -> Answer {
    match api::streaming(state, h, call).await {
        Streaming::Whole(a) => whole(a.status, a.headers, a.body),
        Streaming::Events { headers, events } => {
            let body = futures_util::stream::unfold(events, |mut rx| async move {
                rx.recv().await.map(|s| (Ok(s), rx))
            });
            respond(200, headers, Box::pin(body))
        }
    }
}

/// An answer in one piece, as a response stream.
fn whole(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Answer {
    respond(
        status,
        headers,
        Box::pin(futures_util::stream::once(async move { Ok(body) })),
    )
}

fn respond(status: u16, headers: Vec<(&'static str, String)>, stream: Chunks) -> Answer {
    let prelude = MetadataPrelude {
        status_code: axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        headers: super::reply::header_map(headers),
        ..MetadataPrelude::default()
    };
    FunctionResponse::StreamingResponse(StreamResponse {
        metadata_prelude: prelude,
        stream,
    })
}

/// Tells the Lambda Runtime API why init failed (`errorType` = the stable code).
pub(super) async fn report_init_error(platform: &Platform, e: &RunError) {
    let Some(api) = &platform.lambda_runtime_api else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let code = e.code().as_str();
    let sent = crate::provider::plain_client()
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", code)
        .json(&json!({"errorType": code, "errorMessage": e.to_string()}))
        .send()
        .await;
    if let Err(err) = sent {
        tracing::error!(error = %err, "could not report the init error");
    }
}
