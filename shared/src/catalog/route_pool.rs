//! The predecessor's route-pool YAML (`cfg route-pool`): one route, or a list under `routes:`,
//! with `project_name`, `route_key`, `policy` and `members`.
//!
//! Invariants: read with the same field readers and policy rules as the catalog, so a pool file
//! and a catalog route mean the same thing.

use serde_json::{Map, Value};

use super::Finding;
use super::fields::{Ctx, check_keys, has_errors, items, members, opt_str, req_str, scalar_text};
use super::types::{Route, primary_backup};
use super::verify::check_policy;
use crate::code::Code;

/// Reads the predecessor's route-pool YAML (`project_name`, `route_key`, `policy`, `members`
/// with `config_key`, `priority`, `weight`; one route, or a list under `routes`) as catalog
/// routes. Every problem is reported with its path.
pub fn route_pool(doc: &Value) -> (Option<Vec<Route>>, Vec<Finding>) {
    let mut cx = Ctx::default();
    let list: Vec<(String, &Map<String, Value>)> = match doc {
        Value::Object(o) if o.contains_key("routes") => {
            check_keys(o, &["routes"], "$", &mut cx);
            items(o, "routes", &mut cx)
        }
        Value::Object(o) => vec![("$".to_owned(), o)],
        _ => {
            cx.err(
                "$",
                Code::BadType,
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
                    Code::MissingField,
                    "project_name is required",
                );
                None
            }
        };
        let route_key = req_str(o, "route_key", &path, &mut cx);
        let policy = opt_str(o, "policy", &path, &mut cx).unwrap_or_else(primary_backup);
        check_policy(o, &policy, &path, &mut cx);
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
    let ok = !has_errors(&cx);
    (ok.then_some(routes), cx.findings)
}
