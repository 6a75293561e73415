//! The Function Compute custom-runtime contract: `POST /invoke` with the raw event,
//! `POST /initialize` once per instance; success and failure reported by the HTTP status and the
//! `x-fc-status` header (200 / 404).
//!
//! An HTTP trigger on a custom-runtime function forwards the client's request itself, on the
//! client's method and path: it is turned into the HTTP trigger's event form (`version: "v1"`,
//! `rawPath`, `requestContext.http`), handled like any API event (access control included), and
//! the handler's `{statusCode, headers, body}` becomes the HTTP answer. Which kind a request is
//! comes from FC's own `x-fc-control-path` header (`/invoke`, `/initialize`, `/http-invoke`),
//! never from the path alone: a client of the HTTP trigger that asks for `/invoke` is still an
//! HTTP caller, signed like any other. Only without that header (a local run) does the path
//! decide.
//!
//! Invariants: one server per process, bound to `0.0.0.0:$FC_SERVER_PORT`; every invocation is
//! answered (a handler failure is a 404 with `x-fc-status: 404` and the platform error body).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use super::Function;
use super::reply::Failure;
use crate::app::App;
use crate::code::Code;

type Shared = Arc<(Arc<App>, Function)>;

/// Serves on `0.0.0.0:port` until the process is stopped.
pub async fn serve(
    state: Arc<App>,
    function: Function,
    port: u16,
) -> Result<(), lambda_runtime::Error> {
    let app = axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::new((state, function)));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
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
    let control = headers
        .get("x-fc-control-path")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let kind = control.as_deref().unwrap_or(match uri.path() {
        "/invoke" if method == axum::http::Method::POST => "/invoke",
        "/initialize" if method == axum::http::Method::POST => "/initialize",
        _ => "/http-invoke",
    });
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
            Err(e) => Err(Failure {
                error_type: Code::InvalidInput.as_str().to_owned(),
                error_message: format!("event is not JSON: {e}"),
            }),
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

/// An HTTP trigger's request, as the event an event handler would get.
fn trigger_event(
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    peer: std::net::SocketAddr,
) -> Value {
    let mut h = serde_json::Map::new();
    for (name, value) in headers {
        // FC's own headers carry the function role's temporary credentials: never passed on.
        let n = name.as_str();
        if n.starts_with("x-fc-") || n == "authorization" || n == "cookie" {
            continue;
        }
        if let Ok(v) = value.to_str() {
            h.insert(n.to_owned(), json!(v));
        }
    }
    // The client can write X-Forwarded-For itself; the last address is the one FC's gateway
    // appended (the peer that reached it). Without the header the peer is the client.
    let source_ip = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| peer.ip().to_string(), str::to_owned);
    let (body, b64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => {
            use base64::Engine;
            (base64::engine::general_purpose::STANDARD.encode(body), true)
        }
    };
    json!({
        "version": "v1",
        "rawPath": path,
        "body": body,
        "isBase64Encoded": b64,
        "headers": h,
        "requestContext": {
            "requestId": request_id(headers).unwrap_or_default(),
            "http": {"method": method, "path": path, "sourceIp": source_ip},
        },
    })
}

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
        let event = trigger_event(method.as_str(), uri.path(), &headers, &body, peer);
        let call = super::Call::with_time_left(id, None, state.deadline_reserve());
        match function.handle(state, event, call).await {
            Ok(v) => http_answer(&v),
            Err(f) => {
                tracing::warn!(code = %f.error_type, message = %f.error_message, "HTTP trigger request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": {"code": f.error_type, "message": f.error_message}})),
                )
                    .into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// A handler's `{statusCode, headers, body}` as the HTTP answer.
fn http_answer(v: &Value) -> Response {
    let status = v
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = match v.get("body") {
        Some(Value::String(text)) => (status, text.clone()).into_response(),
        Some(other) => (status, axum::Json(other.clone())).into_response(),
        None => (status, axum::Json(v.clone())).into_response(),
    };
    if let Some(h) = v.get("headers").and_then(Value::as_object) {
        for (name, value) in h {
            if let (Ok(n), Some(Ok(val))) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                resp.headers_mut().insert(n, val);
            }
        }
    }
    resp
}
