//! The Lambda Runtime API: the invocation loop, and the init error a state that failed to build
//! is reported as.
//!
//! Invariants: every invocation's deadline is the runtime's `Lambda-Runtime-Deadline-Ms` less the
//! reserve; an init error's `errorType` is the stable code.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Call, Function};
use crate::app::App;
use crate::config::Platform;
use crate::error::RunError;

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
                function.handle(&state, event.payload, call).await
            }
        },
    ))
    .await
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
