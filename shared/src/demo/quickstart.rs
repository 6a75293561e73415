//! What quickstart and demo mode write: the demo config, route, suite and media mapping, through
//! the catalog like any other configuration.

use serde_json::{Value, json};

use super::endpoint::*;

/// Where quickstart sends its call.
#[derive(Debug, Clone)]
pub struct QuickstartProvider {
    /// Full chat-completions URL.
    pub url: String,
    /// Plain key (encrypted before it is stored).
    pub api_key: crate::Secret,
    /// Model name.
    pub model: String,
    /// True when this is the local demo server, not a real provider.
    pub is_demo: bool,
}

impl QuickstartProvider {
    /// A real provider if `OPENAI_API_KEY` is set (`OPENAI_BASE_URL`, default
    /// `https://api.openai.com/v1`, and `QUICKSTART_MODEL`, default `gpt-4o-mini`).
    #[allow(clippy::disallowed_methods)] // quickstart's own inputs, read once here
    pub fn from_env() -> Option<Self> {
        let key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())?;
        let base = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "https://api.openai.com/v1".into());
        Some(Self {
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            api_key: crate::Secret::new(key),
            model: std::env::var("QUICKSTART_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into()),
            is_demo: false,
        })
    }

    /// The demo endpoint's answering scenario.
    pub fn demo(server: &DemoServer) -> Self {
        Self {
            url: Scenario::Answer.url(server.port()),
            api_key: crate::Secret::new("sk-demo-local-not-a-real-key"),
            model: "demo-model".into(),
            is_demo: true,
        }
    }
}

/// The quickstart route: `quickstart` / `demo-route`.
pub const QUICKSTART_PROJECT: &str = "quickstart";
/// The quickstart route's key.
pub const QUICKSTART_ROUTE: &str = "demo-route";
/// The member that always fails (a loopback endpoint answering 503).
pub const QUICKSTART_FLAKY_KEY: &str = "quickstart-flaky";
/// The quickstart's upload demo: bucket, watched prefix, route and config.
pub const QUICKSTART_MEDIA_BUCKET: &str = "quickstart-media";
/// The watched prefix.
pub const QUICKSTART_MEDIA_PREFIX: &str = "uploads/";
/// The route that transcribes uploads.
pub const QUICKSTART_MEDIA_ROUTE: &str = "transcribe";

fn catalog(value: Value) -> Result<crate::catalog::Catalog, crate::RunError> {
    serde_json::from_value(value)
        .map_err(|e| crate::RunError::InvalidInput(format!("demo catalog: {e}")))
}

fn demo_connection(name: &str, url: &str) -> Value {
    json!({"name": name, "provider": DEMO_PROVIDER, "base_url": url,
           "api_key": format!("sk-demo-{name}-not-a-real-key")})
}

async fn apply(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    value: Value,
) -> Result<(), crate::RunError> {
    let cat = catalog(value)?;
    db.apply_catalog(&cat, keyring, &|_| None)
        .await
        .map_err(|e| match e {
            crate::catalog::ApplyError::Crypto(c) => c.into(),
            crate::catalog::ApplyError::Store(s) => s.into(),
            other => crate::RunError::InvalidInput(other.to_string()),
        })?;
    Ok(())
}

/// Writes the quickstart's connection (key encrypted), model, prompt, params and config, and the
/// failover route whose first member (`outage_url`, answering 503) hands over to it.
pub async fn install_quickstart(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    p: &QuickstartProvider,
    outage_url: &str,
) -> Result<(), crate::RunError> {
    apply(db, keyring, json!({
        "connections": [
            {"name": "quickstart", "provider": if p.is_demo { DEMO_PROVIDER } else { "openai" },
             "base_url": p.url, "api_key": p.api_key.expose()},
            demo_connection("quickstart-flaky", outage_url)
        ],
        "models": [
            {"name": p.model, "connection": "quickstart"},
            {"name": "demo-flaky-model", "connection": "quickstart-flaky"}
        ],
        "param_profiles": [{"name": "quickstart-params", "params": {"TEMPERATURE": 0.2, "MAX_TOKENS": 200}}],
        "prompts": [{
            "name": "quickstart-summary", "version": "v1",
            "messages": [
                {"role": "system", "content": "你是一个中文摘要助手。只输出 JSON，字段为 摘要 和 情绪，值只用中文。"},
                {"role": "user", "content": "请用一句中文总结：{{TEXT}}"}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "summary", "schema": {
                "type": "object",
                "required": ["摘要", "情绪"],
                "properties": {"摘要": {"type": "string"}, "情绪": {"type": "string"}}
            }}},
            "variables": {"TEXT": "今天的版本发布很顺利，所有测试都通过了，团队很开心。"}
        }],
        "configs": [
            {"config_key": QUICKSTART_CONFIG_KEY, "model": p.model, "prompt": "quickstart-summary@v1",
             "param_profile": "quickstart-params", "description": "installed by ai-runner quickstart"},
            {"config_key": QUICKSTART_FLAKY_KEY, "model": "demo-flaky-model", "prompt": "quickstart-summary@v1",
             "param_profile": "quickstart-params",
             "description": "installed by ai-runner quickstart: always fails (503)"}
        ],
        "routes": [{
            "project": QUICKSTART_PROJECT, "route_key": QUICKSTART_ROUTE, "policy": "primary_backup",
            "members": [
                {"config_key": QUICKSTART_FLAKY_KEY, "priority": 1, "weight": 1},
                {"config_key": QUICKSTART_CONFIG_KEY, "priority": 2, "weight": 1}
            ]
        }]
    }))
    .await
}

/// The quickstart's evaluation suite.
pub const QUICKSTART_SUITE: &str = "quickstart";

/// Writes the quickstart's evaluation catalog: a dataset of three texts whose expected
/// sentiment is known, and suite [`QUICKSTART_SUITE`] over the quickstart config and route
/// (JSON, the sentiment, latency shown but not counted; gate: half the cases pass). The demo
/// provider answers 积极 to everything, so the negative case fails on both targets.
pub async fn install_quickstart_evals(db: &crate::store::Db) -> Result<(), crate::RunError> {
    let doc = json!({
        "datasets": [{"name": QUICKSTART_SUITE, "description": "installed by ai-runner quickstart", "cases": [
            {"key": "release", "vars": {"TEXT": "今天的版本发布很顺利，所有测试都通过了。"}, "expected": {"情绪": "积极"}, "tags": ["smoke"]},
            {"key": "praise", "vars": {"TEXT": "客户说新功能非常好用，团队很受鼓舞。"}, "expected": {"情绪": "积极"}},
            {"key": "outage", "vars": {"TEXT": "服务宕机了两个小时，客户很不满意。"}, "expected": {"情绪": "消极"}}
        ]}],
        "suites": [{
            "name": QUICKSTART_SUITE, "dataset": QUICKSTART_SUITE,
            "description": "installed by ai-runner quickstart",
            "targets": [{"config": QUICKSTART_CONFIG_KEY}, {"route": format!("{QUICKSTART_PROJECT}/{QUICKSTART_ROUTE}")}],
            "assert": [
                {"type": "is-json"},
                {"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}", "metric": "sentiment"},
                {"type": "latency", "threshold": 30000, "weight": 0}
            ],
            "concurrency": 4,
            "gates": {"min_pass_rate": 0.5}
        }]
    });
    let (evals, findings) = crate::eval::suite::read_evals(
        &doc,
        std::path::Path::new("."),
        &std::collections::BTreeSet::new(),
    );
    let evals =
        evals.ok_or_else(|| crate::RunError::InvalidInput(format!("demo evals: {findings:?}")))?;
    db.apply_evals(&evals.catalog()).await?;
    Ok(())
}

/// Installs an audio config (inline `input_audio` part), a route over it and a mapping from
/// `quickstart-media/uploads/` to that route. `url` is the provider endpoint.
pub async fn install_quickstart_media(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    url: &str,
) -> Result<(), crate::RunError> {
    apply(db, keyring, json!({
        "connections": [demo_connection("quickstart-audio", url)],
        "models": [{"name": "demo-audio-model", "connection": "quickstart-audio"}],
        "prompts": [{
            "name": "quickstart-transcribe", "version": "v1",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "请转写这段音频（{{MEDIA_KEY}}）。"},
                {"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}}
            ]}]
        }],
        "configs": [{"config_key": "quickstart-audio", "model": "demo-audio-model",
                     "prompt": "quickstart-transcribe@v1",
                     "description": "installed by ai-runner quickstart: audio"}],
        "routes": [{
            "project": QUICKSTART_PROJECT, "route_key": QUICKSTART_MEDIA_ROUTE, "policy": "primary_backup",
            "variables": {"MEDIA_MODE": "inline"},
            "members": [{"config_key": "quickstart-audio", "priority": 1, "weight": 1}]
        }]
    }))
    .await?;
    let exists = db.list_mappings().await?.iter().any(|m| {
        m.bucket == QUICKSTART_MEDIA_BUCKET && m.key_prefix == QUICKSTART_MEDIA_PREFIX && m.active
    });
    if !exists {
        db.add_mapping(
            QUICKSTART_MEDIA_BUCKET,
            QUICKSTART_MEDIA_PREFIX,
            "",
            QUICKSTART_PROJECT,
            QUICKSTART_MEDIA_ROUTE,
            None,
        )
        .await?;
    }
    Ok(())
}

/// The predecessor's `quickstart --mode demo`: project, route and its two members.
pub const DEMO_MODE_PROJECT: &str = "demo_project";
/// The demo mode's route.
pub const DEMO_MODE_ROUTE: &str = "demo_route";
/// The demo mode's members, in order.
pub const DEMO_MODE_MEMBERS: [&str; 2] = ["demo_route_key_m1", "demo_route_key_m2"];

/// Installs the predecessor's demo-mode route over the media scenario at `url`: a prompt that
/// hands the model the uploaded audio inline (`inline` true, for a local object store) or as a
/// presigned `MEDIA_URL`, and a mapping from `bucket`/`prefix` to the route.
pub async fn install_demo_mode(
    db: &crate::store::Db,
    keyring: &crate::crypto::Keyring,
    url: &str,
    inline: bool,
    bucket: &str,
    prefix: &str,
) -> Result<(), crate::RunError> {
    let audio = if inline {
        json!({"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}})
    } else {
        json!({"type": "input_audio", "input_audio": {"url": "{{MEDIA_URL}}", "format": "{{MEDIA_FORMAT}}"}})
    };
    let [m1, m2] = DEMO_MODE_MEMBERS;
    apply(db, keyring, json!({
        "connections": [demo_connection("demo-media", url)],
        "models": [{"name": "demo-media-model", "connection": "demo-media"}],
        "prompts": [{
            "name": "demo-media", "version": "v1",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "请描述这段音频（{{MEDIA_KEY}}）。"}, audio
            ]}]
        }],
        "configs": [
            {"config_key": m1, "model": "demo-media-model", "prompt": "demo-media@v1",
             "description": "installed by ai-runner quickstart --mode demo"},
            {"config_key": m2, "model": "demo-media-model", "prompt": "demo-media@v1",
             "description": "installed by ai-runner quickstart --mode demo (backup)"}
        ],
        "routes": [{
            "project": DEMO_MODE_PROJECT, "route_key": DEMO_MODE_ROUTE, "policy": "primary_backup",
            "variables": {"MEDIA_MODE": if inline { "inline" } else { "url" }},
            "members": [
                {"config_key": m1, "priority": 1, "weight": 1},
                {"config_key": m2, "priority": 2, "weight": 1}
            ]
        }]
    }))
    .await?;
    let exists = db
        .list_mappings()
        .await?
        .iter()
        .any(|m| m.bucket == bucket && m.key_prefix == prefix && m.active);
    if !exists {
        db.add_mapping(bucket, prefix, "", DEMO_MODE_PROJECT, DEMO_MODE_ROUTE, None)
            .await?;
    }
    Ok(())
}
