//! The functions' request handling: state built once per process, and the per-invocation glue
//! from an event to a run and back to the caller's shape.
//!
//! Invariants: state (pool, HTTP client, key cache) is created once at cold start and borrowed by
//! every invocation; HTTP callers always get an HTTP response (status from the error's class,
//! body `{"error":{"code","message"},"trace_id"}`); direct callers get the result JSON or a Lambda
//! error whose `errorType` is the stable code.

use serde_json::{Value, json};

use crate::config::ObjectSettings;
use crate::config::Settings;
use crate::error::RunError;
use crate::events::{self, ObjectEvent, RunOnceRequest, RunRouteRequest, Source};
use crate::media;
use crate::objects::ObjectStore;
use crate::provider::HttpProvider;
use crate::runner::{RunContext, RunResult, Runner, Spill};
use crate::store::Db;

/// The production runner: SQL store plus HTTP provider.
pub type AppRunner = Runner<Db, HttpProvider>;

/// Everything a function keeps between invocations.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub runner: AppRunner,
    /// Object storage (uploads, results, spill-over).
    pub objects: std::sync::Arc<dyn ObjectStore>,
    /// Object settings (prefixes, limits).
    pub object_settings: ObjectSettings,
}

impl AppState {
    /// Builds the state once per process (the pool connects lazily on first use).
    pub fn new(settings: &Settings) -> Result<Self, RunError> {
        let provider = HttpProvider::new(settings.http.clone())?;
        let store = Db::new(settings.database.clone());
        let objects: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::from(crate::objects::from_settings(&settings.objects));
        let spill = if settings.enable_oss_spillover {
            let bucket = settings
                .objects
                .bucket
                .clone()
                .ok_or(crate::config::ConfigError::Missing(vec!["OSS_BUCKET"]))?;
            Some(Spill {
                store: objects.clone(),
                bucket,
                prefix: settings.objects.spill_prefix.clone(),
                threshold: settings.objects.spill_threshold,
            })
        } else {
            None
        };
        Ok(Self {
            runner: Runner::new(store, provider, settings).with_spill(spill),
            objects,
            object_settings: settings.objects.clone(),
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
        redact: Vec::new(),
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
        redact: Vec::new(),
    };
    let result = state
        .runner
        .run_once(&inv.request.config_key, &inv.request.variables, &ctx)
        .await;
    reply(inv.source, &result)
}

/// Handles one upload notification (S3, SQS-wrapped S3, EventBridge, FC OSS).
///
/// S3 / EventBridge / OSS: answers a report per object, or fails (so the platform redelivers)
/// when an object failed in a way worth retrying. SQS: answers `batchItemFailures` naming only
/// the messages to redeliver.
pub async fn oss_trigger(
    state: &AppState,
    payload: Value,
    platform_request_id: Option<String>,
) -> Result<Value, Failure> {
    let event = match events::parse_object_event(&payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "rejected event");
            return Err(Failure {
                error_type: e.code().to_owned(),
                error_message: e.to_string(),
            });
        }
    };
    let ctx = RunContext {
        trigger: "oss".into(),
        request_id: platform_request_id,
        redact: Vec::new(),
    };
    match event {
        ObjectEvent::Test => Ok(json!({"ignored": "s3:TestEvent"})),
        ObjectEvent::Objects(objs) => {
            let reports = process_all(state, &objs, &ctx).await;
            let retry: Vec<&media::Report> = reports.iter().filter(|r| r.needs_retry()).collect();
            if let Some(first) = retry.first() {
                let code = match &first.outcome {
                    media::Outcome::Failed { code, .. } => code.clone(),
                    _ => "OBJECT_FAILED".into(),
                };
                return Err(Failure {
                    error_type: code,
                    error_message: format!(
                        "{} of {} objects failed and should be redelivered: {}",
                        retry.len(),
                        reports.len(),
                        serde_json::to_string(&retry).unwrap_or_default()
                    ),
                });
            }
            Ok(json!({"objects": reports}))
        }
        ObjectEvent::Sqs(messages) => {
            let mut failures = Vec::new();
            let mut all = Vec::new();
            for (id, parsed) in messages {
                let failed = match parsed {
                    Err(e) => {
                        tracing::warn!(message_id = %id, code = e.code(), error = %e, "unusable SQS message");
                        true
                    }
                    Ok(ObjectEvent::Test) => false,
                    Ok(ObjectEvent::Objects(objs)) => {
                        let reports = process_all(state, &objs, &ctx).await;
                        let failed = reports.iter().any(media::Report::needs_retry);
                        all.extend(reports);
                        failed
                    }
                    Ok(ObjectEvent::Sqs(_)) => true,
                };
                if failed {
                    failures.push(json!({"itemIdentifier": id}));
                }
            }
            Ok(json!({"batchItemFailures": failures, "objects": all}))
        }
    }
}

async fn process_all(
    state: &AppState,
    objs: &[events::ObjectRef],
    ctx: &RunContext,
) -> Vec<media::Report> {
    let mut out = Vec::with_capacity(objs.len());
    for o in objs {
        out.push(
            media::process(
                &state.runner,
                state.objects.as_ref(),
                &state.object_settings,
                o,
                ctx,
                false,
            )
            .await,
        );
    }
    out
}

/// Which function a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `functions/run-once`.
    RunOnce,
    /// `functions/run-route`.
    RunRoute,
    /// `functions/oss-trigger`.
    OssTrigger,
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
            Function::OssTrigger => oss_trigger(state, payload, request_id).await,
        }
    }
}

/// Tells the Lambda Runtime API why init failed (`errorType` = the stable code).
async fn report_init_error(e: &RunError) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let sent = reqwest::Client::new()
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", e.code())
        .json(&json!({"errorType": e.code(), "errorMessage": e.to_string()}))
        .send()
        .await;
    if let Err(err) = sent {
        tracing::error!(error = %err, "could not report the init error");
    }
}

impl AppState {
    /// Loads settings (env files + environment) and builds the state: what a function's `main` does.
    pub fn from_env() -> Result<Self, RunError> {
        Self::new(&Settings::load()?)
    }
}

/// The environment variable whose presence means Alibaba Function Compute (custom runtime).
pub const FC_MARKERS: [&str; 2] = ["FC_FUNCTION_NAME", "FC_SERVER_PORT"];

/// True when running as an Alibaba Function Compute custom runtime rather than on Lambda.
pub fn on_function_compute() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none()
        && FC_MARKERS.iter().any(|k| std::env::var_os(k).is_some())
}

/// Serves invocations until the platform stops the process: the Lambda Runtime API loop, or,
/// on Function Compute, the custom-runtime HTTP server. A state that failed to build is logged,
/// reported to Lambda's `/runtime/init/error` with its stable code, and ends the process.
pub async fn serve(
    state: Result<AppState, RunError>,
    function: Function,
) -> Result<(), lambda_runtime::Error> {
    let state = match state {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            tracing::error!(code = e.code(), error = %crate::error::chain(&e), "initialisation failed");
            report_init_error(&e).await;
            return Err(e.into());
        }
    };
    if on_function_compute() {
        let port = std::env::var("FC_SERVER_PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(9000);
        return fc::serve(state, function, port).await;
    }
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

/// The Function Compute custom-runtime contract: `POST /invoke` with the raw event,
/// `POST /initialize` once per instance; success and failure reported by the HTTP status and the
/// `x-fc-status` header (200 / 404).
pub mod fc {
    use std::sync::Arc;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use serde_json::{Value, json};
    use tracing::Instrument;

    use super::{AppState, Function};

    type Shared = Arc<(Arc<AppState>, Function)>;

    /// Serves on `0.0.0.0:port` until the process is stopped.
    pub async fn serve(
        state: Arc<AppState>,
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
                Ok(payload) => function.handle(state, payload, id).await,
                Err(e) => Err(super::Failure {
                    error_type: "INVALID_INPUT".into(),
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
}
