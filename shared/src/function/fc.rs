//! The Function Compute custom-runtime contract: `POST /invoke` with the raw event,
//! `POST /initialize` once per instance; success and failure reported by the HTTP status and the
//! `x-fc-status` header (200 / 404).
//!
//! An HTTP trigger on a custom-runtime function forwards the client's request itself, on the
//! client's method and path: it becomes an [`Inbound::Http`] directly
//! ([`super::inbound::http::from_request`]), is answered like any API call (access control
//! included), and the typed [`super::Reply`] becomes the HTTP answer. Which kind a request is
//! comes from FC's own `x-fc-control-path` header (`/invoke`, `/initialize`, `/http-invoke`),
//! sent once and beside FC's `x-fc-request-id`, never from the path alone: a client of the HTTP
//! trigger that asks for `/invoke` (or forges the header) is still an HTTP caller, signed like any
//! other. Only in a local run (no `FC_FUNCTION_NAME`; bound to loopback) and without that header
//! does the path decide. A streaming call to the OpenAI-compatible API is relayed as the
//! provider streams it (`openai::stream`: its run spawned, so a caller that goes away cannot
//! cancel it).
//!
//! Invariants: one server per process, bound to `0.0.0.0:$FC_SERVER_PORT` on FC and to loopback
//! in a local run; every invocation is
//! answered (a handler failure is a 404 with `x-fc-status: 404` and the platform error body).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use super::inbound::OpenAiInbound;
use super::job::openai::{self as api, Streaming};
use super::reply::Failure;
use super::{Function, Inbound, inbound, job};
use crate::app::App;
use crate::code::Code;

/// What every request borrows: the state, the function, and whether this is Function Compute
/// itself (`FC_FUNCTION_NAME` set) rather than a local run of the custom runtime.
type Shared = Arc<(Arc<App>, Function, bool)>;

/// Function Compute's limit on a synchronous invocation's payload.
const FC_MAX_PAYLOAD: usize = 32 * 1024 * 1024;

/// Serves on `port` until the process is stopped: on every address on Function Compute (its
/// gateway connects from outside the sandbox), on loopback in a local run, where anyone who
/// reached the port could otherwise pose as the platform.
pub async fn serve(
    state: Arc<App>,
    function: Function,
    port: u16,
    on_fc: bool,
) -> Result<(), lambda_runtime::Error> {
    let app = axum::Router::new()
        .fallback(dispatch)
        // FC takes synchronous payloads up to 32 MB (inline media); axum's default is 2 MiB.
        .layer(axum::extract::DefaultBodyLimit::max(FC_MAX_PAYLOAD))
        .with_state(Arc::new((state, function, on_fc)));
    let host = if on_fc { "0.0.0.0" } else { "127.0.0.1" };
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    tracing::info!(port, "serving the Function Compute custom runtime");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-fc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Routes a request by FC's `x-fc-control-path` (or, without it, by its path).
async fn dispatch(
    State(shared): State<Shared>,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The platform's call says so with one control-path header beside its request id (FC strips
    // a client's own `x-fc-*` headers); anything else is an HTTP caller, checked like any other.
    let controls: Vec<&axum::http::HeaderValue> =
        headers.get_all("x-fc-control-path").iter().collect();
    let from_platform = headers.contains_key("x-fc-request-id");
    let control = match controls.as_slice() {
        [one] if from_platform => one.to_str().ok().map(str::to_ascii_lowercase),
        _ => None,
    };
    // Only a local run (bound to loopback) goes by the path when nothing says otherwise.
    let by_path = !shared.2 && controls.is_empty() && method == axum::http::Method::POST;
    let local_path = match uri.path() {
        p @ ("/invoke" | "/initialize") if by_path => p,
        _ => "/http-invoke",
    };
    let kind = control.as_deref().unwrap_or(local_path);
    match kind {
        "/invoke" => invoke(State(shared), headers, body).await,
        "/initialize" => initialize(headers).await,
        _ => http_trigger(State(shared), peer, method, uri, headers, body).await,
    }
}

async fn initialize(headers: HeaderMap) -> Response {
    let id = request_id(&headers).unwrap_or_default();
    tracing::info!(fc_request_id = %id, "initialized");
    (StatusCode::OK, [("x-fc-status", "200")], "").into_response()
}

async fn invoke(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let id = request_id(&headers);
    let span = tracing::info_span!("invocation", fc_request_id = id.as_deref().unwrap_or(""));
    async move {
        let (state, function) = (&shared.0, shared.1);
        let outcome = match serde_json::from_slice::<Value>(&body) {
            Ok(payload) => {
                // Function Compute says the function's timeout (seconds) with every invocation.
                let left = headers
                    .get("x-fc-function-timeout")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(std::time::Duration::from_secs);
                let call = super::Call::with_time_left(id, left, state.deadline_reserve());
                function.handle(state, payload, call).await
            }
            Err(e) => Err(Failure::new(
                Code::InvalidInput,
                format!("event is not JSON: {e}"),
            )),
        };
        match outcome {
            Ok(v) => (StatusCode::OK, [("x-fc-status", "200")], axum::Json(v)).into_response(),
            Err(f) => {
                tracing::warn!(code = %f.error_type, message = %f.error_message, "invocation failed");
                (
                    StatusCode::NOT_FOUND,
                    [("x-fc-status", "404")],
                    axum::Json(json!({"errorType": f.error_type, "errorMessage": f.error_message})),
                )
                    .into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// A request an HTTP trigger forwarded: answered as an HTTP call.
async fn http_trigger(
    State(shared): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = request_id(&headers);
    let span = tracing::info_span!("http_trigger", fc_request_id = id.as_deref().unwrap_or(""));
    async move {
        let (state, function) = (&shared.0, shared.1);
        let Some(kind) = function.body() else {
            tracing::warn!("an HTTP trigger request reached a function that takes no HTTP calls");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"code": Code::InvalidInput.as_str(),
                    "message": "this function takes upload notifications, not HTTP requests"}})),
            )
                .into_response();
        };
        let call = inbound::http::from_request(
            id.clone(),
            method.as_str(),
            uri.path(),
            &headers,
            &body,
            inbound::http::Peer {
                addr: peer,
                trusted_hops: state.access().trusted_proxy_hops,
            },
            kind,
        );
        let deadline = super::Call::with_time_left(id, None, state.deadline_reserve());
        let answer = match Inbound::http(call) {
            // The OpenAI-compatible API streams here: FC's HTTP trigger passes a streamed body on.
            Inbound::OpenAi(h) => return openai(Arc::clone(state), *h, deadline).await,
            other => job::answer(state, other, deadline).await.into_http(),
        };
        respond(answer.status, answer.headers, Body::from(answer.body))
    }
    .instrument(span)
    .await
}

/// An HTTP answer with these headers.
fn respond(status: u16, headers: Vec<(&'static str, String)>, body: Body) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = (status, body).into_response();
    resp.headers_mut().extend(super::reply::header_map(headers));
    resp
}

/// A call to the OpenAI-compatible API: a streaming chat is relayed as the provider streams it,
/// anything else answered whole.
async fn openai(state: Arc<App>, h: OpenAiInbound, call: super::Call) -> Response {
    match api::streaming(state, h, call).await {
        Streaming::Whole(a) => respond(a.status, a.headers, Body::from(a.body)),
        Streaming::Events { headers, events } => {
            let body = futures_util::stream::unfold(events, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|s| (Ok::<_, std::convert::Infallible>(s), rx))
            });
            respond(200, headers, Body::from_stream(body))
        }
    }
}
