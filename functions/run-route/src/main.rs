//! `run-route`: runs a route per invocation (direct invoke, API Gateway, EventBridge schedule).
//!
//! State (DB pool, HTTP client, key cache) is built once per cold start; every invocation
//! borrows it.

use ai_runner::service::{self, AppState, Function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ai_runner::telemetry::init_json();
    let settings = ai_runner::Settings::load()?;
    let state = AppState::new(&settings)?;
    service::serve(state, Function::RunRoute).await
}
