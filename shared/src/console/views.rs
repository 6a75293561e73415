//! The console's pages: each handler reads through the store or runs through the runner, then
//! renders with [`super::page`]. No decisions of their own: filters are parsed by
//! [`crate::model::trail`], runs are the runner's, reports are [`crate::eval::report`]'s.
//!
//! Invariants: a failure shows its stable code and a short message (the cause chain goes to the
//! log); connection rows show whether their key decrypts and in which format, never the key or
//! its blob; a run from the console is an ordinary audited run with trigger `console`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value};

use super::Console;
use super::page::{
    Nav, badge, e, facts_html, failure, html, json_block, json_text_block, link, opt, query, seg,
    table_html, usd,
};
use crate::catalog::plan::Snapshot;
use crate::code::Code;
use crate::model::trail::{TrailCursor, TrailFilter};
use crate::ports::EvalStore;
use crate::run::route::{DryRequest, RouteResult};
use crate::run::{RunContext, RunResult, Variables};

type S = State<Arc<Console>>;

/// Rows per trail page.
const PAGE: u32 = 50;

fn logged(code: Code, e: &dyn std::error::Error, nav: Nav) -> Response {
    tracing::warn!(code = %code, error = %crate::error::chain(e), "console page failed");
    failure(code, &e.to_string(), nav)
}

fn store_failure(e: &crate::ports::StoreError, nav: Nav) -> Response {
    logged(e.code(), e, nav)
}

// ---- catalog ---------------------------------------------------------------------------------

/// Every `{{NAME}}` a prompt's messages use, in first-use order.
fn placeholders(messages: &Value) -> Vec<String> {
    let mut strings = Vec::new();
    crate::request::collect_strings(messages, &mut strings);
    let mut seen = BTreeSet::new();
    strings
        .iter()
        .flat_map(|s| crate::request::placeholders(s))
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

fn prompt_ref(p: Option<&crate::catalog::types::PromptRef>) -> String {
    p.map_or_else(|| opt(None), |p| e(&format!("{}@{}", p.name, p.version)))
}

/// `GET /`: projects and routes, configs, models, connections, prompts, param profiles.
pub(super) async fn catalog(State(c): S) -> Response {
    let db = c.app.runner.store();
    let snap = match db.snapshot().await {
        Ok(s) => s,
        Err(err) => return store_failure(&err, Nav::Catalog),
    };
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
            vec![
                e(&cn.name),
                e(&cn.provider),
                e(&cn.base_url),
                key,
                badge(if cn.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["Connection", "Provider", "URL", "Key", ""],
        &rows,
    ));
    body.push_str("<h2 id=\"prompts\">Prompts</h2>");
    let rows: Vec<Vec<String>> = snap
        .prompts
        .values()
        .map(|p| {
            let defaults = p.variables.clone().unwrap_or_default();
            let rendered = crate::request::substitute(p.messages.clone(), &defaults);
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
    html(StatusCode::OK, "Catalog", Nav::Catalog, &body)
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
pub(super) async fn config(State(c): S, Path(key): Path<String>) -> Response {
    let snap = match c.app.runner.store().snapshot().await {
        Ok(s) => s,
        Err(err) => return store_failure(&err, Nav::Catalog),
    };
    let Some(cf) = snap.configs.get(&key) else {
        return failure(
            Code::ConfigNotFound,
            &format!("no config named {key:?}"),
            Nav::Catalog,
        );
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
    html(
        StatusCode::OK,
        &format!("Config {key}"),
        Nav::Catalog,
        &body,
    )
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
pub(super) async fn route(State(c): S, Path((project, key)): Path<(String, String)>) -> Response {
    let snap = match c.app.runner.store().snapshot().await {
        Ok(s) => s,
        Err(err) => return store_failure(&err, Nav::Catalog),
    };
    let Some(r) = snap.routes.get(&(project.clone(), key.clone())) else {
        return failure(
            Code::RouteNotFound,
            &format!("no route {project}/{key}"),
            Nav::Catalog,
        );
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
    html(
        StatusCode::OK,
        &format!("Route {project}/{key}"),
        Nav::Catalog,
        &body,
    )
}

// ---- try it ----------------------------------------------------------------------------------

/// What the try-it form asked for.
struct TryIt {
    config: Option<String>,
    route: Option<(String, String)>,
    run: bool,
    vars: Variables,
}

fn parse_try(fields: Vec<(String, String)>) -> Result<TryIt, String> {
    let mut t = TryIt {
        config: None,
        route: None,
        run: false,
        vars: Variables::new(),
    };
    let (mut project, mut route) = (None, None);
    let mut extra = None;
    for (k, v) in fields {
        match k.as_str() {
            "config" if !v.is_empty() => t.config = Some(v),
            "project" if !v.is_empty() => project = Some(v),
            "route" if !v.is_empty() => route = Some(v),
            "action" => t.run = v == "run",
            "vars_json" if !v.trim().is_empty() => extra = Some(v),
            _ => {
                if let Some(name) = k.strip_prefix("var.") {
                    if !v.is_empty() {
                        t.vars.insert(name.to_owned(), Value::String(v));
                    }
                }
            }
        }
    }
    if let Some(text) = extra {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => t.vars.extend(m),
            _ => return Err("more variables must be a JSON object".into()),
        }
    }
    t.route = project.zip(route);
    if t.config.is_none() && t.route.is_none() {
        return Err("pick a config, or a project and a route".into());
    }
    Ok(t)
}

fn dry_html(req: &DryRequest, order: Option<&[String]>) -> String {
    let mut facts = vec![("Config", e(&req.config_key)), ("POST", e(&req.url))];
    if let Some(o) = order {
        facts.push((
            "Member order",
            o.iter().map(|k| e(k)).collect::<Vec<_>>().join(" → "),
        ));
    }
    let mut h = facts_html(&facts);
    h.push_str("<h2>Headers (key masked)</h2>");
    h.push_str(&json_block(&Value::Object(req.headers.clone())));
    h.push_str("<h2>Body</h2>");
    h.push_str(&json_block(&Value::Object(req.body.clone())));
    h
}

/// Whether a failure is the answer's validation (JSON, schema, letters) rather than the call.
fn validation_failed(code: &str) -> bool {
    code == Code::SchemaInvalid.as_str() || code == Code::LetterDetected.as_str()
}

fn result_html(r: &RunResult) -> String {
    let status = serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let validation = match &r.error {
        None => badge("passed"),
        Some(err) if validation_failed(&err.code) => {
            format!("{} <code>{}</code>", badge("failed"), e(&err.code))
        }
        Some(_) => "<span class=\"dim\">not reached</span>".to_owned(),
    };
    let mut facts = vec![
        ("Status", badge(&status)),
        (
            "Error",
            r.error.as_ref().map_or_else(
                || opt(None),
                |err| format!("<code>{}</code> {}", e(&err.code), e(&err.message)),
            ),
        ),
        ("Validation", validation),
        ("Provider HTTP status", r.http_status.to_string()),
        (
            "Timings",
            format!(
                "total {} ms · provider {} ms · TTFT {}",
                r.total_ms,
                r.provider_ms,
                r.ttft_ms
                    .map_or_else(|| "–".to_owned(), |t| format!("{t} ms"))
            ),
        ),
        (
            "Attempts",
            format!("{} HTTP · {} content", r.attempts, r.content_attempts),
        ),
        (
            "Cost",
            r.cost.map_or_else(
                || "<span class=\"dim\">unpriced</span>".to_owned(),
                |c| format!("${c}"),
            ),
        ),
        (
            "Trace",
            link(&format!("/trace/{}", seg(&r.trace_id)), &r.trace_id),
        ),
    ];
    if let Some(id) = r.audit_id {
        facts.push((
            "Audit row",
            link(&format!("/audit/{id}"), &format!("#{id}")),
        ));
    }
    if let Some(d) = &r.audit_deferred {
        facts.push(("Audit", format!("deferred to the spool: {}", e(d))));
    }
    let mut h = facts_html(&facts);
    h.push_str("<h2>Answer</h2>");
    h.push_str(&format!(
        "<pre class=\"answer\" id=\"answer\">{}</pre>",
        e(r.content.as_deref().unwrap_or(""))
    ));
    if let Some(p) = &r.parsed {
        h.push_str("<h2>Parsed JSON</h2>");
        h.push_str(&json_block(p));
    }
    if let Some(u) = &r.usage {
        h.push_str("<h2>Usage</h2>");
        h.push_str(&json_block(u));
    }
    h
}

fn route_html(r: &RouteResult) -> String {
    let mut h = facts_html(&[
        (
            "Route",
            e(&format!("{}/{}", r.route.project, r.route.route_key)),
        ),
        ("Answered by", opt(r.answered_by.as_deref())),
    ]);
    h.push_str("<h2>Member attempts</h2>");
    let rows: Vec<Vec<String>> = r
        .member_attempts
        .iter()
        .map(|m| {
            let status = serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                m.attempt.to_string(),
                e(&m.config_key),
                badge(&status),
                m.error
                    .as_ref()
                    .map_or_else(|| opt(None), |err| format!("<code>{}</code>", e(&err.code))),
                if m.handed_over {
                    "handed over".into()
                } else {
                    opt(None)
                },
                format!("{} ms", m.total_ms),
                m.audit_id.map_or_else(
                    || opt(None),
                    |id| link(&format!("/audit/{id}"), &format!("#{id}")),
                ),
            ]
        })
        .collect();
    h.push_str(&table_html(
        &[
            "#",
            "Config",
            "Status",
            "Code",
            "Handover",
            "Time",
            "Audit row",
        ],
        &rows,
    ));
    h.push_str("<h2>Result</h2>");
    h.push_str(&result_html(&r.result));
    h
}

/// `POST /try`: a dry run (nothing sent, nothing written) or an ordinary audited run.
pub(super) async fn try_it(State(c): S, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let t = match parse_try(fields) {
        Ok(t) => t,
        Err(m) => return failure(Code::InvalidInput, &m, Nav::Catalog),
    };
    let runner = &c.app.runner;
    let ctx = RunContext::new("console");
    match (&t.route, &t.config, t.run) {
        (Some((p, r)), _, false) => match runner.dry_run(p, r, &t.vars).await {
            Ok(d) => html(
                StatusCode::OK,
                &format!("Dry run of {p}/{r}"),
                Nav::Catalog,
                &dry_html(&d.request, Some(&d.order)),
            ),
            Err(err) => logged(err.code(), &err, Nav::Catalog),
        },
        (Some((p, r)), _, true) => {
            let res = runner.run_route(p, r, &t.vars, &ctx).await;
            html(
                StatusCode::OK,
                &format!("Run of {p}/{r}"),
                Nav::Catalog,
                &route_html(&res),
            )
        }
        (None, Some(k), false) => match runner.dry_run_config(k, &t.vars).await {
            Ok(d) => html(
                StatusCode::OK,
                &format!("Dry run of {k}"),
                Nav::Catalog,
                &dry_html(&d, None),
            ),
            Err(err) => logged(err.code(), &err, Nav::Catalog),
        },
        (None, Some(k), true) => {
            let res = runner.run_once(k, &t.vars, &ctx).await;
            html(
                StatusCode::OK,
                &format!("Run of {k}"),
                Nav::Catalog,
                &result_html(&res),
            )
        }
        (None, None, _) => failure(Code::InvalidInput, "pick a config or a route", Nav::Catalog),
    }
}

// ---- audit trail -----------------------------------------------------------------------------

fn filter_form(f: &TrailFilter) -> String {
    let input = |name: &str, label: &str, v: &Option<String>, kind: &str| {
        format!(
            "<label>{label}<input type=\"{kind}\" name=\"{name}\" id=\"f-{name}\" value=\"{}\"></label>",
            e(v.as_deref().unwrap_or(""))
        )
    };
    let status = |v: &str, label: &str| {
        let sel = if f.status.map(|s| s.as_str()) == Some(v) || (v.is_empty() && f.status.is_none())
        {
            " selected"
        } else {
            ""
        };
        format!("<option value=\"{v}\"{sel}>{label}</option>")
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/audit\">{}{}{}{}{}\
         <label>Status<select name=\"status\" id=\"f-status\">{}{}{}</select></label>{}{}\
         <button id=\"filter\">Filter</button> <a href=\"/audit\">clear</a></form>",
        input("since", "Since (UTC)", &f.since, "text"),
        input("until", "Until (UTC)", &f.until, "text"),
        input("config", "Config", &f.config_key, "text"),
        input("project", "Project", &f.project, "text"),
        input("route", "Route", &f.route_key, "text"),
        status("", "any"),
        status("ok", "ok"),
        status("error", "error"),
        input("code", "Error code", &f.error_code, "text"),
        input("trace", "Trace id", &f.trace_id, "text"),
    )
}

/// `GET /audit`: the trail, filtered, a keyset page at a time.
pub(super) async fn trail(State(c): S, Query(q): Query<Vec<(String, String)>>) -> Response {
    let fields: HashMap<String, String> = q.into_iter().collect();
    let filter = match TrailFilter::parse(&fields) {
        Ok(f) => f,
        Err(err) => return failure(Code::InvalidInput, &err.to_string(), Nav::Trail),
    };
    let after = match fields.get("after").filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match TrailCursor::decode(a) {
            Some(c) => Some(c),
            None => return failure(Code::InvalidInput, "after: not a page cursor", Nav::Trail),
        },
    };
    let page = match c
        .app
        .runner
        .store()
        .audit_page(&filter, after.as_ref(), PAGE)
        .await
    {
        Ok(p) => p,
        Err(err) => return store_failure(&err, Nav::Trail),
    };
    let rows: Vec<Vec<String>> = page
        .rows
        .iter()
        .map(|r| {
            let route = match (&r.project_name, &r.route_key) {
                (Some(p), Some(k)) => format!(
                    "{} <span class=\"dim\">#{}</span>",
                    e(&format!("{p}/{k}")),
                    r.route_attempt.unwrap_or(0)
                ),
                _ => opt(None),
            };
            let status = match (&r.error_code, r.status.as_deref()) {
                (Some(code), _) => format!("{} <code>{}</code>", badge("error"), e(code)),
                (None, Some(s)) => badge(s),
                (None, None) => badge("ok"),
            };
            vec![
                link(&format!("/audit/{}", r.id), &format!("#{}", r.id)),
                e(&r.created_at),
                e(&r.config_key),
                opt(r.model_name.as_deref()),
                route,
                status,
                r.http_status.to_string(),
                r.duration_ms.to_string(),
                r.total_tokens.map_or_else(|| opt(None), |t| t.to_string()),
                usd(r.cost_nano_usd),
                opt(r.trigger_source.as_deref()),
                r.trace_id.as_ref().map_or_else(
                    || opt(None),
                    |t| link(&format!("/trace/{}", seg(t)), t.get(..8).unwrap_or(t)),
                ),
            ]
        })
        .collect();
    let mut body = filter_form(&filter);
    body.push_str(&table_html(
        &[
            "Id",
            "Time (UTC)",
            "Config",
            "Model",
            "Route",
            "Status",
            "HTTP",
            "ms",
            "Tokens",
            "Cost",
            "Trigger",
            "Trace",
        ],
        &rows,
    ));
    body.push_str("<div class=\"pager\">");
    if after.is_some() {
        body.push_str(&link(
            &format!("/audit{}", query(&filter.pairs())),
            "« newest",
        ));
    }
    if let Some(next) = &page.next {
        let mut pairs = filter.pairs();
        pairs.push(("after", next.encode()));
        body.push_str(&format!(
            "<a id=\"older\" href=\"/audit{}\">older »</a>",
            query(&pairs)
        ));
    }
    body.push_str("</div>");
    html(StatusCode::OK, "Audit trail", Nav::Trail, &body)
}

/// A spilled body's object: `{"$ref": "s3://bucket/key", "bytes", "sha256"}`.
fn spilled(text: &str) -> Option<(String, String, Option<String>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let r = v.get("$ref")?.as_str()?.strip_prefix("s3://")?;
    let (bucket, key) = r.split_once('/')?;
    Some((
        bucket.to_owned(),
        key.to_owned(),
        v.get("sha256").and_then(Value::as_str).map(str::to_owned),
    ))
}

fn body_section(id: i64, which: &str, text: Option<&str>) -> String {
    let mut h = format!(
        "<h2>{} body</h2>",
        if which == "request" {
            "Request"
        } else {
            "Response"
        }
    );
    match text {
        None => h.push_str(&opt(None)),
        Some(t) => {
            if spilled(t).is_some() {
                h.push_str(&format!(
                    "<p>Stored in object storage. <a id=\"fetch-{which}\" href=\"/audit/{id}/body/{which}\">Fetch it</a></p>"
                ));
            }
            h.push_str(&json_text_block(t));
        }
    }
    h
}

/// `GET /audit/{id}`: one row, bodies pretty-printed.
pub(super) async fn detail(State(c): S, Path(id): Path<i64>) -> Response {
    let row = match c.app.runner.store().audit_row(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failure(
                Code::InvalidInput,
                &format!("no audit row #{id}"),
                Nav::Trail,
            );
        }
        Err(err) => return store_failure(&err, Nav::Trail),
    };
    let text = |k: &str| row.get(k).and_then(Value::as_str);
    let mut facts = Vec::new();
    for (k, v) in &row {
        if matches!(
            k.as_str(),
            "request_body_json" | "response_body_json" | "created_at"
        ) {
            continue;
        }
        let cell = match (k.as_str(), v) {
            (_, Value::Null) => opt(None),
            ("trace_id", Value::String(t)) => link(&format!("/trace/{}", seg(t)), t),
            (_, Value::String(s)) => e(s),
            (_, other) => e(&other.to_string()),
        };
        facts.push((k.as_str(), cell));
    }
    let mut body = facts_html(&facts);
    body.push_str(&body_section(id, "request", text("request_body_json")));
    body.push_str(&body_section(id, "response", text("response_body_json")));
    html(
        StatusCode::OK,
        &format!("Audit row #{id}"),
        Nav::Trail,
        &body,
    )
}

/// `GET /audit/{id}/body/{which}`: a spilled body, fetched from object storage on demand and
/// checked against the SHA-256 the row recorded.
pub(super) async fn spilled_body(State(c): S, Path((id, which)): Path<(i64, String)>) -> Response {
    let column = match which.as_str() {
        "request" => "request_body_json",
        "response" => "response_body_json",
        _ => return not_found().await,
    };
    let row = match c.app.runner.store().audit_row(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failure(
                Code::InvalidInput,
                &format!("no audit row #{id}"),
                Nav::Trail,
            );
        }
        Err(err) => return store_failure(&err, Nav::Trail),
    };
    let Some((bucket, key, sha)) = row.get(column).and_then(Value::as_str).and_then(spilled) else {
        return failure(Code::InvalidInput, "this body was not spilled", Nav::Trail);
    };
    // A provider's answer is stored as sent: one shaped like a reference must not make the
    // console read any object it can reach. Only the spill-over location is ours.
    let ours = c.app.object_settings().bucket.as_deref() == Some(bucket.as_str())
        && key.starts_with(&c.app.object_settings().spill_prefix);
    if !ours {
        return failure(
            Code::ObjectAccessDenied,
            "this body names an object outside the spill-over location",
            Nav::Trail,
        );
    }
    let bytes = match c.app.objects.get(&bucket, &key).await {
        Ok(b) => b,
        Err(err) => return logged(err.code(), &err, Nav::Trail),
    };
    use sha2::Digest;
    let got = crate::crypto::hex(&sha2::Sha256::digest(&bytes));
    let mut body = facts_html(&[
        ("Object", e(&format!("s3://{bucket}/{key}"))),
        ("Bytes", bytes.len().to_string()),
        (
            "SHA-256",
            match sha {
                Some(s) if s == got => format!("{} {}", badge("ok"), e(&got)),
                Some(s) => format!(
                    "{} recorded {} · fetched {}",
                    badge("error"),
                    e(&s),
                    e(&got)
                ),
                None => e(&got),
            },
        ),
    ]);
    body.push_str(&json_text_block(&String::from_utf8_lossy(&bytes)));
    html(
        StatusCode::OK,
        &format!("Audit row #{id}: {which} body"),
        Nav::Trail,
        &body,
    )
}

/// `GET /trace/{trace}`: a run's rows in order (a route's member attempts and handovers).
pub(super) async fn trace(State(c): S, Path(trace): Path<String>) -> Response {
    let rows = match c.app.runner.store().audit_rows_for_trace(&trace).await {
        Ok(r) => r,
        Err(err) => return store_failure(&err, Nav::Trail),
    };
    let t = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let n = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_i64);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = n(r, "id").unwrap_or_default();
            vec![
                n(r, "route_attempt").map_or_else(|| opt(None), |a| a.to_string()),
                link(&format!("/audit/{id}"), &format!("#{id}")),
                opt(t(r, "created_at_text").as_deref()),
                opt(t(r, "config_key").as_deref()),
                opt(t(r, "model_name").as_deref()),
                match t(r, "error_code") {
                    Some(code) => format!("{} <code>{}</code>", badge("error"), e(&code)),
                    None => badge("ok"),
                },
                opt(t(r, "handover_reason").as_deref()),
                n(r, "duration_ms").unwrap_or_default().to_string(),
                usd(n(r, "cost_nano_usd")),
            ]
        })
        .collect();
    let route = rows.first().and_then(|r| {
        Some(format!(
            "{}/{} ({})",
            t(r, "project_name")?,
            t(r, "route_key")?,
            t(r, "route_policy").unwrap_or_default()
        ))
    });
    let mut body = facts_html(&[
        ("Trace", e(&trace)),
        ("Route", opt(route.as_deref())),
        ("Rows", rows.len().to_string()),
    ]);
    body.push_str(&table_html(
        &[
            "Member",
            "Row",
            "Time (UTC)",
            "Config",
            "Model",
            "Status",
            "Handover reason",
            "ms",
            "Cost",
        ],
        &table,
    ));
    html(StatusCode::OK, &format!("Trace {trace}"), Nav::Trail, &body)
}

// ---- uploads and evaluations -----------------------------------------------------------------

fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = crate::model::cost::civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `GET /uploads`: media jobs, newest first, and the mappings that route them.
pub(super) async fn uploads(State(c): S) -> Response {
    let db = c.app.runner.store();
    let jobs = match db.list_jobs(200).await {
        Ok(j) => j,
        Err(err) => return store_failure(&err, Nav::Uploads),
    };
    let maps = match db.list_mappings().await {
        Ok(m) => m,
        Err(err) => return store_failure(&err, Nav::Uploads),
    };
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let audits = j
                .audit_ids
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse::<i64>().ok())
                .map(|id| link(&format!("/audit/{id}"), &format!("#{id}")))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                j.id.to_string(),
                e(&when(j.created_ms)),
                e(&format!("{}/{}", j.bucket, j.object_key)),
                badge(&j.status),
                j.attempts.to_string(),
                match (&j.project_name, &j.route_key) {
                    (Some(p), Some(r)) => link(
                        &format!("/routes/{}/{}", seg(p), seg(r)),
                        &format!("{p}/{r}"),
                    ),
                    _ => opt(None),
                },
                j.error_code
                    .as_ref()
                    .map_or_else(|| opt(None), |c| format!("<code>{}</code>", e(c))),
                j.duration_ms.map_or_else(|| opt(None), |d| d.to_string()),
                if j.result_key.is_some() {
                    link(&format!("/uploads/{}/result", j.id), "result")
                } else {
                    opt(None)
                },
                j.trace_id.as_ref().map_or_else(
                    || opt(None),
                    |t| link(&format!("/trace/{}", seg(t)), t.get(..8).unwrap_or(t)),
                ),
                if audits.is_empty() { opt(None) } else { audits },
            ]
        })
        .collect();
    let mut body = String::from("<h2>Jobs</h2>");
    body.push_str(&table_html(
        &[
            "Id",
            "Created (UTC)",
            "Object",
            "Status",
            "Claims",
            "Route",
            "Error",
            "ms",
            "Result",
            "Trace",
            "Audit rows",
        ],
        &rows,
    ));
    body.push_str("<h2>Mappings</h2>");
    let rows: Vec<Vec<String>> = maps
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                e(&m.bucket),
                e(&format!("{}*{}", m.key_prefix, m.key_suffix)),
                link(
                    &format!("/routes/{}/{}", seg(&m.project), seg(&m.route_key)),
                    &format!("{}/{}", m.project, m.route_key),
                ),
                m.variables.as_ref().map_or_else(|| opt(None), json_block),
                badge(if m.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["Id", "Bucket", "Keys", "Route", "Variables", ""],
        &rows,
    ));
    html(StatusCode::OK, "Uploads", Nav::Uploads, &body)
}

/// `GET /uploads/{id}/result`: the job's result object, fetched from object storage.
pub(super) async fn job_result(State(c): S, Path(id): Path<i64>) -> Response {
    let job = match c.app.runner.store().job_by_id(id).await {
        Ok(Some(j)) => j,
        Ok(None) => return failure(Code::InvalidInput, &format!("no job #{id}"), Nav::Uploads),
        Err(err) => return store_failure(&err, Nav::Uploads),
    };
    let (Some(bucket), Some(key)) = (job.result_bucket.as_deref(), job.result_key.as_deref())
    else {
        return failure(
            Code::InvalidInput,
            "this job has no result object",
            Nav::Uploads,
        );
    };
    match c.app.objects.get(bucket, key).await {
        Ok(bytes) => {
            let mut body = facts_html(&[("Object", e(&format!("s3://{bucket}/{key}")))]);
            body.push_str(&json_text_block(&String::from_utf8_lossy(&bytes)));
            html(
                StatusCode::OK,
                &format!("Job #{id}: result"),
                Nav::Uploads,
                &body,
            )
        }
        Err(err) => logged(err.code(), &err, Nav::Uploads),
    }
}

/// Pass rate per run over time, one line per suite (SVG, no script).
fn pass_rate_chart(runs: &[crate::model::eval::EvalRun]) -> String {
    let mut by_suite: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
    for r in runs {
        let Some(summary) = &r.summary else { continue };
        let (passed, total) = summary
            .iter()
            .fold((0usize, 0usize), |(p, t), s| (p + s.passed, t + s.results));
        if total > 0 {
            by_suite
                .entry(r.suite.as_str())
                .or_default()
                .push((r.created_ms, passed as f64 / total as f64));
        }
    }
    if by_suite.is_empty() {
        return "<p class=\"dim\">No finished runs yet.</p>".into();
    }
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let xs: Vec<i64> = by_suite.values().flatten().map(|(t, _)| *t).collect();
    let (lo, hi) = (
        xs.iter().min().copied().unwrap_or(0),
        xs.iter().max().copied().unwrap_or(1),
    );
    let span = ((hi - lo).max(1)) as f64;
    let x = |t: i64| pad + (t - lo) as f64 / span * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v * (h - 2.0 * pad);
    let colors = [
        "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
    ];
    let mut s = format!(
        "<svg id=\"pass-rates\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"pass rate per run\">\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"{}\" font-size=\"10\">100%</text><text x=\"4\" y=\"{}\" font-size=\"10\">0%</text>",
        y(0.0),
        w - pad,
        y(0.0),
        y(1.0) + 4.0,
        y(0.0) + 4.0
    );
    for (i, (suite, pts)) in by_suite.iter().enumerate() {
        let color = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        for (t, v) in pts {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{} {:.1}%</title></circle>",
                x(*t),
                y(*v),
                e(suite),
                v * 100.0
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            w - pad - 120.0,
            pad + 14.0 * i as f64,
            e(suite)
        ));
    }
    s.push_str("</svg>");
    s
}

/// `GET /evals`: runs, newest first, and pass rates over time.
pub(super) async fn evals(State(c): S) -> Response {
    let mut runs = match c.app.runner.store().eval_runs(None, 200).await {
        Ok(r) => r,
        Err(err) => return store_failure(&err, Nav::Evals),
    };
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let (passed, total) = r.summary.as_ref().map_or((0, 0), |s| {
                s.iter()
                    .fold((0, 0), |(p, t), x| (p + x.passed, t + x.results))
            });
            vec![
                link(&format!("/evals/{}", seg(&r.run_key)), &r.run_key),
                e(&r.suite),
                badge(&r.status),
                e(&when(r.created_ms)),
                e(&r.trigger),
                if total > 0 {
                    format!(
                        "{passed}/{total} ({:.1}%)",
                        passed as f64 * 100.0 / total as f64
                    )
                } else {
                    opt(None)
                },
                r.gate.as_ref().map_or_else(
                    || opt(None),
                    |g| badge(if g.passed { "passed" } else { "failed" }),
                ),
            ]
        })
        .collect();
    let mut chronological = runs.clone();
    chronological.reverse();
    let mut body = String::from("<h2>Pass rate over time</h2>");
    body.push_str(&pass_rate_chart(&chronological));
    body.push_str("<h2>Runs</h2>");
    body.push_str(&table_html(
        &[
            "Run",
            "Suite",
            "Status",
            "Started (UTC)",
            "Trigger",
            "Passed",
            "Gate",
        ],
        &rows,
    ));
    html(StatusCode::OK, "Evaluations", Nav::Evals, &body)
}

/// `GET /evals/{run}`: the run's report, as `eval run --out report.html` writes it.
pub(super) async fn eval_run(State(c): S, Path(run_key): Path<String>) -> Response {
    let db = c.app.runner.store();
    let run = match db.eval_run(&run_key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failure(
                Code::UnknownReference,
                &format!("no evaluation run {run_key:?}"),
                Nav::Evals,
            );
        }
        Err(err) => return store_failure(&err, Nav::Evals),
    };
    let mut results = match db.eval_results(&run_key).await {
        Ok(r) => r,
        Err(err) => return store_failure(&err, Nav::Evals),
    };
    let report = crate::eval::report::stored(run, &mut results);
    let page = crate::eval::report::html(&report);
    // The report's own filter script, allowed by its hash and nothing else.
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(
        crate::eval::report::FILTER_SCRIPT.as_bytes(),
    ));
    let csp = super::guard::CSP.replacen(
        "default-src 'none';",
        &format!("default-src 'none'; script-src 'sha256-{hash}';"),
        1,
    );
    let mut r = Html(page).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// Anything else.
pub(super) async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Not found",
        Nav::Catalog,
        "<p>No such page. Start from the <a href=\"/\">catalog</a>.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_try_form_reads_variables_extra_json_and_the_action() {
        let t = parse_try(vec![
            ("project".into(), "p".into()),
            ("route".into(), "r".into()),
            ("var.TEXT".into(), "hi".into()),
            ("var.EMPTY".into(), String::new()),
            ("vars_json".into(), "{\"N\": 3}".into()),
            ("action".into(), "run".into()),
        ])
        .unwrap();
        assert!(t.run);
        assert_eq!(t.route, Some(("p".into(), "r".into())));
        assert_eq!(
            Value::Object(t.vars),
            serde_json::json!({"TEXT": "hi", "N": 3})
        );
        assert!(
            parse_try(vec![
                ("config".into(), "c".into()),
                ("vars_json".into(), "[1]".into())
            ])
            .is_err()
        );
        assert!(parse_try(vec![("action".into(), "dry".into())]).is_err());
    }

    #[test]
    fn placeholders_come_once_in_first_use_order() {
        let m = serde_json::json!([
            {"role": "system", "content": "{{B}} then {{A}}"},
            {"role": "user", "content": [{"type": "text", "text": "{{A}} {{C}}"}]}
        ]);
        assert_eq!(placeholders(&m), ["B", "A", "C"]);
    }

    #[test]
    fn spilled_references_name_their_bucket_key_and_digest() {
        assert_eq!(
            spilled(r#"{"$ref":"s3://b/ai-runner/spill/t/x.json","bytes":9,"sha256":"ab"}"#),
            Some((
                "b".into(),
                "ai-runner/spill/t/x.json".into(),
                Some("ab".into())
            ))
        );
        assert_eq!(spilled(r#"{"model":"m"}"#), None);
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(when(1_764_590_400_000), "2025-12-01 12:00:00");
    }
}
