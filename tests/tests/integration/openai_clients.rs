//! The official OpenAI SDKs, which no one here wrote, as clients of `ai-runner serve`: the
//! `openai` package from PyPI and from npm run their scripts (`tests/clients/`) against a server
//! seeded here with one config per behaviour. Each script asserts every answer, stream and
//! exception class itself; this side checks what the server and the providers saw.
//!
//! `#[ignore]`d: they need the packages (`.ci/run` installs them: `pip install openai`,
//! `npm install openai` into `target/npm`), and fail loudly when run without them.

use std::path::PathBuf;
use std::process::Command;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::model::access::{KeyForm, KeyOwner, Patterns};
use ai_runner::model::cost::{BudgetScope, Period, Rate};
use ai_runner::store::access::NewKey;
use ai_runner_tests::{
    Backend, RouteSpec, Seed, ServeServer, TestDb, fixture, keyring, price, seed, seed_route,
};
use serde_json::json;

/// Everything the scripts call, and the providers behind it.
struct World {
    tdb: TestDb,
    server: ServeServer,
    /// The same catalog behind `ACCESS_MODE=bearer`.
    bearer: ServeServer,
    /// Bearer tokens: any config, only config `other`, one call a day.
    tokens: [String; 3],
    limited_retry: ProviderServer,
    _providers: Vec<ProviderServer>,
}

async fn bearer_token(
    db: &ai_runner::store::Db,
    scope: Option<&str>,
    quota: Option<u32>,
) -> String {
    let mut key = NewKey {
        form: KeyForm::Bearer,
        daily_quota: quota,
        ..NewKey::new(KeyOwner::User("sdk".into()))
    };
    if let Some(only) = scope {
        key.scope.configs = Patterns::parse(only);
    }
    let (_, token) = db.create_access_key(&keyring(), &key).await.unwrap();
    token.expose().to_owned()
}

async fn world() -> World {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    let sse = Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: fixture("openai/chat-completions-stream-text-with-usage.recorded.sse").into_bytes(),
    };
    let tool_answer = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}});
    let scripts: Vec<(&str, Reply)> = vec![
        ("k", Reply::content("晴天")),
        ("stream", sse),
        (
            "tools",
            Reply::Json {
                status: 200,
                body: tool_answer,
                headers: Vec::new(),
            },
        ),
        ("schema", Reply::content("{\"city\":\"Paris\"}")),
        ("primary", Reply::error(503, "down")),
        ("backup", Reply::content("备用")),
        ("strict", Reply::content("x")),
        ("limited", Reply::error(429, "slow down")),
        ("down", Reply::error(503, "down")),
        ("not-json", Reply::content("this is not JSON")),
        ("spent", Reply::content("x")),
    ];
    let mut providers = Vec::new();
    for (key, reply) in scripts {
        let p = ProviderServer::start(vec![reply]).await.unwrap();
        let url = p.url();
        let mut s = Seed::text(key, &url);
        if key == "strict" {
            s.params = Some(json!({"CALLER_PARAMS": "temperature"}));
        }
        seed(&db, &s).await;
        providers.push(p);
    }
    let limited_retry = ProviderServer::start(vec![Reply::error(429, "slow down")])
        .await
        .unwrap();
    seed(&db, &Seed::text("limited-retry", &limited_retry.url())).await;
    seed_route(
        &db,
        "shop",
        "ask",
        &RouteSpec::default(),
        &[("primary", 1, 1), ("backup", 2, 1)],
    )
    .await;
    seed_route(&db, "spent", "r", &RouteSpec::default(), &[("spent", 1, 1)]).await;
    db.set_prices(
        &[price(
            "model-spent",
            &[(Rate::Input, 1e-6), (Rate::Output, 2e-6)],
        )],
        0,
    )
    .await
    .unwrap();
    db.set_budget(BudgetScope::Route, "spent/r", Period::Day, 1)
        .await
        .unwrap();
    let server = ServeServer::start(&tdb.settings(&[
        ("AI_MAX_RETRIES", "0"),
        ("AI_CONTENT_RETRIES", "0"),
        // The predecessor's default refuses Latin letters in JSON answers; these are English.
        ("ENFORCE_NO_ENGLISH", "false"),
    ]))
    .await;
    let bearer = ServeServer::start(&tdb.settings(&[("ACCESS_MODE", "bearer")])).await;
    let tokens = [
        bearer_token(&db, None, None).await,
        bearer_token(&db, Some("other"), None).await,
        bearer_token(&db, None, Some(1)).await,
    ];
    World {
        tdb,
        server,
        bearer,
        tokens,
        limited_retry,
        _providers: providers,
    }
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The bearer server and its tokens, for the scripts' access checks.
fn bearer_env(cmd: &mut Command, w: &World) {
    cmd.env("BEARER_BASE", format!("{}/v1", w.bearer.base))
        .env("TOKEN_OK", &w.tokens[0])
        .env("TOKEN_SCOPED", &w.tokens[1])
        .env("TOKEN_QUOTA", &w.tokens[2]);
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok"),
        "{what} said nothing:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the openai package from PyPI (.ci/run installs it)"]
async fn the_openai_python_sdk_calls_configs_routes_and_streams_and_gets_each_error_class() {
    let w = world().await;
    let mut cmd = Command::new("python3");
    cmd.arg(clients_dir().join("openai_sdk.py"))
        .arg(format!("{}/v1", w.server.base));
    bearer_env(&mut cmd, &w);
    tokio::task::spawn_blocking(move || run(cmd, "openai-python"))
        .await
        .unwrap();
    // The SDK's retry came back once after the Retry-After we sent.
    assert_eq!(w.limited_retry.requests().len(), 2);
    // Every call whose config was resolved left its rows (a route's two, the SDK's retry its
    // own, each bearer call let in its own); the unknown model, the malformed messages and the
    // refused keys none: 15 + 2.
    assert_eq!(w.tdb.db().count("ai_call_logs").await.unwrap(), 17);
    w.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the openai package from npm in target/npm (.ci/run installs it)"]
async fn the_openai_node_sdk_calls_configs_routes_and_streams_and_gets_each_error_class() {
    let w = world().await;
    let modules = std::env::var("AI_RUNNER_TEST_NODE_MODULES").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/npm/node_modules"),
        PathBuf::from,
    );
    assert!(
        modules.join("openai").is_dir(),
        "no openai package in {} (npm install --prefix target/npm openai)",
        modules.display()
    );
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", &modules)
        .arg(clients_dir().join("openai_sdk.cjs"))
        .arg(format!("{}/v1", w.server.base));
    bearer_env(&mut cmd, &w);
    tokio::task::spawn_blocking(move || run(cmd, "openai-node"))
        .await
        .unwrap();
    w.server.shutdown().await;
}
