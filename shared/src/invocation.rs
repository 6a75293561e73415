//! The requests an invocation's body carries, whichever edge received it (a function, `ai-runner
//! serve`): a config run (run-once), a route run or the start of an evaluation run (run-route).
//!
//! Invariants: bodies are closed (`deny_unknown_fields`): a misspelt field is `INVALID_INPUT`,
//! never silently ignored; run-route tells an evaluation start from a route run by its `eval`
//! field alone.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::access::Action;

/// The body of a run-once call.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOnceRequest {
    /// The config to run.
    pub config_key: String,
    /// Runtime variables.
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
}

/// The body of a run-route call (also what a schedule's target input must carry).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRouteRequest {
    /// `ai_project_v2.name`.
    pub project: String,
    /// `ai_route_v2.route_key`.
    pub route_key: String,
    /// Runtime variables.
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
    /// Resolve and build only; call nothing, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// A label for the audit row's `trigger_source` (e.g. `schedule` in a rule's constant input).
    #[serde(default)]
    pub trigger: Option<String>,
}

/// Starts a run of a suite from the evaluation catalog (a schedule's constant input
/// `{"eval": "nightly", "trigger": "schedule"}`, or an API call).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    /// The suite's name.
    pub eval: String,
    /// `schedule` marks a direct invocation from a schedule's constant input; any other value
    /// (or none) is `api`. Events that say where they come from (EventBridge, FC timers, API
    /// Gateway) decide themselves.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Only these targets (`project/route_key` or `config:KEY`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Only cases with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// At most this many cases.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Compare against this run, or `last`.
    #[serde(default)]
    pub baseline: Option<String>,
}

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Run one config (run-once).
    RunOnce(RunOnceRequest),
    /// Run a route (run-route).
    Route(RunRouteRequest),
    /// Start an evaluation run (run-route, `{"eval": "<suite>"}`).
    Eval(EvalRequest),
}

impl Request {
    /// What access control checks the caller's scope against.
    pub fn action(&self) -> Action {
        match self {
            Request::RunOnce(r) => Action::Config(r.config_key.clone()),
            Request::Route(r) => Action::Route {
                project: r.project.clone(),
                route_key: r.route_key.clone(),
                dry_run: r.dry_run,
            },
            Request::Eval(e) => Action::Eval(e.eval.clone()),
        }
    }
}

/// Which request a function's bodies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A [`RunOnceRequest`].
    Config,
    /// A [`RunRouteRequest`] or, with an `eval` field, an [`EvalRequest`].
    Route,
}

impl Body {
    /// Path parameters (`POST /run-once/{config_key}`) that fill body fields left unset.
    pub fn path_keys(self) -> &'static [&'static str] {
        match self {
            Body::Config => &["config_key"],
            Body::Route => &["project", "route_key"],
        }
    }

    /// The request a JSON value carries.
    pub fn from_value(self, v: Value) -> Result<Request, serde_json::Error> {
        match self {
            Body::Config => serde_json::from_value(v).map(Request::RunOnce),
            Body::Route => route_from_value(v),
        }
    }

    /// The request a JSON text carries.
    pub fn from_str(self, text: &str) -> Result<Request, serde_json::Error> {
        match self {
            Body::Config => serde_json::from_str(text).map(Request::RunOnce),
            Body::Route => serde_json::from_str::<RouteCall>(text).map(|c| c.0),
        }
    }
}

fn route_from_value(v: Value) -> Result<Request, serde_json::Error> {
    if v.get("eval").is_some() {
        typed(v).map(Request::Eval)
    } else {
        typed(v).map(Request::Route)
    }
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v)
}

/// A run-route request read straight from text (a timer's payload string), so its errors say
/// where in the text they are.
struct RouteCall(Request);

impl<'de> serde::Deserialize<'de> for RouteCall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        route_from_value(v).map(RouteCall).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_with_an_eval_field_starts_an_evaluation_and_any_other_runs_a_route() {
        let eval = Body::Route
            .from_value(json!({"eval": "nightly", "tags": ["smoke"]}))
            .unwrap();
        assert!(matches!(&eval, Request::Eval(e) if e.eval == "nightly" && e.tags == ["smoke"]));
        assert_eq!(eval.action(), Action::Eval("nightly".into()));
        let route = Body::Route
            .from_str(r#"{"project": "p", "route_key": "r", "dry_run": true}"#)
            .unwrap();
        assert_eq!(
            route.action(),
            Action::Route {
                project: "p".into(),
                route_key: "r".into(),
                dry_run: true
            }
        );
    }

    #[test]
    fn a_misspelt_field_is_refused_not_ignored() {
        assert!(
            Body::Config
                .from_value(json!({"config_key": "k", "vars": {}}))
                .is_err()
        );
        assert!(
            Body::Route
                .from_str(r#"{"eval": "s", "target": ["x"]}"#)
                .is_err()
        );
    }
}
