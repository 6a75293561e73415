//! In-process fakes of the ports, for tests of the core's policies that need no socket and no
//! database: [`MemoryStore`] (the store ports), [`ScriptedProvider`] (the provider) and
//! [`MemoryQueue`] (the evaluation queue), plus the values a test seeds them with.
//!
//! Invariants: a fake keeps its port's contract exactly as the real implementation does (the
//! `policy::contract` tests run the same scenarios against a fake and against SQLite); the real
//! implementations keep their own tests against real servers, which stay the contract's proof.

mod breaker;
pub mod provider;
pub mod queue;
pub mod store;

use ai_runner::model::{ConnectionInfo, PromptInfo, ResolvedConfig, connection_binding};
use ai_runner::{Runner, Settings};
use serde_json::json;

pub use provider::{Answer, ScriptedProvider, Sent};
pub use queue::MemoryQueue;
pub use store::{MemoryStore, Window};

/// The provider key every fake config carries (encrypted under [`crate::PEPPER`]).
pub const API_KEY: &str = "sk-fake-provider-key-000";

/// The URL config `key` calls (a scripted provider answers it; nothing resolves it).
pub fn url(key: &str) -> String {
    format!("https://{key}.fake.invalid/v1/chat/completions")
}

/// A plain-text config `key` on [`url`]`(key)`, model `model-<key>`, with one user message (the
/// same shape `Seed::text` writes to a database), its key encrypted as the catalog writer does.
pub fn config(key: &str) -> ResolvedConfig {
    let connection = format!("conn-{key}");
    let key_blob = crate::keyring()
        .encrypt(API_KEY, &connection_binding(&connection))
        .unwrap();
    ResolvedConfig {
        config_id: 0,
        config_key: key.to_owned(),
        model: format!("model-{key}"),
        connection: ConnectionInfo {
            // One connection per config, as `Seed::text` makes: each has its own breaker.
            id: connection_id(key),
            name: connection,
            provider: "test".into(),
            base_url: url(key),
            key_blob,
        },
        prompt: Some(PromptInfo {
            name: format!("prompt-{key}"),
            version: "v1".into(),
            messages: json!([{"role": "user", "content": "说一句话：{{TOPIC}}"}]),
            response_format: None,
            variables: Some(json!({"TOPIC": "天气"})),
        }),
        params: None,
    }
}

/// The id of config `key`'s connection: distinct per key (FNV-1a of the key, positive).
pub fn connection_id(key: &str) -> i64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

/// A config like [`config`] whose prompt asks for JSON about `{{TEXT}}` (evaluation targets).
pub fn json_config(key: &str) -> ResolvedConfig {
    let mut cfg = config(key);
    if let Some(p) = &mut cfg.prompt {
        p.messages = json!([{"role": "user", "content": "判断情绪：{{TEXT}}"}]);
        p.variables = None;
        p.response_format = Some(json!({"type": "json_object"}));
    }
    cfg
}

/// Settings for a runner on fakes: the tests' pepper, no content-retry delay, plus `extra`.
/// The database URL is never opened (the store is the fake).
pub fn settings(extra: &[(&str, &str)]) -> Settings {
    Settings::builder()
        .database_url("sqlite://never-opened-by-fakes.db")
        .pepper(crate::PEPPER)
        .var("AI_CONTENT_RETRY_DELAY_MS", "0")
        .vars(extra.iter().copied())
        .build()
        .unwrap()
}

/// A runner on a memory store and a scripted provider (clones of the handles the test keeps).
pub fn runner(
    store: &MemoryStore,
    provider: &ScriptedProvider,
    settings: &Settings,
) -> Runner<MemoryStore, ScriptedProvider> {
    Runner::new(store.clone(), provider.clone(), settings)
}
