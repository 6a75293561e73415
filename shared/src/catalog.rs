//! The configuration catalog as YAML: what `ai-runner cfg sample / verify / gen / export` read
//! and write, so a team can keep its whole configuration in git and apply it from CI.
//!
//! Shape (every section optional):
//!
//! ```yaml
//! connections:    [{name, provider, base_url, api_key | api_key_encrypted, active}]
//! models:         [{name, connection}]
//! param_profiles: [{name, params}]
//! prompts:        [{name, version, messages, response_format, variables, description}]
//! configs:        [{config_key, model, prompt: "name@version" | {name, version}, param_profile, description, active}]
//! routes:         [{project, route_key, policy, policy_config, variables, prompt, param_profile,
//!                   response_format, active, members: [{config_key, priority, weight, active}]}]
//! ```
//!
//! `api_key` may be `${ENV_VAR}` (resolved when applying, so files hold no secrets), a literal
//! key, or the sample's `<...>` placeholder (refused when applying). Invariants: [`verify`]
//! reports every problem at once, each with its YAML path; a file that verifies applies; a file
//! exported from a database verifies and re-applies with no change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::request::{collect_strings, placeholders};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file cannot be applied.
    Error,
    /// Worth a look; the file still applies.
    Warning,
}

/// One problem found in a catalog file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// YAML path, e.g. `configs[2].model`.
    pub path: String,
    /// Stable code, e.g. `UNKNOWN_KEY`, `MISSING_FIELD`, `UNKNOWN_REFERENCE`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// A prompt reference: `name@version` or `{name, version}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PromptRef {
    /// Prompt name.
    pub name: String,
    /// Prompt version.
    pub version: String,
}

impl std::fmt::Display for PromptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A provider endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// Unique name.
    pub name: String,
    /// Provider label.
    pub provider: String,
    /// Full chat-completions URL.
    pub base_url: String,
    /// Plain key, `${ENV}` reference or `<placeholder>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// An already encrypted blob (v1 or v2), stored as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_encrypted: Option<String>,
    /// `is_active`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// A model name bound to a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Sent as `model`.
    pub name: String,
    /// Connection name.
    pub connection: String,
}

/// A named parameter bag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamProfile {
    /// Unique name.
    pub name: String,
    /// `params_json`.
    pub params: Map<String, Value>,
}

/// A versioned prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Name.
    pub name: String,
    /// Version (a string; numbers are accepted and kept as their text).
    pub version: String,
    /// `messages_json`.
    pub messages: Value,
    /// `response_format_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `variables_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A runnable config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Unique key.
    pub config_key: String,
    /// Model name.
    pub model: String,
    /// Prompt reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptRef>,
    /// Param profile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_profile: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `is_active`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// A route member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The member config.
    pub config_key: String,
    /// Lower runs first.
    #[serde(default = "one")]
    pub priority: i64,
    /// Weight for `weighted`.
    #[serde(default = "one")]
    pub weight: i64,
    /// `is_active`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Project name.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// Policy.
    #[serde(default = "primary_backup")]
    pub policy: String,
    /// `policy_config_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_config: Option<Value>,
    /// Route variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Map<String, Value>>,
    /// Route-level prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptRef>,
    /// Route-level param profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_profile: Option<String>,
    /// Route-level response_format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `is_active`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Members.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A whole catalog.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// Connections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<Connection>,
    /// Models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
    /// Param profiles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_profiles: Vec<ParamProfile>,
    /// Prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<Prompt>,
    /// Configs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<Config>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn one() -> i64 {
    1
}
fn primary_backup() -> String {
    "primary_backup".into()
}

const SECTIONS: [&str; 6] = [
    "connections",
    "models",
    "param_profiles",
    "prompts",
    "configs",
    "routes",
];
/// Runtime variables the pipeline and callers commonly pass (not reported as unfillable).
const RUNTIME_VARS: [&str; 6] = [
    "MEDIA_URL",
    "MEDIA_DATA",
    "MEDIA_FORMAT",
    "MEDIA_KEY",
    "MEDIA_BUCKET",
    "MEDIA_SIZE",
];

struct Ctx {
    findings: Vec<Finding>,
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Error,
            path: path.into(),
            code,
            message: message.into(),
        });
    }
    fn warn(&mut self, path: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            path: path.into(),
            code,
            message: message.into(),
        });
    }
}

/// Parses YAML text into a JSON value (YAML 1.2 via serde_yaml_ng), or a finding.
pub fn parse_yaml(text: &str) -> Result<Value, Finding> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| Finding {
        severity: Severity::Error,
        path: e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "$".into()),
        code: "YAML_INVALID",
        message: e.to_string(),
    })
}

/// Reads a route's `members` list.
fn members(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Vec<Member> {
    let mut out = Vec::new();
    for (mp, m) in items(o, "members", cx) {
        let mp = format!("{path}.{mp}");
        check_keys(m, &["config_key", "priority", "weight", "active"], &mp, cx);
        if let Some(config_key) = req_str(m, "config_key", &mp, cx) {
            out.push(Member {
                config_key,
                priority: opt_int(m, "priority", &mp, cx, i64::MIN),
                weight: opt_int(m, "weight", &mp, cx, 0),
                active: opt_bool(m, "active", &mp, cx),
            });
        }
    }
    out
}

/// Reads `name@version` or `{name, version}`.
fn prompt_ref(v: &Value, path: &str, cx: &mut Ctx) -> Option<PromptRef> {
    match v {
        Value::String(s) => match s.rsplit_once('@') {
            Some((n, ver)) if !n.is_empty() && !ver.is_empty() => Some(PromptRef {
                name: n.into(),
                version: ver.into(),
            }),
            _ => {
                cx.err(
                    path,
                    "BAD_PROMPT_REFERENCE",
                    format!("{s:?} is not name@version"),
                );
                None
            }
        },
        Value::Object(o) => {
            check_keys(o, &["name", "version"], path, cx);
            match (
                o.get("name").and_then(Value::as_str),
                o.get("version").and_then(scalar_text),
            ) {
                (Some(n), Some(v)) => Some(PromptRef {
                    name: n.into(),
                    version: v,
                }),
                _ => {
                    cx.err(path, "BAD_PROMPT_REFERENCE", "expected {name, version}");
                    None
                }
            }
        }
        _ => {
            cx.err(
                path,
                "BAD_PROMPT_REFERENCE",
                "expected name@version or {name, version}",
            );
            None
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn check_keys(o: &Map<String, Value>, known: &[&str], path: &str, cx: &mut Ctx) {
    for k in o.keys() {
        if !known.contains(&k.as_str()) {
            cx.err(
                format!("{path}.{k}"),
                "UNKNOWN_KEY",
                format!("unknown key {k:?} (known: {})", known.join(", ")),
            );
        }
    }
}

fn req_str(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx) -> Option<String> {
    match o.get(key) {
        Some(v) => match scalar_text(v).filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(s),
            None => {
                cx.err(
                    format!("{path}.{key}"),
                    "BAD_TYPE",
                    "expected a non-empty string",
                );
                None
            }
        },
        None => {
            cx.err(
                format!("{path}.{key}"),
                "MISSING_FIELD",
                format!("{key} is required"),
            );
            None
        }
    }
}

fn opt_str(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx) -> Option<String> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(v) {
            Some(s) => Some(s),
            None => {
                cx.err(format!("{path}.{key}"), "BAD_TYPE", "expected a string");
                None
            }
        },
    }
}

fn opt_bool(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx) -> bool {
    match o.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => crate::request::value_flag(v).unwrap_or_else(|| {
            cx.err(
                format!("{path}.{key}"),
                "BAD_TYPE",
                "expected true or false",
            );
            true
        }),
    }
}

fn opt_obj(
    o: &Map<String, Value>,
    key: &str,
    path: &str,
    cx: &mut Ctx,
) -> Option<Map<String, Value>> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            cx.err(format!("{path}.{key}"), "BAD_TYPE", "expected a mapping");
            None
        }
    }
}

fn opt_int(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx, min: i64) -> i64 {
    match o.get(key) {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_i64().filter(|n| *n >= min) {
            Some(n) => n,
            None => {
                cx.err(
                    format!("{path}.{key}"),
                    "BAD_TYPE",
                    format!("expected a whole number >= {min}"),
                );
                1
            }
        },
    }
}

fn items<'a>(
    root: &'a Map<String, Value>,
    section: &str,
    cx: &mut Ctx,
) -> Vec<(String, &'a Map<String, Value>)> {
    match root.get(section) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let path = format!("{section}[{i}]");
                match v.as_object() {
                    Some(o) => Some((path, o)),
                    None => {
                        cx.err(path, "BAD_TYPE", "expected a mapping");
                        None
                    }
                }
            })
            .collect(),
        Some(_) => {
            cx.err(section, "BAD_TYPE", "expected a list");
            Vec::new()
        }
    }
}

fn check_response_format(rf: &Value, path: &str, cx: &mut Ctx) {
    match rf.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => {}
        Some("json_schema") => match rf.pointer("/json_schema/schema") {
            Some(schema) => {
                if let Err(e) = jsonschema::validator_for(schema) {
                    cx.err(
                        format!("{path}.json_schema.schema"),
                        "BAD_JSON_SCHEMA",
                        e.to_string(),
                    );
                }
            }
            None => cx.err(
                format!("{path}.json_schema.schema"),
                "MISSING_FIELD",
                "a json_schema response_format needs json_schema.schema",
            ),
        },
        other => cx.err(
            format!("{path}.type"),
            "BAD_RESPONSE_FORMAT",
            format!("type must be text, json_object or json_schema, not {other:?}"),
        ),
    }
}

fn check_messages(messages: &Value, path: &str, cx: &mut Ctx) {
    let list = match messages {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("messages").and_then(Value::as_array) {
            Some(a) => a,
            None => {
                cx.err(path, "BAD_MESSAGES", "an object needs a \"messages\" list");
                return;
            }
        },
        _ => {
            cx.err(path, "BAD_MESSAGES", "expected a list of messages");
            return;
        }
    };
    for (i, m) in list.iter().enumerate() {
        let mp = format!("{path}[{i}]");
        let Some(o) = m.as_object() else {
            cx.err(
                mp,
                "BAD_MESSAGES",
                "a message is a mapping with role and content",
            );
            continue;
        };
        if !matches!(
            o.get("role").and_then(Value::as_str),
            Some("system" | "user" | "assistant" | "developer" | "tool")
        ) {
            cx.err(
                format!("{mp}.role"),
                "BAD_MESSAGES",
                "role must be system, user, assistant, developer or tool",
            );
        }
        match o.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    let pp = format!("{mp}.content[{j}]");
                    let url = match p.get("type").and_then(Value::as_str) {
                        Some("text") => None,
                        Some("image_url") => Some(
                            p.pointer("/image_url/url")
                                .or_else(|| p.get("image_url"))
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        ),
                        Some("input_audio") => p
                            .pointer("/input_audio/url")
                            .or_else(|| p.pointer("/input_audio/data"))
                            .and_then(Value::as_str)
                            .or(Some("")),
                        other => {
                            cx.warn(
                                format!("{pp}.type"),
                                "UNKNOWN_PART_TYPE",
                                format!("content part type {other:?} is passed through unchecked"),
                            );
                            None
                        }
                    };
                    if let Some(u) = url
                        && placeholders(u).is_empty()
                        && !(u.starts_with("http://")
                            || u.starts_with("https://")
                            || u.starts_with("data:"))
                        && (p.get("type").and_then(Value::as_str) != Some("input_audio")
                            || u.is_empty())
                    {
                        cx.err(pp, "BAD_MEDIA_PART", "a media part needs an http(s)/data URL or a {{PLACEHOLDER}} filled at run time");
                    }
                }
            }
            None if o.get("role").and_then(Value::as_str) == Some("assistant") => {}
            _ => cx.err(
                format!("{mp}.content"),
                "BAD_MESSAGES",
                "content must be a string or a list of parts",
            ),
        }
    }
}

/// Names that exist outside the file (in the database, for `verify --db-check` and `gen`).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Connection names.
    pub connections: BTreeSet<String>,
    /// Model names.
    pub models: BTreeSet<String>,
    /// Param profile names.
    pub param_profiles: BTreeSet<String>,
    /// `name@version`.
    pub prompts: BTreeSet<String>,
    /// Config keys.
    pub configs: BTreeSet<String>,
}

/// Checks a parsed catalog document; returns the typed catalog (when it has no errors) and
/// every finding.
pub fn verify(doc: &Value) -> (Option<Catalog>, Vec<Finding>) {
    verify_with(doc, &Known::default())
}

/// [`verify`], where references may also point at objects in `known` (the database).
pub fn verify_with(doc: &Value, known: &Known) -> (Option<Catalog>, Vec<Finding>) {
    let mut cx = Ctx {
        findings: Vec::new(),
    };
    let Some(root) = doc.as_object() else {
        cx.err(
            "$",
            "BAD_TYPE",
            "the file must be a mapping with connections, models, ... sections",
        );
        return (None, cx.findings);
    };
    check_keys(root, &SECTIONS, "$", &mut cx);
    let mut cat = Catalog::default();

    for (path, o) in items(root, "connections", &mut cx) {
        check_keys(
            o,
            &[
                "name",
                "provider",
                "base_url",
                "api_key",
                "api_key_encrypted",
                "active",
            ],
            &path,
            &mut cx,
        );
        let name = req_str(o, "name", &path, &mut cx);
        let provider = req_str(o, "provider", &path, &mut cx);
        let base_url = req_str(o, "base_url", &path, &mut cx);
        if let Some(u) = &base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            cx.err(
                format!("{path}.base_url"),
                "BAD_URL",
                "base_url must be the full http(s) chat-completions URL",
            );
        }
        let api_key = opt_str(o, "api_key", &path, &mut cx);
        let api_key_encrypted = match o.get("api_key_encrypted") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(_) => {
                cx.err(
                    format!("{path}.api_key_encrypted"),
                    "BAD_TYPE",
                    "expected the encrypted blob",
                );
                None
            }
        };
        if let Some(blob) = &api_key_encrypted
            && let Err(e) = crate::crypto::Keyring::format_of(blob)
        {
            cx.err(format!("{path}.api_key_encrypted"), e.code(), e.to_string());
        }
        match (&api_key, &api_key_encrypted) {
            (None, None) => cx.err(
                format!("{path}.api_key"),
                "MISSING_FIELD",
                "api_key (e.g. ${OPENAI_API_KEY}) or api_key_encrypted is required",
            ),
            (Some(_), Some(_)) => cx.err(
                &path,
                "CONFLICT",
                "give api_key or api_key_encrypted, not both",
            ),
            (Some(k), None) if is_placeholder(k) => cx.warn(
                format!("{path}.api_key"),
                "KEY_PLACEHOLDER",
                "the key is still a placeholder: fill it (or use ${ENV_VAR}) before `cfg gen`",
            ),
            (Some(k), None) if !k.starts_with("${") => cx.warn(
                format!("{path}.api_key"),
                "PLAIN_KEY_IN_FILE",
                "a plain key in a file ends up in git: prefer ${ENV_VAR}",
            ),
            _ => {}
        }
        if let (Some(name), Some(provider), Some(base_url)) = (name, provider, base_url) {
            cat.connections.push(Connection {
                name,
                provider,
                base_url,
                api_key,
                api_key_encrypted,
                active: opt_bool(o, "active", &path, &mut cx),
            });
        }
    }
    for (path, o) in items(root, "models", &mut cx) {
        check_keys(o, &["name", "connection"], &path, &mut cx);
        if let (Some(name), Some(connection)) = (
            req_str(o, "name", &path, &mut cx),
            req_str(o, "connection", &path, &mut cx),
        ) {
            cat.models.push(Model { name, connection });
        }
    }
    for (path, o) in items(root, "param_profiles", &mut cx) {
        check_keys(o, &["name", "params"], &path, &mut cx);
        let name = req_str(o, "name", &path, &mut cx);
        let params = opt_obj(o, "params", &path, &mut cx).unwrap_or_default();
        for (k, v) in &params {
            let ok = match k.as_str() {
                "TEMPERATURE" | "TOP_P" | "FREQUENCY_PENALTY" | "PRESENCE_PENALTY" => v.is_number(),
                "MAX_TOKENS" | "N" => v.as_u64().is_some_and(|n| n > 0),
                "STREAM" | "JSON_SCHEMA_ENFORCE" | "ENFORCE_NO_ENGLISH" => {
                    crate::request::value_flag(v).is_some()
                }
                "STOP" => v.is_string() || v.is_array(),
                _ => true,
            };
            if !ok {
                cx.err(
                    format!("{path}.params.{k}"),
                    "BAD_PARAM",
                    format!("{k} has the wrong type ({v})"),
                );
            }
        }
        if let Some(name) = name {
            cat.param_profiles.push(ParamProfile { name, params });
        }
    }
    for (path, o) in items(root, "prompts", &mut cx) {
        check_keys(
            o,
            &[
                "name",
                "version",
                "messages",
                "response_format",
                "variables",
                "description",
            ],
            &path,
            &mut cx,
        );
        let name = req_str(o, "name", &path, &mut cx);
        let version = req_str(o, "version", &path, &mut cx);
        let messages = o.get("messages").cloned();
        match &messages {
            Some(m) => check_messages(m, &format!("{path}.messages"), &mut cx),
            None => cx.err(
                format!("{path}.messages"),
                "MISSING_FIELD",
                "messages is required",
            ),
        }
        let response_format = o.get("response_format").filter(|v| !v.is_null()).cloned();
        if let Some(rf) = &response_format {
            check_response_format(rf, &format!("{path}.response_format"), &mut cx);
        }
        let variables = opt_obj(o, "variables", &path, &mut cx);
        if let (Some(name), Some(version), Some(messages)) = (name, version, messages) {
            cat.prompts.push(Prompt {
                name,
                version,
                messages,
                response_format,
                variables,
                description: opt_str(o, "description", &path, &mut cx),
            });
        }
    }
    for (path, o) in items(root, "configs", &mut cx) {
        check_keys(
            o,
            &[
                "config_key",
                "model",
                "prompt",
                "param_profile",
                "description",
                "active",
            ],
            &path,
            &mut cx,
        );
        let key = req_str(o, "config_key", &path, &mut cx);
        let model = req_str(o, "model", &path, &mut cx);
        let prompt = o
            .get("prompt")
            .filter(|v| !v.is_null())
            .and_then(|v| prompt_ref(v, &format!("{path}.prompt"), &mut cx));
        if o.get("prompt").is_none() {
            cx.warn(
                format!("{path}.prompt"),
                "NO_PROMPT",
                "a config without a prompt only runs inside a route that has one",
            );
        }
        if let (Some(config_key), Some(model)) = (key, model) {
            cat.configs.push(Config {
                config_key,
                model,
                prompt,
                param_profile: opt_str(o, "param_profile", &path, &mut cx),
                description: opt_str(o, "description", &path, &mut cx),
                active: opt_bool(o, "active", &path, &mut cx),
            });
        }
    }
    for (path, o) in items(root, "routes", &mut cx) {
        check_keys(
            o,
            &[
                "project",
                "route_key",
                "policy",
                "policy_config",
                "variables",
                "prompt",
                "param_profile",
                "response_format",
                "active",
                "members",
            ],
            &path,
            &mut cx,
        );
        let project = req_str(o, "project", &path, &mut cx);
        let route_key = req_str(o, "route_key", &path, &mut cx);
        let policy = opt_str(o, "policy", &path, &mut cx).unwrap_or_else(primary_backup);
        if !matches!(
            policy.as_str(),
            "primary_backup" | "round_robin" | "weighted"
        ) {
            cx.err(
                format!("{path}.policy"),
                "BAD_POLICY",
                format!("{policy:?} is not primary_backup, round_robin or weighted"),
            );
        }
        let policy_config = o.get("policy_config").filter(|v| !v.is_null()).cloned();
        if let Some(pc) = &policy_config {
            match pc.as_object() {
                Some(m) => check_keys(
                    m,
                    &[
                        "failover_on_non_retryable",
                        "failover_on_content",
                        "max_members",
                        "json_schema_enforce",
                        "enforce_no_english",
                    ],
                    &format!("{path}.policy_config"),
                    &mut cx,
                ),
                None => cx.err(
                    format!("{path}.policy_config"),
                    "BAD_TYPE",
                    "expected a mapping",
                ),
            }
        }
        let response_format = o.get("response_format").filter(|v| !v.is_null()).cloned();
        if let Some(rf) = &response_format {
            check_response_format(rf, &format!("{path}.response_format"), &mut cx);
        }
        let prompt = o
            .get("prompt")
            .filter(|v| !v.is_null())
            .and_then(|v| prompt_ref(v, &format!("{path}.prompt"), &mut cx));
        let members = members(o, &path, &mut cx);
        if members.is_empty() {
            cx.warn(
                format!("{path}.members"),
                "NO_MEMBERS",
                "a route without members fails with NO_ACTIVE_MEMBERS",
            );
        }
        if let (Some(project), Some(route_key)) = (project, route_key) {
            cat.routes.push(Route {
                project,
                route_key,
                policy,
                policy_config,
                variables: opt_obj(o, "variables", &path, &mut cx),
                prompt,
                param_profile: opt_str(o, "param_profile", &path, &mut cx),
                response_format,
                active: opt_bool(o, "active", &path, &mut cx),
                members,
            });
        }
    }
    references(&cat, known, &mut cx);
    let has_errors = cx.findings.iter().any(|f| f.severity == Severity::Error);
    (if has_errors { None } else { Some(cat) }, cx.findings)
}

/// Reads the predecessor's route-pool YAML (`project_name`, `route_key`, `policy`, `members`
/// with `config_key`, `priority`, `weight`; one route, or a list under `routes`) as catalog
/// routes. Every problem is reported with its path.
pub fn route_pool(doc: &Value) -> (Option<Vec<Route>>, Vec<Finding>) {
    let mut cx = Ctx {
        findings: Vec::new(),
    };
    let list: Vec<(String, &Map<String, Value>)> = match doc {
        Value::Object(o) if o.contains_key("routes") => {
            check_keys(o, &["routes"], "$", &mut cx);
            items(o, "routes", &mut cx)
        }
        Value::Object(o) => vec![("$".to_owned(), o)],
        _ => {
            cx.err(
                "$",
                "BAD_TYPE",
                "expected a mapping with project_name, route_key, policy and members",
            );
            Vec::new()
        }
    };
    let mut routes = Vec::new();
    for (path, o) in list {
        check_keys(
            o,
            &[
                "project_name",
                "project",
                "route_key",
                "policy",
                "policy_config",
                "members",
            ],
            &path,
            &mut cx,
        );
        let project = match o
            .get("project_name")
            .or_else(|| o.get("project"))
            .and_then(scalar_text)
        {
            Some(p) if !p.is_empty() => Some(p),
            _ => {
                cx.err(
                    format!("{path}.project_name"),
                    "MISSING_FIELD",
                    "project_name is required",
                );
                None
            }
        };
        let route_key = req_str(o, "route_key", &path, &mut cx);
        let policy = opt_str(o, "policy", &path, &mut cx).unwrap_or_else(primary_backup);
        if !matches!(
            policy.as_str(),
            "primary_backup" | "round_robin" | "weighted"
        ) {
            cx.err(
                format!("{path}.policy"),
                "BAD_POLICY",
                format!("{policy:?} is not primary_backup, round_robin or weighted"),
            );
        }
        let members = members(o, &path, &mut cx);
        if let (Some(project), Some(route_key)) = (project, route_key) {
            routes.push(Route {
                project,
                route_key,
                policy,
                policy_config: o.get("policy_config").filter(|v| !v.is_null()).cloned(),
                variables: None,
                prompt: None,
                param_profile: None,
                response_format: None,
                active: true,
                members,
            });
        }
    }
    let ok = !cx.findings.iter().any(|f| f.severity == Severity::Error);
    (ok.then_some(routes), cx.findings)
}

/// `<...>` placeholders from `cfg sample`.
pub fn is_placeholder(key: &str) -> bool {
    key.starts_with('<') && key.ends_with('>')
}

fn dupes(
    names: impl Iterator<Item = (usize, String)>,
    section: &str,
    field: &str,
    cx: &mut Ctx,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, n) in names {
        if !seen.insert(n.clone()) {
            cx.err(
                format!("{section}[{i}].{field}"),
                "DUPLICATE",
                format!("{n:?} is defined twice"),
            );
        }
    }
    seen
}

/// Checks the prompt and param profile an object at `path` refers to.
fn prompt_and_profile(
    path: &str,
    prompt: Option<&PromptRef>,
    profile: Option<&str>,
    prompts: &BTreeSet<String>,
    profiles: &BTreeSet<String>,
    cx: &mut Ctx,
) {
    if let Some(p) = prompt
        && !prompts.contains(&p.to_string())
    {
        cx.err(
            format!("{path}.prompt"),
            "UNKNOWN_REFERENCE",
            format!("no prompt {p} in this file"),
        );
    }
    if let Some(p) = profile
        && !profiles.contains(p)
    {
        cx.err(
            format!("{path}.param_profile"),
            "UNKNOWN_REFERENCE",
            format!("no param profile {p:?} in this file"),
        );
    }
}

fn references(cat: &Catalog, known: &Known, cx: &mut Ctx) {
    let mut conns = dupes(
        cat.connections.iter().map(|c| c.name.clone()).enumerate(),
        "connections",
        "name",
        cx,
    );
    let mut models = dupes(
        cat.models.iter().map(|m| m.name.clone()).enumerate(),
        "models",
        "name",
        cx,
    );
    let mut profiles = dupes(
        cat.param_profiles
            .iter()
            .map(|p| p.name.clone())
            .enumerate(),
        "param_profiles",
        "name",
        cx,
    );
    let mut prompts = dupes(
        cat.prompts
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .enumerate(),
        "prompts",
        "name",
        cx,
    );
    let mut configs = dupes(
        cat.configs.iter().map(|c| c.config_key.clone()).enumerate(),
        "configs",
        "config_key",
        cx,
    );
    conns.extend(known.connections.iter().cloned());
    models.extend(known.models.iter().cloned());
    profiles.extend(known.param_profiles.iter().cloned());
    prompts.extend(known.prompts.iter().cloned());
    configs.extend(known.configs.iter().cloned());
    dupes(
        cat.routes
            .iter()
            .map(|r| format!("{}/{}", r.project, r.route_key))
            .enumerate(),
        "routes",
        "route_key",
        cx,
    );
    for (i, m) in cat.models.iter().enumerate() {
        if !conns.contains(&m.connection) {
            cx.err(
                format!("models[{i}].connection"),
                "UNKNOWN_REFERENCE",
                format!(
                    "no connection named {:?} in this file (or the database, with --db-check)",
                    m.connection
                ),
            );
        }
    }
    let profile_params: BTreeMap<&str, &Map<String, Value>> = cat
        .param_profiles
        .iter()
        .map(|p| (p.name.as_str(), &p.params))
        .collect();
    let prompt_by_ref: BTreeMap<String, &Prompt> = cat
        .prompts
        .iter()
        .map(|p| (format!("{}@{}", p.name, p.version), p))
        .collect();
    for (i, c) in cat.configs.iter().enumerate() {
        if !models.contains(&c.model) {
            cx.err(
                format!("configs[{i}].model"),
                "UNKNOWN_REFERENCE",
                format!("no model named {:?} in this file", c.model),
            );
        }
        prompt_and_profile(
            &format!("configs[{i}]"),
            c.prompt.as_ref(),
            c.param_profile.as_deref(),
            &prompts,
            &profiles,
            cx,
        );
        // Placeholders that nothing in the file fills must come from the caller at run time.
        if let Some(prompt) = c
            .prompt
            .as_ref()
            .and_then(|p| prompt_by_ref.get(&p.to_string()))
        {
            let mut known: BTreeSet<String> =
                RUNTIME_VARS.iter().map(|s| (*s).to_owned()).collect();
            if let Some(v) = &prompt.variables {
                known.extend(v.keys().cloned());
            }
            if let Some(params) = c
                .param_profile
                .as_deref()
                .and_then(|p| profile_params.get(p))
            {
                known.extend(params.keys().cloned());
            }
            let mut strings = Vec::new();
            collect_strings(&prompt.messages, &mut strings);
            let missing: BTreeSet<String> = strings
                .iter()
                .flat_map(|s| placeholders(s))
                .filter(|p| !known.contains(p))
                .collect();
            if !missing.is_empty() {
                cx.warn(
                    format!("configs[{i}].prompt"),
                    "UNFILLED_PLACEHOLDER",
                    format!(
                        "{} has no default in the prompt or params: pass it at run time",
                        missing.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
    for (i, r) in cat.routes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (j, m) in r.members.iter().enumerate() {
            if !configs.contains(&m.config_key) {
                cx.err(
                    format!("routes[{i}].members[{j}].config_key"),
                    "UNKNOWN_REFERENCE",
                    format!("no config {:?} in this file", m.config_key),
                );
            }
            if !seen.insert(&m.config_key) {
                cx.err(
                    format!("routes[{i}].members[{j}].config_key"),
                    "DUPLICATE",
                    format!("{:?} is a member twice", m.config_key),
                );
            }
        }
        prompt_and_profile(
            &format!("routes[{i}]"),
            r.prompt.as_ref(),
            r.param_profile.as_deref(),
            &prompts,
            &profiles,
            cx,
        );
    }
}

/// A full-stack template that `verify` passes and `gen` applies once the key is filled.
pub fn sample(provider: &str) -> String {
    let (conn, base_url, key_env, model) = match provider {
        "openai" => (
            "openai-main",
            "https://api.openai.com/v1/chat/completions",
            "OPENAI_API_KEY",
            "gpt-4o-mini",
        ),
        "custom" => (
            "my-gateway",
            "https://llm-gateway.example.com/v1/chat/completions",
            "LLM_GATEWAY_API_KEY",
            "my-model",
        ),
        _ => (
            "openrouter-main",
            "https://openrouter.ai/api/v1/chat/completions",
            "OPENROUTER_API_KEY",
            "google/gemini-2.5-flash",
        ),
    };
    let catalog = json!({
        "connections": [{"name": conn, "provider": provider, "base_url": base_url, "api_key": format!("${{{key_env}}}")}],
        "models": [{"name": model, "connection": conn}],
        "param_profiles": [
            {"name": "json-strict", "params": {"TEMPERATURE": 0.2, "MAX_TOKENS": 800, "JSON_SCHEMA_ENFORCE": true}},
            {"name": "chat", "params": {"TEMPERATURE": 0.7, "MAX_TOKENS": 1000}}
        ],
        "prompts": [
            {"name": "summary", "version": "1", "description": "一句话中文摘要，JSON 输出",
             "messages": [
                {"role": "system", "content": "你是摘要助手。只输出 JSON：{\"摘要\": 字符串}，值只用中文。"},
                {"role": "user", "content": "请总结：{{TEXT}}"}
             ],
             "response_format": {"type": "json_schema", "json_schema": {"name": "summary", "schema": {"type": "object", "required": ["摘要"], "properties": {"摘要": {"type": "string"}}}}},
             "variables": {"TEXT": "今天发布顺利。"}},
            {"name": "chat", "version": "1",
             "messages": [{"role": "user", "content": "{{QUESTION}}"}],
             "variables": {"QUESTION": "你好"}},
            {"name": "describe-audio", "version": "1",
             "messages": [{"role": "user", "content": [
                {"type": "text", "text": "请转写并总结这段录音。"},
                {"type": "input_audio", "input_audio": {"data": "{{MEDIA_DATA}}", "format": "{{MEDIA_FORMAT}}"}}
             ]}]}
        ],
        "configs": [
            {"config_key": "summary_json", "model": model, "prompt": "summary@1", "param_profile": "json-strict", "description": "JSON summary"},
            {"config_key": "single_chat", "model": model, "prompt": {"name": "chat", "version": "1"}, "param_profile": "chat"},
            {"config_key": "audio_summary", "model": model, "prompt": "describe-audio@1"}
        ],
        "routes": [
            {"project": "demo_project", "route_key": "demo_route", "policy": "primary_backup",
             "policy_config": {"failover_on_content": true},
             "members": [{"config_key": "summary_json", "priority": 1, "weight": 1}, {"config_key": "single_chat", "priority": 2, "weight": 1}]}
        ]
    });
    let yaml = serde_yaml_ng::to_string(&catalog).unwrap_or_default();
    format!(
        "# ai-runner configuration catalog (generated by `ai-runner cfg sample --provider {provider}`).\n\
         # Keys come from the environment at `cfg gen` time: export {key_env}=... first.\n\
         # Check with `ai-runner cfg verify -f FILE`, preview with `ai-runner cfg gen -f FILE --dry-run`.\n{yaml}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> (Option<Catalog>, Vec<Finding>) {
        verify(&parse_yaml(yaml).unwrap())
    }

    fn errors(f: &[Finding]) -> Vec<(String, &'static str)> {
        f.iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| (f.path.clone(), f.code))
            .collect()
    }

    #[test]
    fn every_sample_verifies_without_errors() {
        for p in ["openrouter", "openai", "custom"] {
            let (cat, findings) = check(&sample(p));
            assert!(errors(&findings).is_empty(), "{p}: {findings:?}");
            let cat = cat.unwrap();
            assert_eq!(cat.configs.len(), 3);
            assert_eq!(
                cat.configs[1].prompt.as_ref().unwrap().to_string(),
                "chat@1",
                "the {{name, version}} spelling"
            );
            assert_eq!(
                cat.configs[0].prompt.as_ref().unwrap().to_string(),
                "summary@1",
                "the name@version spelling"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let yaml = r#"
connections:
  - name: c
    provider: p
    base_url: ftp://nope
    api_key: ${K}
    colour: blue
models:
  - name: m
    connection: missing-conn
prompts:
  - name: p
    version: 1
    messages: [{role: wizard, content: hi}]
    response_format: {type: xml}
configs:
  - config_key: a
    model: m
    prompt: p@2
  - config_key: a
    model: nope
    prompt: {name: p}
routes:
  - project: x
    route_key: r
    policy: random
    members: [{config_key: ghost, weight: -1}]
extra: 1
"#;
        let (cat, findings) = check(yaml);
        assert!(cat.is_none());
        let e = errors(&findings);
        for expected in [
            ("$.extra", "UNKNOWN_KEY"),
            ("connections[0].colour", "UNKNOWN_KEY"),
            ("connections[0].base_url", "BAD_URL"),
            ("models[0].connection", "UNKNOWN_REFERENCE"),
            ("prompts[0].messages[0].role", "BAD_MESSAGES"),
            ("prompts[0].response_format.type", "BAD_RESPONSE_FORMAT"),
            ("configs[0].prompt", "UNKNOWN_REFERENCE"),
            ("configs[1].config_key", "DUPLICATE"),
            ("configs[1].model", "UNKNOWN_REFERENCE"),
            ("configs[1].prompt", "BAD_PROMPT_REFERENCE"),
            ("routes[0].policy", "BAD_POLICY"),
            ("routes[0].members[0].weight", "BAD_TYPE"),
            ("routes[0].members[0].config_key", "UNKNOWN_REFERENCE"),
        ] {
            assert!(
                e.contains(&(expected.0.to_owned(), expected.1)),
                "missing {expected:?} in {e:?}"
            );
        }
    }

    #[test]
    fn placeholders_nothing_fills_and_plain_keys_are_warnings() {
        let yaml = r#"
connections: [{name: c, provider: p, base_url: "https://x/v1/chat/completions", api_key: sk-plain}]
models: [{name: m, connection: c}]
prompts: [{name: p, version: "1", messages: [{role: user, content: "{{A}} {{B}}"}], variables: {A: x}}]
configs: [{config_key: k, model: m, prompt: p@1}]
"#;
        let (cat, findings) = check(yaml);
        assert!(cat.is_some(), "{findings:?}");
        let w: Vec<_> = findings
            .iter()
            .map(|f| (f.code, f.message.clone()))
            .collect();
        assert!(
            w.iter()
                .any(|(c, m)| *c == "UNFILLED_PLACEHOLDER" && m.contains('B') && !m.contains("A,")),
            "{w:?}"
        );
        assert!(w.iter().any(|(c, _)| *c == "PLAIN_KEY_IN_FILE"), "{w:?}");
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let f = parse_yaml("connections: [\n  - a: b\n  c").unwrap_err();
        assert_eq!(f.code, "YAML_INVALID");
        assert!(f.path.starts_with("line "), "{f:?}");
    }
}
