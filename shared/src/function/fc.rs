//! The Function Compute custom-runtime contract: `POST /invoke` with the raw event,
//! `POST /initialize` once per instance; success and failure reported by the HTTP status and the
//! `x-fc-status` header (200 / 404).
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
        .route("/invoke", axum::routing::post(invoke))
        .route("/initialize", axum::routing::post(initialize))
        .with_state(Arc::new((state, function)));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, "serving the Function Compute custom runtime");
    axum::serve(listener, app).await?;
    Ok(())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-fc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
                let call = super::Call::with_time_left(id, left, state.deadline_reserve);
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
