//! The configuration catalog as YAML: what `ai-runner cfg sample / verify / gen / export` read
//! and write, so a team can keep its whole configuration in git and apply it from CI.
//!
//! Shape (every section optional):
//!
//! ```yaml
//! connections:    [{name, provider, base_url, api_key | api_key_plain | api_key_encrypted, active}]
//! models:         [{name, connection}]
//! param_profiles: [{name, params}]
//! prompts:        [{name, version, messages, response_format, variables, description}]
//! configs:        [{config_key, model, prompt: "name@version" | {name, version}, param_profile, description, active}]
//!                 (or the predecessor's legacy form with model_id / prompt_id / param_profile_id)
//! routes:         [{project, route_key, policy, policy_config, variables, prompt, param_profile,
//!                   response_format, active, members: [{config_key, priority, weight, active}]}]
//! ```
//!
//! Map: [`types`] (the typed objects), [`fields`] (field readers that collect findings),
//! [`verify`] (one reader per object kind), [`refs`] (cross-references), [`route_pool`] (the
//! predecessor's pool file), [`plan`] (what applying would change: pure), [`sample`] (the
//! template). Writing a plan to the database is `store::catalog`'s job.
//!
//! Invariants: [`verify`] reports every problem at once, each with its YAML path; a file that
//! verifies applies; a file exported from a database verifies and re-applies with no change.

pub(crate) mod fields;
pub mod plan;
pub mod prices;
pub mod refs;
pub mod route_pool;
pub mod sample;
pub mod types;
pub mod verify;

use serde::Serialize;
use serde_json::Value;

use crate::code::Code;

pub use plan::{Action, ApplyError, PlanItem, PlanKind, Snapshot, env_reference, plan, plan_with};
pub use refs::Known;
pub use route_pool::route_pool;
pub use sample::sample;
pub use types::{
    Catalog, Config, Connection, Member, Model, ParamProfile, Prompt, PromptRef, Route,
};
pub use verify::{verify, verify_with};

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
    pub code: Code,
    /// What is wrong.
    pub message: String,
}

/// Parses YAML text into a JSON value (YAML 1.2 via serde_yaml_ng), or a finding.
pub fn parse_yaml(text: &str) -> Result<Value, Finding> {
    if let Some(why) = too_complex(text) {
        return Err(Finding {
            severity: Severity::Error,
            path: "$".into(),
            code: Code::YamlTooComplex,
            message: why,
        });
    }
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| Finding {
        severity: Severity::Error,
        path: e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "$".into()),
        code: Code::YamlInvalid,
        message: e.to_string(),
    })
}

/// The largest YAML file read.
pub const YAML_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The deepest nesting of flow collections (`[`, `{`) read.
pub const YAML_MAX_DEPTH: usize = 64;

/// Why a YAML text is refused before parsing, if it is: too large, or flow collections nested
/// too deep (counted over brackets outside comments; brackets inside quoted text count too,
/// which only ever overestimates).
fn too_complex(text: &str) -> Option<String> {
    if text.len() > YAML_MAX_BYTES {
        return Some(format!(
            "the file is {} bytes; at most {YAML_MAX_BYTES} are read",
            text.len()
        ));
    }
    let mut depth: usize = 0;
    for line in text.lines() {
        let mut prev = ' ';
        for c in line.chars() {
            if c == '#' && prev.is_whitespace() {
                break;
            }
            match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > YAML_MAX_DEPTH {
                        return Some(format!(
                            "flow collections nest deeper than {YAML_MAX_DEPTH}"
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    None
}

/// `<...>` placeholders from `cfg sample`.
pub fn is_placeholder(key: &str) -> bool {
    key.starts_with('<') && key.ends_with('>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_and_huge_files_are_refused_before_parsing() {
        let deep = format!(
            "connections: {}{}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let f = parse_yaml(&deep).unwrap_err();
        assert_eq!(f.code, Code::YamlTooComplex);
        let huge = format!("a: \"{}\"", "x".repeat(YAML_MAX_BYTES));
        assert_eq!(parse_yaml(&huge).unwrap_err().code, Code::YamlTooComplex);
        // Ordinary nesting, and brackets in comments, are fine.
        let fine = format!(
            "a: {}1{} # {}",
            "[".repeat(10),
            "]".repeat(10),
            "[".repeat(100)
        );
        assert!(parse_yaml(&fine).is_ok());
    }
}
