//! The catalog's typed objects: what a verified YAML file holds and what the database exports.
//!
//! Invariants: serde field names are the YAML's; defaults match the database's (active, priority
//! and weight 1, `primary_backup`), and fields at their default are not written, so an export
//! stays short and re-imports unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A prompt reference: `name@version` or `{name, version}` (both spellings deserialize).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PromptRefText")]
pub struct PromptRef {
    /// Prompt name.
    pub name: String,
    /// Prompt version.
    pub version: String,
}

/// The two spellings of a prompt reference.
#[derive(Deserialize)]
#[serde(untagged)]
enum PromptRefText {
    At(String),
    Parts { name: String, version: Value },
}

impl TryFrom<PromptRefText> for PromptRef {
    type Error = String;

    fn try_from(t: PromptRefText) -> Result<Self, String> {
        match t {
            PromptRefText::At(s) => match s.rsplit_once('@') {
                Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok(PromptRef {
                    name: n.to_owned(),
                    version: v.to_owned(),
                }),
                _ => Err(format!("{s:?} is not name@version")),
            },
            PromptRefText::Parts { name, version } => Ok(PromptRef {
                name,
                version: match version {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            }),
        }
    }
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
    /// Plain key, `${ENV}` reference or `<placeholder>` (the predecessor's `api_key_plain` is
    /// read into this field).
    #[serde(
        default,
        alias = "api_key_plain",
        skip_serializing_if = "Option::is_none"
    )]
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
    /// Model name (empty when only the legacy `model_id` is given).
    #[serde(default)]
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
    /// The predecessor's legacy form: `ai_model.id` instead of `model` (resolved to the name
    /// against the database when applying; never exported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
    /// Legacy `ai_prompt.id` instead of `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<i64>,
    /// Legacy `ai_param_profile.id` instead of `param_profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_profile_id: Option<i64>,
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
/// The default policy's stored name.
pub(crate) fn primary_backup() -> String {
    "primary_backup".into()
}
