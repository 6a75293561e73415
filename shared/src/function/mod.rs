//! The function edge: what a Lambda / Function Compute binary does around the core. Behind the
//! `function` cargo feature, so the CLI does not link the Lambda runtime.
//!
//! Map: [`events`] parses what a platform sends, [`handlers`] turns it into runs, [`reply`] shapes
//! the answer (and maps codes to HTTP statuses), [`fc`] serves Function Compute's custom-runtime
//! protocol; [`serve`] picks the platform and loops.
//!
//! Invariants: state ([`App`]) is built once per process and borrowed by every invocation; a
//! state that failed to build is reported to the platform with its stable code and ends the
//! process.

pub mod events;
pub mod fc;
pub mod handlers;
pub mod reply;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::app::App;
use crate::config::Platform;
use crate::error::RunError;
pub use reply::Failure;

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

/// One invocation as the platform hands it over.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The platform's request id.
    pub request_id: Option<String>,
    /// When the run must have answered: the platform's deadline minus `AI_DEADLINE_RESERVE_MS`.
    pub deadline: Option<Instant>,
}

impl Call {
    /// A call whose platform deadline is `left` from now, less the reserve.
    pub fn with_time_left(
        request_id: Option<String>,
        left: Option<Duration>,
        reserve: Duration,
    ) -> Self {
        Self {
            request_id,
            deadline: left.map(|l| Instant::now() + l.saturating_sub(reserve)),
        }
    }
}

impl Function {
    /// Handles one invocation.
    pub async fn handle(self, state: &App, payload: Value, call: Call) -> Result<Value, Failure> {
        match self {
            Function::RunOnce => handlers::run_once(state, payload, call).await,
            Function::RunRoute => handlers::run_route(state, payload, call).await,
            Function::OssTrigger => handlers::oss_trigger(state, payload, call).await,
        }
    }
}

/// Tells the Lambda Runtime API why init failed (`errorType` = the stable code).
async fn report_init_error(platform: &Platform, e: &RunError) {
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

/// Serves invocations until the platform stops the process: the Lambda Runtime API loop, or,
/// on Function Compute, the custom-runtime HTTP server. A state that failed to build is logged,
/// reported to Lambda's `/runtime/init/error` with its stable code, and ends the process.
pub async fn serve(
    state: Result<App, RunError>,
    function: Function,
) -> Result<(), lambda_runtime::Error> {
    let platform = Platform::from_env();
    let state = match state {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(code = %e.code(), error = %crate::error::chain(&e), "initialisation failed");
            report_init_error(&platform, &e).await;
            return Err(e.into());
        }
    };
    if platform.on_function_compute() {
        if state.access().mode == crate::config::AccessMode::Platform {
            tracing::warn!(
                "ACCESS_MODE=iam on Function Compute: an HTTP trigger must use authType \"function\", or anyone can call it (ACCESS_MODE=hmac checks signatures here)"
            );
        }
        return fc::serve(state, function, platform.fc_server_port.unwrap_or(9000)).await;
    }
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
                function.handle(&state, event.payload, call).await
            }
        },
    ))
    .await
}
