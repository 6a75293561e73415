//! The OpenAI Chat Completions protocol over configs and routes: what an OpenAI SDK sends is
//! parsed here into a [`ChatRequest`], run through the runner like any run-once or route call
//! ([`chat`]), and the result rendered back as OpenAI documents it ([`render`], errors in
//! [`error`]). The edges (`ai-runner serve`, the functions' `/v1/*`) only move bytes.
//!
//! `model` names what runs: a config key, or `route:<project>/<route_key>`. The config's prompt
//! is rendered with the caller's `variables` (the SDKs send them through `extra_body`), then the
//! caller's `messages` follow; the caller's fields are [`crate::request::CALLER_FIELDS`], and the
//! config's params pin them (see [`crate::request`]). A field outside that list is ignored, or
//! refused when `OPENAI_UNKNOWN_FIELDS=refuse`.
//!
//! Invariants: a request that does not parse is refused before anything is resolved or called
//! (no audit row, as for any call whose config was never resolved); a parsed one is an ordinary
//! audited run (one row per member attempt, with the caller on it); the answer's `id` is the
//! run's trace id, and its `model` the provider's.

pub mod error;
pub mod render;
pub mod stream;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use error::ApiError;

use crate::code::Code;
use crate::config::OpenAiSettings;
use crate::model::access::Action;
use crate::ports::{Provider, Store};
use crate::request::{CALLER_FIELDS, CallerTurn};
use crate::run::{RunContext, RunResult, Runner, Variables};

/// The `model` prefix that names a route.
pub const ROUTE_PREFIX: &str = "route:";

/// The roles a message may have (OpenAI's, `developer` and the legacy `function` included).
const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// What a request's `model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A config, by its key.
    Config(String),
    /// A route of a project.
    Route {
        /// `ai_project_v2.name`.
        project: String,
        /// `ai_route_v2.route_key`.
        route_key: String,
    },
}

impl Target {
    /// Reads a `model` value: `route:<project>/<route_key>`, else a config key.
    pub fn parse(model: &str) -> Option<Self> {
        let model = model.trim();
        if model.is_empty() {
            return None;
        }
        match model.strip_prefix(ROUTE_PREFIX) {
            Some(rest) => {
                let (project, route_key) = rest.split_once('/')?;
                (!project.is_empty() && !route_key.is_empty()).then(|| Self::Route {
                    project: project.to_owned(),
                    route_key: route_key.to_owned(),
                })
            }
            None => Some(Self::Config(model.to_owned())),
        }
    }

    /// The id `/v1/models` lists it under (what a caller puts in `model`).
    pub fn model_id(&self) -> String {
        match self {
            Self::Config(key) => key.clone(),
            Self::Route { project, route_key } => format!("{ROUTE_PREFIX}{project}/{route_key}"),
        }
    }

    /// The project and route key a key-call row names (`-` and the config key for a config).
    pub fn logged_names(&self) -> (&str, &str) {
        match self {
            Self::Config(key) => ("-", key),
            Self::Route { project, route_key } => (project, route_key),
        }
    }

    /// What an access key must be allowed to do to run it.
    pub fn action(&self) -> Action {
        match self {
            Self::Config(key) => Action::Config(key.clone()),
            Self::Route { project, route_key } => Action::Route {
                project: project.clone(),
                route_key: route_key.clone(),
                dry_run: false,
            },
        }
    }
}

/// A parsed `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// What runs.
    pub target: Target,
    /// `variables`: the config prompt's `{{NAME}}` values.
    pub variables: Variables,
    /// The caller's messages, fields and `stream` (shared with the run's context, not copied).
    pub turn: Arc<CallerTurn>,
    /// `stream_options.include_usage`: the stream ends with a usage chunk.
    pub include_usage: bool,
}

/// Parses a request body. Every refusal names the field (`param`) it is about.
pub fn parse(body: &[u8], settings: &OpenAiSettings) -> Result<ChatRequest, ApiError> {
    if body.len() > settings.max_body_bytes {
        return Err(too_large(settings.max_body_bytes));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            Code::InvalidInput,
            format!("the request body is not valid JSON ({e})"),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::new(
            Code::InvalidInput,
            "the request body must be a JSON object",
        ));
    };
    let model = match fields.remove("model") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(bad("model", "`model` must be a string")),
        None => return Err(bad("model", "`model` is required")),
    };
    let target = Target::parse(&model).ok_or_else(|| unknown_model(&model))?;
    let messages = match fields.remove("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err(bad("messages", "`messages` must be an array")),
        None => return Err(bad("messages", "`messages` is required")),
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !m.is_object() || !role.is_some_and(|r| ROLES.contains(&r)) {
            return Err(bad(
                &format!("messages[{i}].role"),
                &format!(
                    "messages[{i}] must be an object whose `role` is one of {}",
                    ROLES.join(", ")
                ),
            ));
        }
        match m.get("content") {
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Err(bad(
                    &format!("messages[{i}].content"),
                    &format!("messages[{i}].content must be a string, an array of parts or null"),
                ));
            }
        }
    }
    let stream = match fields.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad("stream", "`stream` must be a boolean")),
    };
    let variables = match fields.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v,
        Some(_) => {
            return Err(bad(
                "variables",
                "`variables` must be an object of the prompt's {{NAME}} values",
            ));
        }
    };
    let include_usage = match fields.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    "stream_options.include_usage",
                    "`stream_options.include_usage` must be a boolean",
                ));
            }
        },
        Some(_) => return Err(bad("stream_options", "`stream_options` must be an object")),
    };
    let mut known = Map::new();
    for (name, value) in fields {
        if CALLER_FIELDS.contains(&name.as_str()) {
            if !value.is_null() {
                known.insert(name, value);
            }
        } else if settings.refuse_unknown {
            return Err(bad(
                &name,
                &format!("unknown field `{name}` (OPENAI_UNKNOWN_FIELDS=refuse)"),
            ));
        }
    }
    Ok(ChatRequest {
        target,
        variables,
        turn: Arc::new(CallerTurn {
            messages,
            fields: known,
            stream,
        }),
        include_usage,
    })
}

/// A body over `OPENAI_MAX_BODY_BYTES` (413), refused before it is parsed (or read whole).
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::InvalidInput,
        format!("the request body is larger than {limit} bytes (OPENAI_MAX_BODY_BYTES)"),
    )
    .with_status(413)
}

/// A `model` that names nothing this server runs (404, `param: model`).
pub fn unknown_model(model: &str) -> ApiError {
    ApiError::new(
        Code::ConfigNotFound,
        format!(
            "the model `{model}` does not exist: name a config key or {ROUTE_PREFIX}<project>/<route_key>"
        ),
    )
    .with_param("model")
}

fn bad(param: &str, message: &str) -> ApiError {
    ApiError::new(Code::InvalidInput, message).with_param(param)
}

/// A finished chat call: the run's result (a route's: the answering member's, with route-wide
/// timings) and what the response headers name.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The result.
    pub result: RunResult,
    /// The config that answered (`None` when none did).
    pub answered_by: Option<String>,
    /// Every audit row the call wrote (one per member attempt).
    pub audit_ids: Vec<i64>,
    /// The route that ran, as `project/route_key`.
    pub route: Option<String>,
}

impl Answer {
    /// The status a whole answer has: 200, or its error's.
    pub fn status(&self) -> u16 {
        if self.result.is_ok() {
            200
        } else {
            ApiError::from_result(&self.result).status
        }
    }
}

/// Runs a parsed request as an ordinary run-once or route call under `ctx` (which carries the
/// caller's turn, and for a streaming caller its tap).
pub async fn chat<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    req: &ChatRequest,
    ctx: &RunContext,
) -> Answer {
    match &req.target {
        Target::Config(key) => {
            let result = runner.run_once(key, &req.variables, ctx).await;
            Answer {
                answered_by: result.is_ok().then(|| key.clone()),
                audit_ids: result.audit_id.into_iter().collect(),
                route: None,
                result,
            }
        }
        Target::Route { project, route_key } => {
            let r = runner
                .run_route(project, route_key, &req.variables, ctx)
                .await;
            Answer {
                answered_by: r.answered_by,
                audit_ids: r
                    .member_attempts
                    .iter()
                    .filter_map(|m| m.audit_id)
                    .collect(),
                route: Some(format!("{project}/{route_key}")),
                result: r.result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> OpenAiSettings {
        OpenAiSettings {
            refuse_unknown: false,
            max_body_bytes: 4096,
            function_url_streaming: false,
        }
    }

    fn parse_json(v: Value) -> Result<ChatRequest, ApiError> {
        parse(v.to_string().as_bytes(), &settings())
    }

    #[test]
    fn a_model_names_a_config_or_a_route() {
        assert_eq!(Target::parse("daily"), Some(Target::Config("daily".into())));
        assert_eq!(
            Target::parse("route:reports/daily"),
            Some(Target::Route {
                project: "reports".into(),
                route_key: "daily".into()
            })
        );
        assert_eq!(Target::parse("route:reports"), None);
        assert_eq!(Target::parse("route:/x"), None);
        assert_eq!(Target::parse(" "), None);
        assert_eq!(
            Target::parse("route:a/b").map(|t| t.model_id()),
            Some("route:a/b".into())
        );
    }

    #[test]
    fn a_request_keeps_caller_fields_variables_and_stream_options() {
        let r = parse_json(json!({
            "model": "k", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2, "stream": true, "stream_options": {"include_usage": true},
            "variables": {"topic": "tea"}, "frobnicate": 1, "seed": null
        }))
        .unwrap();
        assert!(r.turn.stream && r.include_usage);
        assert_eq!(r.variables["topic"], "tea");
        assert_eq!(
            r.turn.fields.keys().collect::<Vec<_>>(),
            ["temperature", "stream_options"]
        );
        assert_eq!(r.turn.messages.len(), 1);
    }

    #[test]
    fn bad_requests_are_refused_naming_the_field() {
        let cases = [
            (json!({"messages": []}), "model"),
            (json!({"model": 3, "messages": []}), "model"),
            (json!({"model": "k"}), "messages"),
            (json!({"model": "k", "messages": {}}), "messages"),
            (
                json!({"model": "k", "messages": [{"content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "k", "messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"model": "k", "messages": [], "stream": "yes"}),
                "stream",
            ),
            (
                json!({"model": "k", "messages": [], "variables": []}),
                "variables",
            ),
        ];
        for (body, param) in cases {
            let e = parse_json(body.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.code, Code::InvalidInput, "{body}");
        }
        let e = parse(b"{not json", &settings()).unwrap_err();
        assert_eq!((e.status, e.code), (400, Code::InvalidInput));
        let e = parse(&[b' '; 5000], &settings()).unwrap_err();
        assert_eq!(e.status, 413);
        let e = parse_json(json!({"model": "route:nope", "messages": []})).unwrap_err();
        assert_eq!((e.status, e.code), (404, Code::ConfigNotFound));
    }

    #[test]
    fn unknown_fields_are_refused_when_the_setting_says_so() {
        let strict = OpenAiSettings {
            refuse_unknown: true,
            ..settings()
        };
        let body = json!({"model": "k", "messages": [], "frobnicate": 1}).to_string();
        let e = parse(body.as_bytes(), &strict).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("frobnicate"));
        assert!(parse(body.as_bytes(), &settings()).is_ok());
    }
}
