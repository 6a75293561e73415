//! The function edge: what a Lambda / Function Compute binary does around the core. Behind the
//! `function` cargo feature, so the CLI does not link the Lambda runtime.
//!
//! Map: [`inbound`] parses what a platform sends into one [`Inbound`], [`admit`] lets HTTP
//! callers in, [`job`] holds one module per job (run once, run a route, start an evaluation,
//! work its chunks, replay the audit spool, process uploads), [`reply`] is the typed answer and
//! its rendering per platform; [`lambda`] serves the Lambda Runtime API and [`fc`] Function
//! Compute's custom runtime; [`serve`] picks the platform.
//!
//! Invariants: an invocation is parsed once, answered by one job, and rendered for its platform
//! only where it leaves the process; state ([`App`]) is built once per process and borrowed by
//! every invocation; a state that failed to build is reported to the platform with its stable
//! code and ends the process.

pub mod admit;
pub mod fc;
pub mod inbound;
pub mod job;
pub mod lambda;
pub mod reply;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::App;
use crate::config::Platform;
use crate::error::RunError;
pub use inbound::Inbound;
pub use reply::{Failure, Reply};

/// Which function a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `functions/run-once`: a config run per invocation; also the scheduled audit replay.
    RunOnce,
    /// `functions/run-route`: a route run per invocation; also evaluation starts and chunks.
    RunRoute,
    /// `functions/oss-trigger`: upload notifications.
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
    /// Handles one invocation's JSON event (the Lambda Runtime API's, FC's event invoke): parsed
    /// once, answered, rendered as the platform expects.
    pub async fn handle(self, state: &App, payload: Value, call: Call) -> Result<Value, Failure> {
        let inbound = Inbound::parse(self, payload);
        let http = inbound.is_http();
        job::answer(state, inbound, call).await.into_lambda(http)
    }

    /// The request an HTTP call's body carries to this function; `None` for a function HTTP
    /// callers cannot reach (oss-trigger).
    pub fn body(self) -> Option<inbound::Body> {
        match self {
            Function::RunOnce => Some(inbound::Body::Config),
            Function::RunRoute => Some(inbound::Body::Route),
            Function::OssTrigger => None,
        }
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
            lambda::report_init_error(&platform, &e).await;
            return Err(e.into());
        }
    };
    if platform.on_function_compute() {
        if state.access().mode == crate::config::AccessMode::Platform {
            tracing::warn!(
                "ACCESS_MODE=iam on Function Compute: an HTTP trigger must use authType \"function\", or anyone can call it (ACCESS_MODE=hmac checks signatures here)"
            );
        }
        let on_fc = platform.fc_function_name.is_some();
        return fc::serve(
            state,
            function,
            platform.fc_server_port.unwrap_or(9000),
            on_fc,
        )
        .await;
    }
    lambda::serve(state, function).await
}
