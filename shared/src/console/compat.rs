//! The predecessor's dev-server API, so its sandbox clients keep working
//! (`spec/predecessor-surface.md`, "The dev server"): `GET /routes?project=P` and `POST /invoke`
//! with `{project_name|project, route_key|route, variables|runtime_variables, dry_run}`.
//!
//! Invariants: the same fields and statuses the predecessor answered (400 without a project or
//! route, 404 when the route does not resolve); the `Authorization` header is masked in every
//! answer, as the predecessor masked it (first 10 characters, `***`, last 3); a run is an ordinary audited route run with trigger `console`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Console;
use crate::code::Code;
use crate::run::{RunContext, Trigger, Variables};
use crate::status::http_status;

fn refuse(code: Code, message: &str) -> Response {
    let status = StatusCode::from_u16(http_status(code)).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"detail": message, "error": {"code": code.as_str(), "message": message}})),
    )
        .into_response()
}

/// `GET /routes?project=P`: the project's active routes, newest first (`[]` without a project).
pub(super) async fn routes(
    State(c): State<Arc<Console>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let project = q
        .into_iter()
        .find(|(k, _)| k == "project")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty());
    let Some(project) = project else {
        return Json(json!({"routes": []})).into_response();
    };
    match c.app.runner.store().project_routes(&project).await {
        Ok(rows) => {
            let routes: Vec<Value> = rows
                .into_iter()
                .map(|(route_key, policy)| json!({"route_key": route_key, "policy": policy}))
                .collect();
            Json(json!({"routes": routes})).into_response()
        }
        Err(e) => {
            tracing::warn!(code = %e.code(), error = %crate::error::chain(&e), "console: routes not read");
            refuse(e.code(), &e.to_string())
        }
    }
}

/// The first non-empty string among `keys`.
fn text(body: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Whether a failure means the route does not resolve (404 for the predecessor's clients).
fn unresolved(code: Code) -> bool {
    code == Code::RouteNotFound || code == Code::NoActiveMembers || code == Code::ConfigNotFound
}

/// `POST /invoke`.
pub(super) async fn invoke(State(c): State<Arc<Console>>, body: axum::body::Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return refuse(Code::InvalidInput, "the body must be a JSON object"),
    };
    let (Some(project), Some(route)) = (
        text(&body, &["project_name", "project"]),
        text(&body, &["route_key", "route"]),
    ) else {
        return refuse(
            Code::InvalidInput,
            "project_name and route_key are required",
        );
    };
    let vars: Variables = match body
        .get("variables")
        .or_else(|| body.get("runtime_variables"))
    {
        None | Some(Value::Null) => Variables::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return refuse(Code::InvalidInput, "variables must be a JSON object"),
    };
    let dry_run = body
        .get("dry_run")
        .and_then(crate::config::value_flag)
        .unwrap_or(false);
    let runner = &c.app.runner;
    let dry = match runner.dry_run(&project, &route, &vars).await {
        Ok(d) => d,
        Err(e) => {
            let code = e.code();
            tracing::warn!(code = %code, error = %crate::error::chain(&e), "console: invoke refused");
            let code = if unresolved(code) {
                Code::RouteNotFound
            } else {
                code
            };
            return refuse(code, &e.to_string());
        }
    };
    // The predecessor's clients read its mask: first 10 characters, `***`, last 3.
    let mut headers = dry.request.headers.clone();
    headers.insert(
        "Authorization".into(),
        Value::String(dry.request.legacy_authorization.clone()),
    );
    let request = json!({
        "url": dry.request.url,
        "headers": headers,
        "body": dry.request.body,
    });
    let mut meta = json!({
        "project_name": dry.route.project,
        "route_key": dry.route.route_key,
        "policy": dry.route.policy,
        "order": dry.order,
        "config_key": dry.request.config_key,
    });
    if dry_run {
        return Json(json!({
            "dry_run": true,
            "headers": headers,
            "request": request,
            "meta": meta,
        }))
        .into_response();
    }
    let r = runner
        .run_route(&project, &route, &vars, &RunContext::new(Trigger::Console))
        .await;
    if let Value::Object(m) = &mut meta {
        m.insert("trace_id".into(), json!(r.result.trace_id));
        m.insert("answered_by".into(), json!(r.answered_by));
        m.insert("member_attempts".into(), json!(r.member_attempts));
        m.insert("audit_id".into(), json!(r.result.audit_id));
        m.insert("cost".into(), json!(r.result.cost));
    }
    Json(json!({
        "status": r.result.http_status,
        "duration_ms": r.result.total_ms,
        "request": request,
        "meta": meta,
        "response": r.result.response,
        "error": r.result.error,
    }))
    .into_response()
}
