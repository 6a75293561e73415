//! `run-once`: runs one config_key per invocation (direct invoke or API Gateway).
//!
//! State (DB pool, HTTP client, key cache) is built once per cold start; the handler borrows it.

use std::sync::Arc;

use ai_runner::service::{self, AppState};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ai_runner::telemetry::init_json();
    let settings = ai_runner::Settings::load()?;
    let state = Arc::new(AppState::new(&settings)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let state = Arc::clone(&state);
        async move {
            let request_id = Some(event.context.request_id.clone());
            service::run_once(&state, event.payload, request_id).await
        }
    }))
    .await
}
