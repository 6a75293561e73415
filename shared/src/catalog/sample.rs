//! `cfg sample`: a complete catalog that `verify` passes and `gen` applies once its key variable
//! is exported. The template is `sample.yaml` beside this file, included at build time.
//!
//! Invariants: only the `{{CONNECTION}}`, `{{PROVIDER}}`, `{{BASE_URL}}`, `{{KEY_ENV}}` and
//! `{{MODEL}}` markers are replaced (prompt placeholders such as `{{TEXT}}` stay as they are);
//! the key is always a `${ENV}` reference, never a value.

/// The template.
const TEMPLATE: &str = include_str!("sample.yaml");

/// The endpoint a sample is written for.
struct Target {
    connection: &'static str,
    base_url: &'static str,
    key_env: &'static str,
    model: &'static str,
}

/// The providers `cfg sample --provider` knows; anything else is treated as `openrouter`.
pub const PROVIDERS: [&str; 3] = ["openrouter", "openai", "custom"];

fn target(provider: &str) -> Target {
    match provider {
        "openai" => Target {
            connection: "openai-main",
            base_url: "https://api.openai.com/v1/chat/completions",
            key_env: "OPENAI_API_KEY",
            model: "gpt-4o-mini",
        },
        "custom" => Target {
            connection: "my-gateway",
            base_url: "https://llm-gateway.example.com/v1/chat/completions",
            key_env: "LLM_GATEWAY_API_KEY",
            model: "my-model",
        },
        _ => Target {
            connection: "openrouter-main",
            base_url: "https://openrouter.ai/api/v1/chat/completions",
            key_env: "OPENROUTER_API_KEY",
            model: "google/gemini-2.5-flash",
        },
    }
}

/// The sample catalog for `provider` (`openrouter`, `openai` or `custom`).
pub fn sample(provider: &str) -> String {
    let t = target(provider);
    let label = if PROVIDERS.contains(&provider) {
        provider
    } else {
        "openrouter"
    };
    TEMPLATE
        .replace("{{CONNECTION}}", t.connection)
        .replace("{{PROVIDER}}", label)
        .replace("{{BASE_URL}}", t.base_url)
        .replace("{{KEY_ENV}}", t.key_env)
        .replace("{{MODEL}}", t.model)
}
