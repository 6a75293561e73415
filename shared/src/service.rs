//! The functions' request handling: state built once per process, and the per-invocation glue
//! from an event to a run and back to the caller's shape.
//!
//! Invariants: state (pool, HTTP client, key cache) is created once at cold start and borrowed by
//! every invocation; HTTP callers always get an HTTP response (status from the error's class,
//! body `{"error":{"code","message"},"trace_id"}`); direct callers get the result JSON or a Lambda
//! error whose `errorType` is the stable code.

use serde_json::{Value, json};

use crate::config::Settings;
use crate::error::RunError;
use crate::events::{self, RunOnceRequest, Source};
use crate::provider::HttpProvider;
use crate::runner::{RunContext, RunResult, Runner};
use crate::store::Db;

/// The production runner: SQL store plus HTTP provider.
pub type AppRunner = Runner<Db, HttpProvider>;

/// Everything a function keeps between invocations.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub runner: AppRunner,
}

impl AppState {
    /// Builds the state once per process (the pool connects lazily on first use).
    pub fn new(settings: &Settings) -> Result<Self, RunError> {
        let provider = HttpProvider::new(settings.http.clone())?;
        let store = Db::new(settings.database.clone());
        Ok(Self {
            runner: Runner::new(store, provider, settings),
        })
    }
}

/// A failed direct invocation, reported to the platform as `{errorType, errorMessage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code.
    pub error_type: String,
    /// Short message (with the trace id when a run happened).
    pub error_message: String,
}

impl From<Failure> for lambda_runtime::Diagnostic {
    fn from(f: Failure) -> Self {
        lambda_runtime::Diagnostic {
            error_type: f.error_type,
            error_message: f.error_message,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

fn input_failure(source: Source, e: &RunError) -> Result<Value, Failure> {
    if source.is_http() {
        Ok(events::http_response(
            e.http_status(),
            &json!({"error": {"code": e.code(), "message": e.to_string()}}),
        ))
    } else {
        Err(Failure {
            error_type: e.code().to_owned(),
            error_message: e.to_string(),
        })
    }
}

/// Shapes a finished run for the caller.
pub fn reply(source: Source, result: &RunResult) -> Result<Value, Failure> {
    let body = serde_json::to_value(result).unwrap_or(Value::Null);
    match (&result.failure, source.is_http()) {
        (None, true) => Ok(events::http_response(200, &body)),
        (None, false) => Ok(body),
        (Some(e), true) => Ok(events::http_response(
            e.http_status(),
            &json!({"error": {"code": e.code(), "message": e.to_string()}, "trace_id": result.trace_id}),
        )),
        (Some(e), false) => Err(Failure {
            error_type: e.code().to_owned(),
            error_message: format!("{e} (trace_id {})", result.trace_id),
        }),
    }
}

/// Handles one run-once invocation.
pub async fn run_once(
    state: &AppState,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let source = events::detect(&payload);
    let inv = match events::parse::<RunOnceRequest>(payload, &["config_key"]) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let ctx = RunContext {
        trigger: inv.source.trigger().to_owned(),
        request_id: platform_request_id.or(inv.request_id),
    };
    let result = state
        .runner
        .run_once(&inv.request.config_key, &inv.request.variables, &ctx)
        .await;
    reply(inv.source, &result)
}
