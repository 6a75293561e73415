//! The catalog pages: every object with its key state (never the key), a config and a route
//! with what they would send, and the try-it form that posts to [`super::try_it`].
//!
//! Invariants: connection rows show whether their key decrypts and in which format, never the key
//! or its blob; prompts are shown rendered with their own defaults only.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::{OnPage, Page, PageError, S};
use super::{placeholders, prompt_ref};
use crate::catalog::plan::Snapshot;
use crate::code::Code;
use crate::console::page::{
    Nav, badge, e, facts_html, html, json_block, link, opt, query, seg, table_html,
};

/// `GET /`: projects and routes, configs, models, connections, prompts, param profiles.
pub(in crate::console) async fn catalog(State(c): S) -> Page {
    let db = c.app.runner.store();
    let snap = db.snapshot().await.on_page(Nav::Catalog)?;
    let keys: HashMap<String, crate::store::keys::KeyStatus> =
        match db.check_keys(c.app.runner.keyring()).await {
            Ok(k) => k
                .into_iter()
                .filter(|k| k.table == "ai_connection")
                .map(|k| (k.name.clone(), k))
                .collect(),
            Err(err) => {
                tracing::warn!(code = %err.code(), "console: key states not read");
                HashMap::new()
            }
        };
    // Each connection's circuit breaker, by connection name (none stored: closed).
    let breakers = match db.list_breakers().await {
        Ok(rows) => Some(
            rows.into_iter()
                .map(|r| (r.connection.clone(), r))
                .collect::<HashMap<_, _>>(),
        ),
        Err(err) => {
            tracing::warn!(code = %err.code(), "console: circuit breakers not read");
            None
        }
    };
    let now = crate::model::now_ms();
    let mut body = String::new();
    let projects: BTreeSet<&str> = snap.routes.keys().map(|(p, _)| p.as_str()).collect();
    body.push_str(&format!(
        "<p class=\"dim\">{} projects · {} routes · {} configs · {} models · {} connections · {} prompts</p>",
        projects.len(),
        snap.routes.len(),
        snap.configs.len(),
        snap.models.len(),
        snap.connections.len(),
        snap.prompts.len()
    ));
    body.push_str("<h2 id=\"routes\">Projects and routes</h2>");
    let rows: Vec<Vec<String>> = snap
        .routes
        .values()
        .map(|r| {
            let members: Vec<String> = r
                .members
                .iter()
                .map(|m| {
                    format!(
                        "{} <span class=\"dim\">p{} w{}{}</span>",
                        link(&format!("/configs/{}", seg(&m.config_key)), &m.config_key),
                        m.priority,
                        m.weight,
                        if m.active { "" } else { " inactive" }
                    )
                })
                .collect();
            vec![
                e(&r.project),
                link(
                    &format!("/routes/{}/{}", seg(&r.project), seg(&r.route_key)),
                    &r.route_key,
                ),
                e(&r.policy),
                members.join("<br>"),
                badge(if r.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["Project", "Route", "Policy", "Members in order", ""],
        &rows,
    ));
    body.push_str("<h2 id=\"configs\">Configs</h2>");
    let rows: Vec<Vec<String>> = snap
        .configs
        .values()
        .map(|cf| {
            vec![
                link(&format!("/configs/{}", seg(&cf.config_key)), &cf.config_key),
                e(&cf.model),
                prompt_ref(cf.prompt.as_ref()),
                opt(cf.param_profile.as_deref()),
                opt(cf.description.as_deref()),
                badge(if cf.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["Config", "Model", "Prompt", "Params", "Description", ""],
        &rows,
    ));
    body.push_str("<h2 id=\"models\">Models</h2>");
    let rows: Vec<Vec<String>> = snap
        .models
        .values()
        .map(|m| vec![e(&m.name), e(&m.connection)])
        .collect();
    body.push_str(&table_html(&["Model", "Connection"], &rows));
    body.push_str("<h2 id=\"connections\">Connections</h2><p class=\"dim\">Keys are never shown: only whether they decrypt with the configured pepper, and in which format.</p>");
    let rows: Vec<Vec<String>> = snap
        .connections
        .values()
        .map(|(cn, _blob)| {
            let key = match keys.get(&cn.name) {
                Some(k) if k.decrypts => format!("{} {}", badge("ok"), e(&k.format)),
                Some(k) => format!(
                    "{} {} {}",
                    badge("error"),
                    e(&k.format),
                    opt(k.error.as_deref())
                ),
                None => opt(None),
            };
            let breaker = match &breakers {
                Some(b) => e(&b
                    .get(&cn.name)
                    .map_or_else(|| "closed".to_owned(), |r| r.describe(now))),
                None => opt(None),
            };
            vec![
                e(&cn.name),
                e(&cn.provider),
                e(&cn.base_url),
                key,
                breaker,
                badge(if cn.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &[
            "Connection",
            "Provider",
            "URL",
            "Key",
            "Circuit breaker",
            "",
        ],
        &rows,
    ));
    body.push_str("<h2 id=\"prompts\">Prompts</h2>");
    let rows: Vec<Vec<String>> = snap
        .prompts
        .values()
        .map(|p| {
            let defaults = p.variables.clone().unwrap_or_default();
            let rendered = crate::template::substitute(p.messages.clone(), &defaults);
            let vars = placeholders(&p.messages)
                .iter()
                .map(|v| format!("<code>{}</code>", e(v)))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                e(&format!("{}@{}", p.name, p.version)),
                if vars.is_empty() { opt(None) } else { vars },
                json_block(&rendered),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &[
            "Prompt",
            "Variables",
            "Messages (rendered with the prompt's defaults)",
        ],
        &rows,
    ));
    body.push_str("<h2 id=\"params\">Param profiles</h2>");
    let rows: Vec<Vec<String>> = snap
        .profiles
        .values()
        .map(|p| vec![e(&p.name), json_block(&Value::Object(p.params.clone()))])
        .collect();
    body.push_str(&table_html(&["Profile", "Params"], &rows));
    Ok(html(StatusCode::OK, "Catalog", Nav::Catalog, &body))
}

/// The try-it form: hidden target fields, one input per variable (its default shown), extra JSON.
fn try_form(target: &[(&str, &str)], vars: &[(String, Option<String>)]) -> String {
    let mut h = String::from(
        "<h2 id=\"try\">Try it</h2><form class=\"try\" method=\"post\" action=\"/try\">",
    );
    for (k, v) in target {
        h.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            e(k),
            e(v)
        ));
    }
    for (name, default) in vars {
        h.push_str(&format!(
            "<label>{}<input name=\"var.{}\" value=\"{}\" placeholder=\"{}\"></label>",
            e(name),
            e(name),
            e(default.as_deref().unwrap_or("")),
            e(default.as_deref().unwrap_or("(empty)")),
        ));
    }
    h.push_str(
        "<label>More variables (a JSON object)<textarea name=\"vars_json\" placeholder=\"{}\"></textarea></label>\
         <p><button class=\"secondary\" name=\"action\" value=\"dry\" id=\"dry-run\">Dry run</button> \
         <button name=\"action\" value=\"run\" id=\"run\">Run (calls the provider, audited)</button></p></form>",
    );
    h
}

fn default_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `GET /configs/{key}`.
pub(in crate::console) async fn config(State(c): S, Path(key): Path<String>) -> Page {
    let snap = c
        .app
        .runner
        .store()
        .snapshot()
        .await
        .on_page(Nav::Catalog)?;
    let Some(cf) = snap.configs.get(&key) else {
        return Err(PageError::new(
            Code::ConfigNotFound,
            format!("no config named {key:?}"),
            Nav::Catalog,
        ));
    };
    let prompt = cf
        .prompt
        .as_ref()
        .and_then(|r| snap.prompts.get(&(r.name.clone(), r.version.clone())));
    let connection = snap
        .models
        .get(&cf.model)
        .map(|m| m.connection.clone())
        .unwrap_or_default();
    let mut body = facts_html(&[
        ("Config", e(&cf.config_key)),
        ("Model", e(&cf.model)),
        ("Connection", e(&connection)),
        ("Prompt", prompt_ref(cf.prompt.as_ref())),
        ("Param profile", opt(cf.param_profile.as_deref())),
        ("Description", opt(cf.description.as_deref())),
        (
            "Active",
            badge(if cf.active { "active" } else { "inactive" }),
        ),
        (
            "Calls",
            link(
                &format!("/audit{}", query(&[("config", key.clone())])),
                "audit trail",
            ),
        ),
    ]);
    if let Some(p) = &cf.param_profile.as_ref().and_then(|n| snap.profiles.get(n)) {
        body.push_str("<h2>Params</h2>");
        body.push_str(&json_block(&Value::Object(p.params.clone())));
    }
    let mut vars = Vec::new();
    if let Some(p) = prompt {
        body.push_str("<h2>Prompt messages</h2>");
        body.push_str(&json_block(&p.messages));
        if let Some(rf) = &p.response_format {
            body.push_str("<h2>Response format</h2>");
            body.push_str(&json_block(rf));
        }
        let defaults = p.variables.clone().unwrap_or_default();
        vars = placeholders(&p.messages)
            .into_iter()
            .map(|v| {
                let d = default_text(defaults.get(&v));
                (v, d)
            })
            .collect();
    }
    body.push_str(&try_form(&[("config", &key)], &vars));
    Ok(html(
        StatusCode::OK,
        &format!("Config {key}"),
        Nav::Catalog,
        &body,
    ))
}

/// The placeholders a route's members fill, with the route's then the prompt's defaults.
fn route_vars(snap: &Snapshot, r: &crate::catalog::types::Route) -> Vec<(String, Option<String>)> {
    let route_defaults = r.variables.clone().unwrap_or_default();
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let prompts: Vec<&crate::catalog::types::Prompt> = match &r.prompt {
        Some(p) => snap
            .prompts
            .get(&(p.name.clone(), p.version.clone()))
            .into_iter()
            .collect(),
        None => r
            .members
            .iter()
            .filter(|m| m.active)
            .filter_map(|m| snap.configs.get(&m.config_key)?.prompt.as_ref())
            .filter_map(|p| snap.prompts.get(&(p.name.clone(), p.version.clone())))
            .collect(),
    };
    for p in prompts {
        let defaults = p.variables.clone().unwrap_or_default();
        for v in placeholders(&p.messages) {
            if out.iter().any(|(n, _)| *n == v) {
                continue;
            }
            let d = default_text(route_defaults.get(&v).or_else(|| defaults.get(&v)));
            out.push((v, d));
        }
    }
    out
}

/// `GET /routes/{project}/{route}`.
pub(in crate::console) async fn route(
    State(c): S,
    Path((project, key)): Path<(String, String)>,
) -> Page {
    let snap = c
        .app
        .runner
        .store()
        .snapshot()
        .await
        .on_page(Nav::Catalog)?;
    let Some(r) = snap.routes.get(&(project.clone(), key.clone())) else {
        return Err(PageError::new(
            Code::RouteNotFound,
            format!("no route {project}/{key}"),
            Nav::Catalog,
        ));
    };
    let mut body = facts_html(&[
        ("Project", e(&r.project)),
        ("Route", e(&r.route_key)),
        ("Policy", e(&r.policy)),
        ("Prompt override", prompt_ref(r.prompt.as_ref())),
        ("Params override", opt(r.param_profile.as_deref())),
        (
            "Active",
            badge(if r.active { "active" } else { "inactive" }),
        ),
        (
            "Calls",
            link(
                &format!(
                    "/audit{}",
                    query(&[("project", project.clone()), ("route", key.clone())])
                ),
                "audit trail",
            ),
        ),
    ]);
    if let Some(pc) = &r.policy_config {
        body.push_str("<h2>Policy config</h2>");
        body.push_str(&json_block(pc));
    }
    body.push_str("<h2>Members in order</h2>");
    let rows: Vec<Vec<String>> = r
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let model = snap
                .configs
                .get(&m.config_key)
                .map(|c| c.model.clone())
                .unwrap_or_default();
            vec![
                (i + 1).to_string(),
                link(&format!("/configs/{}", seg(&m.config_key)), &m.config_key),
                e(&model),
                m.priority.to_string(),
                m.weight.to_string(),
                badge(if m.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["#", "Config", "Model", "Priority", "Weight", ""],
        &rows,
    ));
    if let Some(v) = &r.variables {
        body.push_str("<h2>Route variables</h2>");
        body.push_str(&json_block(&Value::Object(v.clone())));
    }
    let vars = route_vars(&snap, r);
    body.push_str(&try_form(&[("project", &project), ("route", &key)], &vars));
    Ok(html(
        StatusCode::OK,
        &format!("Route {project}/{key}"),
        Nav::Catalog,
        &body,
    ))
}

// ---- try it ----------------------------------------------------------------------------------
