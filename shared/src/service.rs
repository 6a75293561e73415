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
use crate::events::{self, RunOnceRequest, RunRouteRequest, Source};
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
    shape(source, result.failure.as_deref(), &result.trace_id, result)
}

fn shape<T: serde::Serialize>(
    source: Source,
    failure: Option<&RunError>,
    trace_id: &str,
    result: &T,
) -> Result<Value, Failure> {
    let body = serde_json::to_value(result).unwrap_or(Value::Null);
    match (failure, source.is_http()) {
        (None, true) => Ok(events::http_response(200, &body)),
        (None, false) => Ok(body),
        (Some(e), true) => Ok(events::http_response(
            e.http_status(),
            &json!({"error": {"code": e.code(), "message": e.to_string()}, "trace_id": trace_id}),
        )),
        (Some(e), false) => Err(Failure {
            error_type: e.code().to_owned(),
            error_message: format!("{e} (trace_id {trace_id})"),
        }),
    }
}

/// Handles one run-route invocation (direct, API Gateway, or an EventBridge schedule).
pub async fn run_route(
    state: &AppState,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let source = events::detect(&payload);
    let inv = match events::parse::<RunRouteRequest>(payload, &["project", "route_key"]) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "rejected invocation");
            return input_failure(source, &e);
        }
    };
    let req = inv.request;
    if req.dry_run {
        return match state
            .runner
            .dry_run(&req.project, &req.route_key, &req.variables)
            .await
        {
            Ok(d) => shape(inv.source, None, "", &d),
            Err(e) => input_failure(inv.source, &e),
        };
    }
    let ctx = RunContext {
        trigger: req
            .trigger
            .unwrap_or_else(|| inv.source.trigger().to_owned()),
        request_id: platform_request_id.or(inv.request_id),
    };
    let result = state
        .runner
        .run_route(&req.project, &req.route_key, &req.variables, &ctx)
        .await;
    shape(
        inv.source,
        result.result.failure.as_deref(),
        &result.result.trace_id,
        &result,
    )
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

/// Which function a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `functions/run-once`.
    RunOnce,
    /// `functions/run-route`.
    RunRoute,
}

impl Function {
    /// Handles one invocation.
    pub async fn handle(
        self,
        state: &AppState,
        payload: Value,
        request_id: Option<String>,
    ) -> Result<Value, Failure> {
        match self {
            Function::RunOnce => run_once(state, payload, request_id).await,
            Function::RunRoute => run_route(state, payload, request_id).await,
        }
    }
}

/// Serves invocations until the platform stops the process: the Lambda Runtime API loop.
pub async fn serve(state: AppState, function: Function) -> Result<(), lambda_runtime::Error> {
    let state = std::sync::Arc::new(state);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let state = std::sync::Arc::clone(&state);
            async move {
                let request_id = Some(event.context.request_id.clone());
                function.handle(&state, event.payload, request_id).await
            }
        },
    ))
    .await
}
