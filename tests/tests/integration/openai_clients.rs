//! The official OpenAI SDKs, which no one here wrote, as clients of `ai-runner serve`: the
//! `openai` package from PyPI and from npm run their scripts (`tests/clients/`) against a server
//! over the world `ai_runner_tests::sdk` seeds, one config per behaviour. Each script asserts
//! every answer, stream and exception class itself; this side checks what the server and the
//! providers saw. (The same scripts run against the function bootstraps in their process tests.)
//!
//! `#[ignore]`d: they need the packages (`.ci/run` installs them: `pip install openai`,
//! `npm install openai` into `target/npm`), and fail loudly when run without them.

use ai_runner_tests::ServeServer;
use ai_runner_tests::sdk::{self, ROWS, SETTINGS};

async fn servers(w: &sdk::World) -> (ServeServer, ServeServer) {
    let plain = ServeServer::start(&w.tdb.settings(&SETTINGS)).await;
    let mut bearer = SETTINGS.to_vec();
    bearer.push(("ACCESS_MODE", "bearer"));
    (plain, ServeServer::start(&w.tdb.settings(&bearer)).await)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the openai package from PyPI (.ci/run installs it)"]
async fn the_openai_python_sdk_calls_configs_routes_and_streams_and_gets_each_error_class() {
    let w = sdk::world().await;
    let (plain, bearer) = servers(&w).await;
    let cmd = sdk::python(
        &w,
        &format!("{}/v1", plain.base),
        &format!("{}/v1", bearer.base),
    );
    sdk::run(cmd, "openai-python").await;
    // The SDK's retry came back once after the Retry-After we sent.
    assert_eq!(w.limited_retry.requests().len(), 2);
    assert_eq!(w.tdb.db().count("ai_call_logs").await.unwrap(), ROWS);
    // The two bearer calls let in left their key-call rows, as on the functions.
    assert_eq!(w.tdb.db().count("ai_user_call_log").await.unwrap(), 2);
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the openai package from npm in target/npm (.ci/run installs it)"]
async fn the_openai_node_sdk_calls_configs_routes_and_streams_and_gets_each_error_class() {
    let w = sdk::world().await;
    let (plain, bearer) = servers(&w).await;
    let cmd = sdk::node(
        &w,
        &format!("{}/v1", plain.base),
        &format!("{}/v1", bearer.base),
    );
    sdk::run(cmd, "openai-node").await;
    plain.shutdown().await;
}
