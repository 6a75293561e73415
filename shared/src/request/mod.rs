//! Building the provider request from a resolved config, exactly as compat.md section 3 says.
//!
//! Body key order: `model`, then `messages` (or every key of a `messages_json` object that has a
//! `messages` key), then the mapped params in `params_json` order, then `response_format`.
//! `{{NAME}}` placeholders are replaced inside the parsed messages' string values (never in raw
//! JSON text) from params < prompt variables < route variables < runtime variables.
//!
//! An OpenAI-protocol caller adds a [`CallerTurn`] ([`build_for`]): its messages follow the
//! config's rendered prompt (a config without a prompt sends them as they came, unrendered: a
//! caller's text is never a template), and its fields ([`CALLER_FIELDS`]) follow the config's
//! params, which pin: a field the config sets keeps the config's value. `response_format` is the
//! prompt's when it has one, else the caller's. A param profile narrows what a caller may set
//! with `CALLER_PARAMS` (a list, a comma-separated string, or `"*"`, the default: every caller
//! field) and `ALLOW_STREAM: false`; anything else it asks for is [`BuildError::NotAllowed`].
//!
//! Invariants: a [`BuiltRequest`] has every media URL filled (an empty or still-templated
//! `image_url.url` / `input_audio.url` is `MISSING_MEDIA_URL`), and it carries the output
//! expectations the validator will apply to the answer.

use serde_json::{Map, Value};

use crate::code::Code;
use crate::config::{ValidationSettings, value_flag};
use crate::model::ResolvedConfig;
use crate::template::{placeholders, substitute};

mod caller;

use caller::allowed;
pub use caller::{CALLER_FIELDS, CallerTurn};

/// Param names mapped into the request body, in the predecessor's spelling.
pub const PARAM_MAP: [(&str, &str); 8] = [
    ("TEMPERATURE", "temperature"),
    ("TOP_P", "top_p"),
    ("MAX_TOKENS", "max_tokens"),
    ("STREAM", "stream"),
    ("STOP", "stop"),
    ("N", "n"),
    ("FREQUENCY_PENALTY", "frequency_penalty"),
    ("PRESENCE_PENALTY", "presence_penalty"),
];

/// The request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A media part's URL is empty or still holds a `{{placeholder}}` after substitution.
    #[error("media URL at {path} is empty or unresolved ({found:?}); pass it as a variable")]
    MissingMediaUrl {
        /// JSON path of the part, e.g. `messages[0].content[1].image_url.url`.
        path: String,
        /// What was left there (a placeholder name or empty).
        found: String,
    },
    /// The config has no prompt to send.
    #[error("config {0} has no prompt (ai_config.prompt_id is empty or points nowhere)")]
    PromptMissing(String),
    /// The stored prompt is not a messages array nor an object with `messages`.
    #[error("prompt {0} is invalid: {1}")]
    PromptInvalid(String, String),
    /// The stored params are not a JSON object.
    #[error("param profile is invalid: {0}")]
    ParamsInvalid(String),
    /// The caller set a field the config's param profile does not let callers set
    /// (`CALLER_PARAMS`, `ALLOW_STREAM`).
    #[error("this config does not let callers set `{0}`")]
    NotAllowed(String),
}

impl BuildError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::MissingMediaUrl { .. } => Code::MissingMediaUrl,
            Self::PromptMissing(_) => Code::PromptMissing,
            Self::PromptInvalid(..) => Code::PromptInvalid,
            Self::ParamsInvalid(_) => Code::ParamsInvalid,
            Self::NotAllowed(_) => Code::ParamNotAllowed,
        }
    }
}

/// What the answer must look like, decided when the request is built.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputSpec {
    /// The prompt or params asked for JSON (`response_format` json_object / json_schema).
    pub expects_json: bool,
    /// The JSON Schema from a `json_schema` response_format.
    pub schema: Option<Value>,
    /// JSON enforcement is on (env default, overridable per param profile).
    pub enforce_json: bool,
    /// The no-English check applies to JSON string values.
    pub no_english: bool,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltRequest {
    /// The full chat-completions URL, POSTed to verbatim.
    pub url: String,
    /// The JSON body, keys in wire order.
    pub body: Map<String, Value>,
    /// The params asked for an SSE stream.
    pub stream: bool,
    /// What the validator will demand of the answer.
    pub output: OutputSpec,
}

/// Builds the request for `cfg` with route-level and runtime variables layered on top.
pub fn build(
    cfg: &ResolvedConfig,
    route_vars: Option<&Map<String, Value>>,
    runtime_vars: &Map<String, Value>,
    defaults: &ValidationSettings,
) -> Result<BuiltRequest, BuildError> {
    build_for(cfg, route_vars, runtime_vars, defaults, None)
}

/// [`build`], with what an OpenAI-protocol caller sent (see the module header for how the two
/// meet).
pub fn build_for(
    cfg: &ResolvedConfig,
    route_vars: Option<&Map<String, Value>>,
    runtime_vars: &Map<String, Value>,
    defaults: &ValidationSettings,
    turn: Option<&CallerTurn>,
) -> Result<BuiltRequest, BuildError> {
    let params = match &cfg.params {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(BuildError::ParamsInvalid(
                "params_json is not an object".into(),
            ));
        }
    };
    if let Some(turn) = turn {
        allowed(&params, turn)?;
    }
    let prompt = match (&cfg.prompt, turn) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => return Err(BuildError::PromptMissing(cfg.config_key.clone())),
    };

    // params < prompt variables < route variables < runtime variables
    let mut vars = params.clone();
    if let Some(Value::Object(pv)) = prompt.and_then(|p| p.variables.as_ref()) {
        vars.extend(pv.clone());
    }
    if let Some(rv) = route_vars {
        vars.extend(rv.clone());
    }
    vars.extend(runtime_vars.clone());

    let mut body = Map::new();
    body.insert("model".into(), Value::String(cfg.model.clone()));
    match prompt.map(|p| &p.messages) {
        None => {
            body.insert("messages".into(), Value::Array(Vec::new()));
        }
        Some(Value::Array(msgs)) => {
            body.insert(
                "messages".into(),
                substitute(Value::Array(msgs.clone()), &vars),
            );
        }
        Some(Value::Object(obj)) if obj.contains_key("messages") => {
            for (k, v) in obj {
                body.insert(k.clone(), substitute(v.clone(), &vars));
            }
        }
        Some(_) => {
            let label = prompt.map(|p| format!("{}@{}", p.name, p.version));
            return Err(BuildError::PromptInvalid(
                label.unwrap_or_default(),
                "messages_json must be an array or an object with a \"messages\" key".into(),
            ));
        }
    }
    if let Some(turn) = turn
        && let Some(Value::Array(msgs)) = body.get_mut("messages")
    {
        // The caller's conversation follows the config's prompt, as sent (never rendered).
        msgs.extend(turn.messages.iter().cloned());
    }
    check_media(body.get("messages").unwrap_or(&Value::Null))?;

    let mut stream = false;
    for (name, value) in &params {
        if let Some((_, wire)) = PARAM_MAP.iter().find(|(p, _)| p == name) {
            if *wire == "stream" {
                stream = value_flag(value).unwrap_or(false);
                body.insert("stream".into(), Value::Bool(stream));
            } else {
                body.insert((*wire).into(), value.clone());
            }
        }
    }
    if let Some(turn) = turn {
        // The config's params pin: a caller's field goes in only where the config set nothing.
        for (name, value) in &turn.fields {
            if name != "response_format" && name != "stream_options" && !body.contains_key(name) {
                body.insert(name.clone(), value.clone());
            }
        }
        if turn.stream && !stream {
            stream = true;
            body.insert("stream".into(), Value::Bool(true));
        }
    }
    if stream {
        // Without it the SSE stream carries no usage, and the audit row would lose the tokens.
        body.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }

    let asks_json_in_params = params
        .get("JSON_SCHEMA_ENFORCE")
        .and_then(value_flag)
        .unwrap_or(false);
    let caller_format = turn
        .and_then(|t| t.fields.get("response_format"))
        .filter(|rf| !rf.is_null());
    let response_format = match prompt.and_then(|p| p.response_format.as_ref()) {
        Some(rf) if !rf.is_null() => Some(rf.clone()),
        _ if caller_format.is_some() => caller_format.cloned(),
        _ if asks_json_in_params => Some(serde_json::json!({"type": "json_object"})),
        _ => None,
    };
    let rf_type = response_format
        .as_ref()
        .and_then(|rf| rf.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let output = OutputSpec {
        expects_json: matches!(rf_type, "json_object" | "json_schema"),
        schema: response_format
            .as_ref()
            .filter(|_| rf_type == "json_schema")
            .and_then(|rf| rf.pointer("/json_schema/schema"))
            .cloned(),
        enforce_json: params
            .get("JSON_SCHEMA_ENFORCE")
            .and_then(value_flag)
            .unwrap_or(defaults.json_schema_enforce),
        no_english: params
            .get("ENFORCE_NO_ENGLISH")
            .and_then(value_flag)
            .unwrap_or(defaults.enforce_no_english),
    };
    if let Some(rf) = response_format {
        body.insert("response_format".into(), rf);
    }
    Ok(BuiltRequest {
        url: cfg.connection.base_url.clone(),
        body,
        stream,
        output,
    })
}

fn check_media(messages: &Value) -> Result<(), BuildError> {
    let Some(msgs) = messages.as_array() else {
        return Ok(());
    };
    for (i, msg) in msgs.iter().enumerate() {
        let Some(parts) = msg.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, part) in parts.iter().enumerate() {
            let base = format!("messages[{i}].content[{j}]");
            let (path, url) = match part.get("type").and_then(Value::as_str) {
                Some("image_url") => match part.get("image_url") {
                    Some(Value::String(u)) => (format!("{base}.image_url"), Some(u.as_str())),
                    Some(obj) => (
                        format!("{base}.image_url.url"),
                        Some(obj.get("url").and_then(Value::as_str).unwrap_or("")),
                    ),
                    None => (format!("{base}.image_url.url"), Some("")),
                },
                Some("input_audio") => {
                    let audio = part.get("input_audio");
                    let has_data = audio
                        .and_then(|a| a.get("data"))
                        .and_then(Value::as_str)
                        .is_some_and(|d| !d.is_empty() && placeholders(d).is_empty());
                    match audio.and_then(|a| a.get("url")) {
                        Some(u) => (
                            format!("{base}.input_audio.url"),
                            Some(u.as_str().unwrap_or("")),
                        ),
                        None if has_data => (String::new(), None),
                        None => (format!("{base}.input_audio.data"), Some("")),
                    }
                }
                _ => (String::new(), None),
            };
            if let Some(url) = url {
                let left = placeholders(url);
                if url.trim().is_empty() || !left.is_empty() {
                    return Err(BuildError::MissingMediaUrl {
                        path,
                        found: left
                            .first()
                            .map(|p| format!("{{{{{p}}}}}"))
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionInfo, PromptInfo};
    use crate::template::render;
    use serde_json::json;

    fn cfg(
        messages: Value,
        rf: Option<Value>,
        prompt_vars: Option<Value>,
        params: Option<Value>,
    ) -> ResolvedConfig {
        ResolvedConfig {
            config_id: 1,
            config_key: "k".into(),
            model: "gpt-test".into(),
            connection: ConnectionInfo {
                id: 1,
                name: "c".into(),
                provider: String::new(),
                base_url: "http://127.0.0.1:1/v1/chat/completions".into(),
                key_blob: String::new(),
            },
            prompt: Some(PromptInfo {
                name: "p".into(),
                version: "v1".into(),
                messages,
                response_format: rf,
                variables: prompt_vars,
            }),
            params,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn body_keys_come_in_wire_order_with_params_mapped_in_their_stored_order() {
        let c = cfg(
            json!([{"role":"user","content":"hi {{NAME}}"}]),
            Some(json!({"type":"json_object"})),
            None,
            Some(json!({"MAX_TOKENS": 64, "NAME": "x", "TEMPERATURE": 0.2, "STOP": ["\n"]})),
        );
        let r = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap();
        let keys: Vec<_> = r.body.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "model",
                "messages",
                "max_tokens",
                "temperature",
                "stop",
                "response_format"
            ]
        );
        assert_eq!(r.body["messages"][0]["content"], "hi x");
        assert!(r.output.expects_json && r.output.enforce_json);
    }

    #[test]
    fn a_messages_object_contributes_all_its_keys() {
        let c = cfg(
            json!({"messages":[{"role":"user","content":"{{Q}}"}],"tools":[{"name":"{{Q}}"}]}),
            None,
            None,
            None,
        );
        let r = build(
            &c,
            None,
            &obj(json!({"Q":"why"})),
            &ValidationSettings::default(),
        )
        .unwrap();
        assert_eq!(
            r.body.keys().cloned().collect::<Vec<_>>(),
            ["model", "messages", "tools"]
        );
        assert_eq!(r.body["tools"][0]["name"], "why");
        assert!(!r.output.expects_json);
    }

    #[test]
    fn variables_follow_params_prompt_route_runtime_precedence() {
        let c = cfg(
            json!([{"role":"user","content":"{{A}}{{B}}{{C}}{{D}}"}]),
            None,
            Some(json!({"B":"prompt","C":"prompt","D":"prompt"})),
            Some(json!({"A":"params","B":"params","C":"params","D":"params"})),
        );
        let route = obj(json!({"C":"route","D":"route"}));
        let r = build(
            &c,
            Some(&route),
            &obj(json!({"D":"runtime"})),
            &ValidationSettings::default(),
        )
        .unwrap();
        assert_eq!(r.body["messages"][0]["content"], "paramspromptrouteruntime");
    }

    #[test]
    fn substitution_happens_on_parsed_strings_so_quotes_cannot_break_the_json() {
        let c = cfg(
            json!([{"role":"user","content":"say {{X}}"}]),
            None,
            None,
            None,
        );
        let r = build(
            &c,
            None,
            &obj(json!({"X":"\"}], \"evil\": 1"})),
            &ValidationSettings::default(),
        )
        .unwrap();
        assert_eq!(r.body["messages"][0]["content"], "say \"}], \"evil\": 1");
        assert_eq!(r.body.len(), 2);
        assert_eq!(
            render("{{ N }} {{missing}} {{", &obj(json!({"N": 3}))),
            "3 {{missing}} {{"
        );
    }

    #[test]
    fn json_schema_enforce_param_adds_json_object_only_without_a_prompt_format() {
        let c = cfg(
            json!([{"role":"user","content":"x"}]),
            None,
            None,
            Some(json!({"JSON_SCHEMA_ENFORCE": "true"})),
        );
        let r = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap();
        assert_eq!(r.body["response_format"], json!({"type":"json_object"}));
        let schema =
            json!({"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}});
        let c = cfg(
            json!([{"role":"user","content":"x"}]),
            Some(schema.clone()),
            None,
            Some(json!({"JSON_SCHEMA_ENFORCE": true})),
        );
        let r = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap();
        assert_eq!(r.body["response_format"], schema);
        assert_eq!(r.output.schema, Some(json!({"type":"object"})));
    }

    #[test]
    fn json_is_not_expected_when_nothing_asks_for_it() {
        let c = cfg(json!([{"role":"user","content":"x"}]), None, None, None);
        let r = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap();
        assert!(!r.output.expects_json);
        assert!(!r.body.contains_key("response_format"));
    }

    #[test]
    fn stream_param_requests_usage_in_the_stream() {
        let c = cfg(
            json!([{"role":"user","content":"x"}]),
            None,
            None,
            Some(json!({"STREAM": true})),
        );
        let r = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap();
        assert!(r.stream);
        assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn media_urls_must_be_filled_after_substitution() {
        let image = json!([{"role":"user","content":[{"type":"text","text":"?"},{"type":"image_url","image_url":{"url":"{{MEDIA_URL}}"}}]}]);
        let c = cfg(image, None, None, None);
        let err = build(&c, None, &Map::new(), &ValidationSettings::default()).unwrap_err();
        assert_eq!(err.code(), Code::MissingMediaUrl);
        assert!(
            err.to_string()
                .contains("messages[0].content[1].image_url.url"),
            "{err}"
        );
        let err = build(
            &c,
            None,
            &obj(json!({"MEDIA_URL": ""})),
            &ValidationSettings::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::MissingMediaUrl);
        let ok = build(
            &c,
            None,
            &obj(json!({"MEDIA_URL": "https://x/y.png"})),
            &ValidationSettings::default(),
        )
        .unwrap();
        assert_eq!(
            ok.body["messages"][0]["content"][1]["image_url"]["url"],
            "https://x/y.png"
        );
        let audio = json!([{"role":"user","content":[{"type":"input_audio","input_audio":{"url":"{{AUDIO}}"}}]}]);
        let err = build(
            &cfg(audio, None, None, None),
            None,
            &Map::new(),
            &ValidationSettings::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::MissingMediaUrl);
        let inline = json!([{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"{{B64}}","format":"wav"}}]}]);
        assert!(
            build(
                &cfg(inline.clone(), None, None, None),
                None,
                &obj(json!({"B64":"AAAA"})),
                &ValidationSettings::default()
            )
            .is_ok()
        );
        assert_eq!(
            build(
                &cfg(inline, None, None, None),
                None,
                &Map::new(),
                &ValidationSettings::default()
            )
            .unwrap_err()
            .code(),
            Code::MissingMediaUrl
        );
    }

    #[test]
    fn a_config_without_prompt_or_with_a_bad_one_is_rejected_with_a_code() {
        let mut c = cfg(json!("just text"), None, None, None);
        assert_eq!(
            build(&c, None, &Map::new(), &ValidationSettings::default())
                .unwrap_err()
                .code(),
            Code::PromptInvalid
        );
        c.prompt = None;
        assert_eq!(
            build(&c, None, &Map::new(), &ValidationSettings::default())
                .unwrap_err()
                .code(),
            Code::PromptMissing
        );
    }

    fn turn(messages: Value, fields: Value, stream: bool) -> CallerTurn {
        CallerTurn {
            messages: messages.as_array().cloned().unwrap(),
            fields: obj(fields),
            stream,
        }
    }

    #[test]
    fn a_callers_messages_follow_the_rendered_prompt_and_its_fields_follow_the_params() {
        let c = cfg(
            json!([{"role": "system", "content": "about {{TOPIC}}"}]),
            None,
            None,
            Some(json!({"TEMPERATURE": 0.1, "TOPIC": "tea"})),
        );
        let t = turn(
            json!([{"role": "user", "content": "and {{TOPIC}}?"}]),
            json!({"temperature": 0.9, "top_p": 0.5, "tools": [{"type": "function"}]}),
            false,
        );
        let b = build_for(&c, None, &Map::new(), &Default::default(), Some(&t)).unwrap();
        assert_eq!(
            b.body["messages"],
            json!([{"role": "system", "content": "about tea"}, {"role": "user", "content": "and {{TOPIC}}?"}])
        );
        // The config pins its own params; the caller's others follow them, in its order.
        assert_eq!(b.body["temperature"], 0.1);
        assert_eq!(
            b.body.keys().collect::<Vec<_>>(),
            ["model", "messages", "temperature", "top_p", "tools"]
        );
    }

    #[test]
    fn a_config_without_a_prompt_sends_the_callers_messages_as_they_came() {
        let mut c = cfg(json!([]), None, None, None);
        c.prompt = None;
        let t = turn(
            json!([{"role": "user", "content": "{{X}}"}]),
            json!({}),
            true,
        );
        let b = build_for(&c, None, &Map::new(), &Default::default(), Some(&t)).unwrap();
        assert_eq!(
            b.body["messages"],
            json!([{"role": "user", "content": "{{X}}"}])
        );
        assert!(b.stream);
        assert_eq!(b.body["stream_options"], json!({"include_usage": true}));
        assert!(matches!(
            build(&c, None, &Map::new(), &Default::default()),
            Err(BuildError::PromptMissing(_))
        ));
    }

    #[test]
    fn the_prompts_response_format_wins_over_the_callers() {
        let schema = json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}});
        let t = turn(json!([]), json!({"response_format": schema}), false);
        let plain = cfg(json!([]), None, None, None);
        let b = build_for(&plain, None, &Map::new(), &Default::default(), Some(&t)).unwrap();
        assert_eq!(b.body["response_format"], schema);
        assert!(b.output.expects_json && b.output.schema.is_some());
        let own = cfg(json!([]), Some(json!({"type": "json_object"})), None, None);
        let b = build_for(&own, None, &Map::new(), &Default::default(), Some(&t)).unwrap();
        assert_eq!(b.body["response_format"], json!({"type": "json_object"}));
    }

    #[test]
    fn a_param_profile_narrows_what_callers_may_set() {
        let only_temp = cfg(
            json!([]),
            None,
            None,
            Some(json!({"CALLER_PARAMS": ["temperature"]})),
        );
        let t = turn(json!([]), json!({"temperature": 1, "seed": 3}), false);
        let e =
            build_for(&only_temp, None, &Map::new(), &Default::default(), Some(&t)).unwrap_err();
        assert!(
            matches!(&e, BuildError::NotAllowed(f) if f == "seed"),
            "{e}"
        );
        assert_eq!(e.code(), Code::ParamNotAllowed);
        let listed = cfg(
            json!([]),
            None,
            None,
            Some(json!({"CALLER_PARAMS": "temperature, seed"})),
        );
        assert!(build_for(&listed, None, &Map::new(), &Default::default(), Some(&t)).is_ok());
        let no_stream = cfg(json!([]), None, None, Some(json!({"ALLOW_STREAM": false})));
        let s = turn(
            json!([]),
            json!({"stream_options": {"include_usage": true}}),
            true,
        );
        let e =
            build_for(&no_stream, None, &Map::new(), &Default::default(), Some(&s)).unwrap_err();
        assert!(
            matches!(&e, BuildError::NotAllowed(f) if f == "stream"),
            "{e}"
        );
        // Without a caller, the profile's own settings change nothing.
        assert!(build(&no_stream, None, &Map::new(), &Default::default()).is_ok());
    }
}
