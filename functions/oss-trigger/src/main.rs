//! `oss-trigger`: runs the mapped route on every new audio object (S3 notifications, S3 via SQS,
//! EventBridge "Object Created", Alibaba OSS triggers), exactly once, and stores the result.
//!
//! State (settings, DB pool, HTTP client, object store client, key cache) is built once per cold
//! start; every invocation borrows it. A state that cannot be built is reported as an init error.

use ai_runner::app::App;
use ai_runner::function::{self, Function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ai_runner::telemetry::init_json();
    function::serve(App::from_env(), Function::OssTrigger).await
}
