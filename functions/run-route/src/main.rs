//! `run-route`: runs a route per invocation (direct invoke, API Gateway, EventBridge schedule).
//!
//! State (settings, DB pool, HTTP client, key cache) is built once per cold start; every
//! invocation borrows it. A state that cannot be built is reported as an init error.

use ai_runner::app::App;
use ai_runner::function::{self, Function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ai_runner::telemetry::init_json();
    function::serve(App::from_env(), Function::RunRoute).await
}
