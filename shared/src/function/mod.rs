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

impl Function {
    /// Handles one invocation.
    pub async fn handle(
        self,
        state: &App,
        payload: Value,
        request_id: Option<String>,
    ) -> Result<Value, Failure> {
        match self {
            Function::RunOnce => handlers::run_once(state, payload, request_id).await,
            Function::RunRoute => handlers::run_route(state, payload, request_id).await,
            Function::OssTrigger => handlers::oss_trigger(state, payload, request_id).await,
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
        return fc::serve(state, function, platform.fc_server_port.unwrap_or(9000)).await;
    }
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let state = Arc::clone(&state);
            async move {
                let request_id = Some(event.context.request_id.clone());
                function.handle(&state, event.payload, request_id).await
            }
        },
    ))
    .await
}
