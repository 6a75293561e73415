//! Verifying a catalog file: one reader per object kind, each reporting every problem with its
//! YAML path; then the cross-references ([`super::refs`]).
//!
//! Invariants: [`verify`] reports every problem at once; a file without errors yields a typed
//! [`Catalog`] that applies; warnings never block.

use serde_json::{Map, Value};

use super::fields::{
    Ctx, check_keys, has_errors, items, members, opt_bool, opt_obj, opt_str, prompt_ref, req_str,
};
use super::refs::{Known, references};
use super::types::{
    Catalog, Config, Connection, Model, ParamProfile, Prompt, Route, primary_backup,
};
use super::{Finding, is_placeholder};
use crate::code::Code;
use crate::run::policy::{Failover, Policy};
use crate::template::placeholders;

/// The sections; `evals` (datasets and suites) is read by `eval::suite::catalog_evals`,
/// `prices` by [`super::prices::catalog_prices`].
const SECTIONS: [&str; 8] = [
    "connections",
    "models",
    "param_profiles",
    "prompts",
    "configs",
    "routes",
    "evals",
    "prices",
];

/// Checks a parsed catalog document; returns the typed catalog (when it has no errors) and
/// every finding.
pub fn verify(doc: &Value) -> (Option<Catalog>, Vec<Finding>) {
    verify_with(doc, &Known::default())
}

/// [`verify`], where references may also point at objects in `known` (the database).
pub fn verify_with(doc: &Value, known: &Known) -> (Option<Catalog>, Vec<Finding>) {
    let mut cx = Ctx::default();
    let Some(root) = doc.as_object() else {
        cx.err(
            "$",
            Code::BadType,
            "the file must be a mapping with connections, models, ... sections",
        );
        return (None, cx.findings);
    };
    check_keys(root, &SECTIONS, "$", &mut cx);
    let cat = Catalog {
        connections: read(root, "connections", connection, &mut cx),
        models: read(root, "models", model, &mut cx),
        param_profiles: read(root, "param_profiles", param_profile, &mut cx),
        prompts: read(root, "prompts", prompt, &mut cx),
        configs: read(root, "configs", config, &mut cx),
        routes: read(root, "routes", route, &mut cx),
    };
    references(&cat, known, &mut cx);
    let ok = !has_errors(&cx);
    (ok.then_some(cat), cx.findings)
}

/// Reads every item of one section with its kind's reader.
fn read<T>(
    root: &Map<String, Value>,
    section: &str,
    reader: fn(&Map<String, Value>, &str, &mut Ctx) -> Option<T>,
    cx: &mut Ctx,
) -> Vec<T> {
    items(root, section, cx)
        .into_iter()
        .filter_map(|(path, o)| reader(o, &path, cx))
        .collect()
}

/// A provider endpoint: name, provider, full URL, and its key as a `${ENV}` reference, a plain key
/// (`api_key` or the predecessor's `api_key_plain`) or an encrypted blob.
fn connection(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<Connection> {
    let path = path.to_owned();
    check_keys(
        o,
        &[
            "name",
            "provider",
            "base_url",
            "api_key",
            "api_key_plain",
            "api_key_encrypted",
            "active",
        ],
        &path,
        cx,
    );
    let name = req_str(o, "name", &path, cx);
    let provider = req_str(o, "provider", &path, cx);
    let base_url = req_str(o, "base_url", &path, cx);
    if let Some(u) = &base_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        cx.err(
            format!("{path}.base_url"),
            Code::BadUrl,
            "base_url must be the full http(s) chat-completions URL",
        );
    } else if let Some(u) = &base_url
        && let Some(host) = metadata_host(u)
    {
        cx.err(
            format!("{path}.base_url"),
            Code::BadUrl,
            format!(
                "base_url points at {host}, a link-local or cloud metadata address; providers are never reached there"
            ),
        );
    }
    // The predecessor's files spell a plain key `api_key_plain`; it means the same as `api_key`.
    let key_field = if o.contains_key("api_key_plain") {
        "api_key_plain"
    } else {
        "api_key"
    };
    if o.contains_key("api_key") && o.contains_key("api_key_plain") {
        cx.err(
            &path,
            Code::Conflict,
            "give api_key or api_key_plain, not both",
        );
    }
    let api_key = opt_str(o, key_field, &path, cx);
    let api_key_encrypted = match o.get("api_key_encrypted") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            cx.err(
                format!("{path}.api_key_encrypted"),
                Code::BadType,
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
            Code::MissingField,
            "api_key (e.g. ${OPENAI_API_KEY}) or api_key_encrypted is required",
        ),
        (Some(_), Some(_)) => cx.err(
            &path,
            Code::Conflict,
            "give api_key or api_key_encrypted, not both",
        ),
        (Some(k), None) if is_placeholder(k) => cx.warn(
            format!("{path}.{key_field}"),
            Code::KeyPlaceholder,
            "the key is still a placeholder: fill it (or use ${ENV_VAR}) before `cfg gen`",
        ),
        (Some(k), None) if !k.starts_with("${") => cx.warn(
            format!("{path}.{key_field}"),
            Code::PlainKeyInFile,
            "a plain key in a file ends up in git: prefer ${ENV_VAR}",
        ),
        _ => {}
    }
    if let (Some(name), Some(provider), Some(base_url)) = (name, provider, base_url) {
        return Some(Connection {
            name,
            provider,
            base_url,
            api_key,
            api_key_encrypted,
            active: opt_bool(o, "active", &path, cx),
        });
    }
    None
}

/// A model name bound to a connection.
fn model(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<Model> {
    let path = path.to_owned();
    check_keys(o, &["name", "connection"], &path, cx);
    if let (Some(name), Some(connection)) = (
        req_str(o, "name", &path, cx),
        req_str(o, "connection", &path, cx),
    ) {
        return Some(Model { name, connection });
    }
    None
}

/// A param profile; known parameters must have their type.
fn param_profile(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<ParamProfile> {
    let path = path.to_owned();
    check_keys(o, &["name", "params"], &path, cx);
    let name = req_str(o, "name", &path, cx);
    let params = opt_obj(o, "params", &path, cx).unwrap_or_default();
    for (k, v) in &params {
        let ok = match k.as_str() {
            "TEMPERATURE" | "TOP_P" | "FREQUENCY_PENALTY" | "PRESENCE_PENALTY" => v.is_number(),
            "MAX_TOKENS" | "N" => v.as_u64().is_some_and(|n| n > 0),
            "STREAM" | "JSON_SCHEMA_ENFORCE" | "ENFORCE_NO_ENGLISH" | "ALLOW_STREAM" => {
                crate::config::value_flag(v).is_some()
            }
            "STOP" => v.is_string() || v.is_array(),
            // The OpenAI-compatible API's caller fields (names, a comma-separated string, "*").
            "CALLER_PARAMS" => {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
            _ => true,
        };
        if !ok {
            cx.err(
                format!("{path}.params.{k}"),
                Code::BadParam,
                format!("{k} has the wrong type ({v})"),
            );
        }
    }
    if let Some(name) = name {
        return Some(ParamProfile { name, params });
    }
    None
}

/// A prompt: messages (with media parts), response format, default variables.
fn prompt(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<Prompt> {
    let path = path.to_owned();
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
        cx,
    );
    let name = req_str(o, "name", &path, cx);
    let version = req_str(o, "version", &path, cx);
    let messages = o.get("messages").cloned();
    match &messages {
        Some(m) => check_messages(m, &format!("{path}.messages"), cx),
        None => cx.err(
            format!("{path}.messages"),
            Code::MissingField,
            "messages is required",
        ),
    }
    let response_format = o.get("response_format").filter(|v| !v.is_null()).cloned();
    if let Some(rf) = &response_format {
        check_response_format(rf, &format!("{path}.response_format"), cx);
    }
    let variables = opt_obj(o, "variables", &path, cx);
    if let (Some(name), Some(version), Some(messages)) = (name, version, messages) {
        return Some(Prompt {
            name,
            version,
            messages,
            response_format,
            variables,
            description: opt_str(o, "description", &path, cx),
        });
    }
    None
}

/// A config: model (or the legacy `model_id`), prompt, param profile.
fn config(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<Config> {
    let path = path.to_owned();
    check_keys(
        o,
        &[
            "config_key",
            "model",
            "prompt",
            "param_profile",
            "description",
            "active",
            "model_id",
            "prompt_id",
            "param_profile_id",
        ],
        &path,
        cx,
    );
    let key = req_str(o, "config_key", &path, cx);
    // The predecessor's legacy form names rows by id; the ids are resolved when applying.
    let model_id = opt_id(o, "model_id", &path, cx);
    let prompt_id = opt_id(o, "prompt_id", &path, cx);
    let param_profile_id = opt_id(o, "param_profile_id", &path, cx);
    let model = match (o.contains_key("model"), model_id) {
        (false, Some(_)) => Some(String::new()),
        _ => req_str(o, "model", &path, cx),
    };
    for (name, id) in [
        ("model", model_id),
        ("prompt", prompt_id),
        ("param_profile", param_profile_id),
    ] {
        if id.is_some() && o.contains_key(name) {
            cx.err(
                format!("{path}.{name}_id"),
                Code::Conflict,
                format!("give {name} or {name}_id, not both"),
            );
        }
    }
    let prompt = o
        .get("prompt")
        .filter(|v| !v.is_null())
        .and_then(|v| prompt_ref(v, &format!("{path}.prompt"), cx));
    if o.get("prompt").is_none() && prompt_id.is_none() {
        cx.warn(
            format!("{path}.prompt"),
            Code::NoPrompt,
            "a config without a prompt only runs inside a route that has one",
        );
    }
    if let (Some(config_key), Some(model)) = (key, model) {
        return Some(Config {
            config_key,
            model,
            prompt,
            param_profile: opt_str(o, "param_profile", &path, cx),
            description: opt_str(o, "description", &path, cx),
            active: opt_bool(o, "active", &path, cx),
            model_id,
            prompt_id,
            param_profile_id,
        });
    }
    None
}

/// A legacy row id: a positive whole number.
fn opt_id(o: &Map<String, Value>, key: &str, path: &str, cx: &mut Ctx) -> Option<i64> {
    match o.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64().filter(|n| *n > 0) {
            Some(n) => Some(n),
            None => {
                cx.err(
                    format!("{path}.{key}"),
                    Code::BadType,
                    "expected a positive row id",
                );
                None
            }
        },
    }
}

/// A route: policy and its options (the rules of [`crate::run::policy`]), overrides, members.
fn route(o: &Map<String, Value>, path: &str, cx: &mut Ctx) -> Option<Route> {
    let path = path.to_owned();
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
        cx,
    );
    let project = req_str(o, "project", &path, cx);
    let route_key = req_str(o, "route_key", &path, cx);
    // Scopes and budgets name routes as `project/route_key` and match `*` as a wildcard: a
    // project named `lab/secret` would be reached by a key scoped `lab/*`.
    if let Some(p) = &project
        && p.contains(['/', '*'])
    {
        cx.err(
            format!("{path}.project"),
            Code::BadType,
            format!("project name {p:?} may not contain '/' or '*'"),
        );
    }
    let policy = opt_str(o, "policy", &path, cx).unwrap_or_else(primary_backup);
    check_policy(o, &policy, &path, cx);
    let policy_config = o.get("policy_config").filter(|v| !v.is_null()).cloned();
    let response_format = o.get("response_format").filter(|v| !v.is_null()).cloned();
    if let Some(rf) = &response_format {
        check_response_format(rf, &format!("{path}.response_format"), cx);
    }
    let prompt = o
        .get("prompt")
        .filter(|v| !v.is_null())
        .and_then(|v| prompt_ref(v, &format!("{path}.prompt"), cx));
    let members = members(o, &path, cx);
    if members.is_empty() {
        cx.warn(
            format!("{path}.members"),
            Code::NoMembers,
            "a route without members fails with NO_ACTIVE_MEMBERS",
        );
    }
    if let (Some(project), Some(route_key)) = (project, route_key) {
        return Some(Route {
            project,
            route_key,
            policy,
            policy_config,
            variables: opt_obj(o, "variables", &path, cx),
            prompt,
            param_profile: opt_str(o, "param_profile", &path, cx),
            response_format,
            active: opt_bool(o, "active", &path, cx),
            members,
        });
    }
    None
}

/// Checks a route's policy and `policy_config` against the rules the runner applies
/// ([`Policy::from_name`], [`Failover::KEYS`]): one definition for both.
pub(crate) fn check_policy(o: &Map<String, Value>, policy: &str, path: &str, cx: &mut Ctx) {
    if Policy::from_name(policy).is_none() {
        cx.err(
            format!("{path}.policy"),
            Code::BadPolicy,
            format!("{policy:?} is not {}", Policy::NAMES.join(", ")),
        );
    }
    match o.get("policy_config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            let at = format!("{path}.policy_config");
            check_keys(m, &Failover::KEYS, &at, cx);
            for (k, v) in m {
                if let Err(why) = Failover::check(k, v) {
                    cx.err(format!("{at}.{k}"), Code::BadType, why);
                }
            }
        }
        Some(_) => cx.err(
            format!("{path}.policy_config"),
            Code::BadType,
            "expected a mapping",
        ),
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
                        Code::BadJsonSchema,
                        e.to_string(),
                    );
                }
            }
            None => cx.err(
                format!("{path}.json_schema.schema"),
                Code::MissingField,
                "a json_schema response_format needs json_schema.schema",
            ),
        },
        other => cx.err(
            format!("{path}.type"),
            Code::BadResponseFormat,
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
                cx.err(
                    path,
                    Code::BadMessages,
                    "an object needs a \"messages\" list",
                );
                return;
            }
        },
        _ => {
            cx.err(path, Code::BadMessages, "expected a list of messages");
            return;
        }
    };
    for (i, m) in list.iter().enumerate() {
        let mp = format!("{path}[{i}]");
        let Some(o) = m.as_object() else {
            cx.err(
                mp,
                Code::BadMessages,
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
                Code::BadMessages,
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
                                Code::UnknownPartType,
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
                        cx.err(pp, Code::BadMediaPart, "a media part needs an http(s)/data URL or a {{PLACEHOLDER}} filled at run time");
                    }
                }
            }
            None if o.get("role").and_then(Value::as_str) == Some("assistant") => {}
            _ => cx.err(
                format!("{mp}.content"),
                Code::BadMessages,
                "content must be a string or a list of parts",
            ),
        }
    }
}

/// The host of `url` when it is a link-local address or a cloud instance-metadata endpoint
/// (169.254.0.0/16 holds AWS's, GCP's and Azure's, fe80::/10, AWS's IPv6 `fd00:ec2::254`,
/// Alibaba's `100.100.100.200`): no provider lives there, and a key sent there is a key lost.
/// Loopback and private ranges stay allowed (local and in-VPC models).
fn metadata_host(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let bad = match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        std::net::IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    };
    bad.then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Severity, parse_yaml, sample};

    fn check(yaml: &str) -> (Option<Catalog>, Vec<Finding>) {
        verify(&parse_yaml(yaml).unwrap())
    }

    fn errors(f: &[Finding]) -> Vec<(String, &'static str)> {
        f.iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| (f.path.clone(), f.code.as_str()))
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
    fn metadata_and_link_local_base_urls_are_refused_and_local_ones_are_not() {
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://100.100.100.200/latest/meta-data/",
            "http://[fe80::1]/v1/chat/completions",
            "http://[fd00:ec2::254]/latest",
            "http://[::ffff:169.254.170.2]/v2/credentials",
        ] {
            assert!(metadata_host(bad).is_some(), "{bad}");
        }
        for fine in [
            "http://127.0.0.1:8080/v1/chat/completions",
            "http://10.0.0.5/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions",
            "http://[::1]:9/v1",
        ] {
            assert_eq!(metadata_host(fine), None, "{fine}");
        }
        let yaml = "connections: [{name: c, provider: p, base_url: 'http://169.254.169.254/v1', api_key: sk-1}]";
        let (_, findings) = check(yaml);
        assert!(
            errors(&findings).contains(&("connections[0].base_url".to_owned(), "BAD_URL")),
            "{findings:?}"
        );
    }

    #[test]
    fn a_project_name_with_a_slash_or_a_star_is_refused() {
        for name in ["lab/secret", "lab*"] {
            let yaml = format!(
                "routes:\n  - project: \"{name}\"\n    route_key: r\n    members: [{{config: k}}]\n"
            );
            let (_, f) = check(&yaml);
            assert!(
                errors(&f).contains(&("routes[0].project".to_owned(), "BAD_TYPE")),
                "{name}: {f:?}"
            );
        }
        let (_, f) =
            check("routes:\n  - project: lab\n    route_key: r\n    members: [{config: k}]\n");
        assert!(
            !errors(&f).iter().any(|(p, _)| p == "routes[0].project"),
            "{f:?}"
        );
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

#[cfg(test)]
mod compat_tests {
    use super::*;
    use crate::catalog::parse_yaml;

    fn codes(yaml: &str) -> Vec<(String, Code)> {
        verify(&parse_yaml(yaml).unwrap())
            .1
            .into_iter()
            .map(|f| (f.path, f.code))
            .collect()
    }

    #[test]
    fn api_key_plain_means_api_key_and_both_at_once_conflict() {
        let one = codes(
            "connections: [{name: c, provider: p, base_url: 'https://x/v1', api_key_plain: sk-1}]",
        );
        assert_eq!(
            one,
            [("connections[0].api_key_plain".into(), Code::PlainKeyInFile)]
        );
        let both = codes(
            "connections: [{name: c, provider: p, base_url: 'https://x/v1', api_key: sk-1, api_key_plain: sk-2}]",
        );
        assert!(
            both.contains(&("connections[0]".into(), Code::Conflict)),
            "{both:?}"
        );
    }

    #[test]
    fn policy_options_are_checked_by_the_runners_own_rules() {
        let found = codes(
            "routes: [{project: p, route_key: r, policy: fastest, policy_config: {max_members: 0, failover_on_content: maybe, colour: red}, members: [{config_key: k}]}]",
        );
        for expected in [
            ("routes[0].policy", Code::BadPolicy),
            ("routes[0].policy_config.max_members", Code::BadType),
            ("routes[0].policy_config.failover_on_content", Code::BadType),
            ("routes[0].policy_config.colour", Code::UnknownKey),
        ] {
            assert!(
                found.contains(&(expected.0.into(), expected.1)),
                "{expected:?} in {found:?}"
            );
        }
    }

    #[test]
    fn legacy_ids_need_no_names_and_conflict_with_them() {
        let ok =
            codes("configs: [{config_key: k, model_id: 1, prompt_id: 2, param_profile_id: 3}]");
        assert!(ok.is_empty(), "{ok:?}");
        let both = codes("configs: [{config_key: k, model: m, model_id: 1, prompt_id: 0}]");
        assert!(
            both.contains(&("configs[0].model_id".into(), Code::Conflict)),
            "{both:?}"
        );
        assert!(
            both.contains(&("configs[0].prompt_id".into(), Code::BadType)),
            "{both:?}"
        );
    }
}
