//! Applying a configuration catalog to the database and exporting it back (`cfg gen`,
//! `cfg export`, `cfg route-pool`).
//!
//! Invariants: the plan is computed from what the database holds, so applying the same file twice
//! changes nothing and burns no ids; every write of one apply happens in one transaction (all or
//! nothing); a dry run only reads; keys are encrypted on write in our current (v2) format, and a
//! key that already decrypts to the same value is left alone; an exported file holds no secret
//! (keys become `${<CONNECTION>_API_KEY}` references, and applying such a reference whose variable
//! is unset keeps the stored key).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::{Db, InsertId, StoreError, connection_binding, json_col, on_pool};
use crate::catalog::{
    Catalog, Config, Connection, Member, Model, ParamProfile, Prompt, PromptRef, Route,
};
use crate::crypto::Keyring;

/// What applying a catalog does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// New row.
    Create,
    /// Existing row, changed.
    Update,
    /// Existing row, as is.
    Unchanged,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// `connection`, `model`, `param_profile`, `prompt`, `config`, `project`, `route`, `member`.
    pub kind: &'static str,
    /// Its natural key.
    pub name: String,
    /// What happens.
    pub action: Action,
    /// Which fields change (for updates).
    pub changes: Vec<&'static str>,
}

/// Why a catalog cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A key reference or placeholder cannot be resolved.
    #[error("{path}: {message}")]
    Key {
        /// YAML path.
        path: String,
        /// Why.
        message: String,
    },
    /// Encryption failed (no pepper).
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApplyError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Key { .. } => "KEY_UNRESOLVED",
            Self::Crypto(e) => e.code(),
            Self::Store(e) => e.code(),
        }
    }
}

/// Row shapes of the snapshot queries.
type PromptRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
type ConfigRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);
type RouteRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// The database's configuration as it is now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    connections: BTreeMap<String, (Connection, String)>,
    models: BTreeMap<String, Model>,
    profiles: BTreeMap<String, ParamProfile>,
    prompts: BTreeMap<(String, String), Prompt>,
    configs: BTreeMap<String, Config>,
    routes: BTreeMap<(String, String), Route>,
}

impl Db {
    /// Reads every configuration row (a handful of queries, read-only).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let pool = self.pool().await?;
        let mut s = Snapshot::default();
        let conns: Vec<(String, String, String, Option<String>, i64)> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT name, provider, base_url, CAST(api_key_encrypted AS CHAR), CAST(is_active AS SIGNED) FROM ai_connection ORDER BY id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        for (name, provider, base_url, blob, active) in conns {
            let blob = blob.unwrap_or_default();
            s.connections.insert(
                name.clone(),
                (
                    Connection {
                        name: name.clone(),
                        provider,
                        base_url,
                        api_key: Some(env_reference(&name)),
                        api_key_encrypted: None,
                        active: active != 0,
                    },
                    blob,
                ),
            );
        }
        let models: Vec<(String, String)> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT m.name, c.name FROM ai_model m JOIN ai_connection c ON c.id = m.connection_id ORDER BY m.id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        for (name, connection) in models {
            s.models.insert(name.clone(), Model { name, connection });
        }
        let profiles: Vec<(String, Option<String>)> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT name, CAST(params_json AS CHAR) FROM ai_param_profile ORDER BY id"
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::Query)?;
        for (name, params) in profiles {
            let params = match json_col(params, "ai_param_profile.params_json")? {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            s.profiles
                .insert(name.clone(), ParamProfile { name, params });
        }
        let prompts: Vec<PromptRow> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT name, version, CAST(messages_json AS CHAR), CAST(response_format_json AS CHAR), CAST(variables_json AS CHAR), description FROM ai_prompt ORDER BY id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        for (name, version, messages, rf, vars, description) in prompts {
            let variables = match json_col(vars, "ai_prompt.variables_json")? {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            };
            s.prompts.insert(
                (name.clone(), version.clone()),
                Prompt {
                    name,
                    version,
                    messages: json_col(messages, "ai_prompt.messages_json")?.unwrap_or(Value::Null),
                    response_format: json_col(rf, "ai_prompt.response_format_json")?,
                    variables,
                    description,
                },
            );
        }
        let configs: Vec<ConfigRow> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT c.config_key, m.name, p.name, p.version, pp.name, c.description, CAST(c.is_active AS SIGNED) FROM ai_config c \
             JOIN ai_model m ON m.id = c.model_id LEFT JOIN ai_prompt p ON p.id = c.prompt_id \
             LEFT JOIN ai_param_profile pp ON pp.id = c.param_profile_id ORDER BY c.id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        for (key, model, pname, pver, profile, description, active) in configs {
            s.configs.insert(
                key.clone(),
                Config {
                    config_key: key,
                    model,
                    prompt: pname
                        .zip(pver)
                        .map(|(name, version)| PromptRef { name, version }),
                    param_profile: profile,
                    description,
                    active: active != 0,
                },
            );
        }
        let routes: Vec<RouteRow> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT CAST(r.id AS SIGNED), pj.name, r.route_key, r.policy, CAST(r.policy_config_json AS CHAR), CAST(r.variables_json AS CHAR), \
             p.name, p.version, pp.name, CAST(r.response_format_json AS CHAR), CAST(r.is_active AS SIGNED) FROM ai_route_v2 r \
             JOIN ai_project_v2 pj ON pj.id = r.project_id LEFT JOIN ai_prompt p ON p.id = r.prompt_id \
             LEFT JOIN ai_param_profile pp ON pp.id = r.param_profile_id ORDER BY r.id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        let members: Vec<(i64, String, i64, i64, i64)> = on_pool!(pool, |p| sqlx::query_as(
            "SELECT CAST(m.route_id AS SIGNED), c.config_key, CAST(m.priority AS SIGNED), CAST(m.weight AS SIGNED), CAST(m.is_active AS SIGNED) \
             FROM ai_route_member_v2 m JOIN ai_config c ON c.id = m.config_id ORDER BY m.priority, m.id"
        ).fetch_all(p).await).map_err(StoreError::Query)?;
        for (id, project, route_key, policy, pc, vars, pname, pver, profile, rf, active) in routes {
            let variables = match json_col(vars, "ai_route_v2.variables_json")? {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            };
            s.routes.insert(
                (project.clone(), route_key.clone()),
                Route {
                    project,
                    route_key,
                    policy,
                    policy_config: json_col(pc, "ai_route_v2.policy_config_json")?,
                    variables,
                    prompt: pname
                        .zip(pver)
                        .map(|(name, version)| PromptRef { name, version }),
                    param_profile: profile,
                    response_format: json_col(rf, "ai_route_v2.response_format_json")?,
                    active: active != 0,
                    members: members
                        .iter()
                        .filter(|m| m.0 == id)
                        .map(|m| Member {
                            config_key: m.1.clone(),
                            priority: m.2,
                            weight: m.3,
                            active: m.4 != 0,
                        })
                        .collect(),
                },
            );
        }
        Ok(s)
    }
}

/// The env-variable reference an export writes for a connection's key.
pub fn env_reference(connection: &str) -> String {
    let var: String = connection
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("${{{var}_API_KEY}}")
}

impl Snapshot {
    /// The names that exist, for reference checks.
    pub fn known(&self) -> crate::catalog::Known {
        crate::catalog::Known {
            connections: self.connections.keys().cloned().collect(),
            models: self.models.keys().cloned().collect(),
            param_profiles: self.profiles.keys().cloned().collect(),
            prompts: self
                .prompts
                .keys()
                .map(|(n, v)| format!("{n}@{v}"))
                .collect(),
            configs: self.configs.keys().cloned().collect(),
        }
    }

    /// A catalog of `routes` that keeps each existing route's other settings (prompt, params,
    /// variables, response format): `cfg route-pool` only sets policy and members.
    pub fn route_pool(&self, routes: Vec<Route>) -> Catalog {
        let routes = routes
            .into_iter()
            .map(|mut r| {
                if let Some(old) = self.routes.get(&(r.project.clone(), r.route_key.clone())) {
                    r.variables = old.variables.clone();
                    r.prompt = old.prompt.clone();
                    r.param_profile = old.param_profile.clone();
                    r.response_format = old.response_format.clone();
                    if r.policy_config.is_none() {
                        r.policy_config = old.policy_config.clone();
                    }
                }
                r
            })
            .collect();
        Catalog {
            routes,
            ..Catalog::default()
        }
    }

    /// The database as a catalog (keys as environment references).
    pub fn to_catalog(&self) -> Catalog {
        Catalog {
            connections: self.connections.values().map(|(c, _)| c.clone()).collect(),
            models: self.models.values().cloned().collect(),
            param_profiles: self.profiles.values().cloned().collect(),
            prompts: self.prompts.values().cloned().collect(),
            configs: self.configs.values().cloned().collect(),
            routes: self.routes.values().cloned().collect(),
        }
    }
}

/// The blob to store for a connection, or `None` to keep the stored one.
fn resolve_key(
    c: &Connection,
    i: usize,
    existing: Option<&str>,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ApplyError> {
    let path = format!("connections[{i}].api_key");
    if let Some(blob) = &c.api_key_encrypted {
        return Ok((existing != Some(blob.as_str())).then(|| blob.clone()));
    }
    let raw = c.api_key.clone().unwrap_or_default();
    if crate::catalog::is_placeholder(&raw) {
        return Err(ApplyError::Key {
            path,
            message: "the key is still the sample's placeholder; put the key (or ${ENV_VAR}) there"
                .into(),
        });
    }
    let plain = match raw.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(var) => match env(var).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None if existing.is_some() => return Ok(None),
            None => {
                return Err(ApplyError::Key {
                    path,
                    message: format!(
                        "environment variable {var} is not set (and the connection has no stored key to keep)"
                    ),
                });
            }
        },
        None => raw,
    };
    let binding = connection_binding(&c.name);
    if let Some(old) = existing
        && ring
            .decrypt(old, &binding)
            .is_ok_and(|k| k.expose() == plain)
        && matches!(Keyring::format_of(old), Ok(crate::crypto::BlobFormat::V2 { ref kid }) if Some(kid.as_str()) == ring.current_kid())
    {
        return Ok(None);
    }
    Ok(Some(ring.encrypt(&plain, &binding)?))
}

fn item(kind: &'static str, name: String, action: Action, changes: Vec<&'static str>) -> PlanItem {
    PlanItem {
        kind,
        name,
        action,
        changes,
    }
}

/// `Create` when there is no `old` row; otherwise `Update` naming the changed fields, or
/// `Unchanged` when none changed.
fn classify<T>(
    old: Option<&T>,
    fields: impl FnOnce(&T) -> Vec<(&'static str, bool)>,
) -> (Action, Vec<&'static str>) {
    let Some(o) = old else {
        return (Action::Create, Vec::new());
    };
    let changed: Vec<&'static str> = fields(o)
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(n, _)| n)
        .collect();
    let action = if changed.is_empty() {
        Action::Unchanged
    } else {
        Action::Update
    };
    (action, changed)
}

/// Computes what applying `cat` would do, plus the key blobs to write.
pub fn plan(
    snap: &Snapshot,
    cat: &Catalog,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<PlanItem>, Vec<Option<String>>), ApplyError> {
    plan_with(snap, cat, ring, env, false)
}

/// [`plan`]; with `exclusive`, active members a route has but the file does not list are
/// deactivated (`cfg route-pool` without `--append`).
pub fn plan_with(
    snap: &Snapshot,
    cat: &Catalog,
    ring: &Keyring,
    env: &dyn Fn(&str) -> Option<String>,
    exclusive: bool,
) -> Result<(Vec<PlanItem>, Vec<Option<String>>), ApplyError> {
    let mut out = Vec::new();
    let mut blobs = Vec::new();
    for (i, c) in cat.connections.iter().enumerate() {
        let old = snap.connections.get(&c.name);
        let blob = resolve_key(c, i, old.map(|o| o.1.as_str()), ring, env)?;
        let (a, ch) = classify(old, |(o, _)| {
            vec![
                ("provider", o.provider != c.provider),
                ("base_url", o.base_url != c.base_url),
                ("active", o.active != c.active),
                ("api_key", blob.is_some()),
            ]
        });
        out.push(item("connection", c.name.clone(), a, ch));
        blobs.push(blob);
    }
    for m in &cat.models {
        let (a, ch) = classify(snap.models.get(&m.name), |o| {
            vec![("connection", o.connection != m.connection)]
        });
        out.push(item("model", m.name.clone(), a, ch));
    }
    for p in &cat.param_profiles {
        let (a, ch) = classify(snap.profiles.get(&p.name), |o| {
            vec![("params", o.params != p.params)]
        });
        out.push(item("param_profile", p.name.clone(), a, ch));
    }
    for p in &cat.prompts {
        let old = snap.prompts.get(&(p.name.clone(), p.version.clone()));
        let (a, ch) = classify(old, |o| {
            vec![
                ("messages", o.messages != p.messages),
                ("response_format", o.response_format != p.response_format),
                ("variables", o.variables != p.variables),
                // An absent description in the file keeps the stored one.
                (
                    "description",
                    p.description.is_some() && o.description != p.description,
                ),
            ]
        });
        out.push(item("prompt", format!("{}@{}", p.name, p.version), a, ch));
    }
    for c in &cat.configs {
        let (a, ch) = classify(snap.configs.get(&c.config_key), |o| {
            vec![
                ("model", o.model != c.model),
                ("prompt", o.prompt != c.prompt),
                ("param_profile", o.param_profile != c.param_profile),
                ("description", o.description != c.description),
                ("active", o.active != c.active),
            ]
        });
        out.push(item("config", c.config_key.clone(), a, ch));
    }
    for r in &cat.routes {
        let old = snap.routes.get(&(r.project.clone(), r.route_key.clone()));
        let (a, ch) = classify(old, |o| {
            vec![
                ("policy", o.policy != r.policy),
                ("policy_config", o.policy_config != r.policy_config),
                ("variables", o.variables != r.variables),
                ("prompt", o.prompt != r.prompt),
                ("param_profile", o.param_profile != r.param_profile),
                ("response_format", o.response_format != r.response_format),
                ("active", o.active != r.active),
            ]
        });
        out.push(item(
            "route",
            format!("{}/{}", r.project, r.route_key),
            a,
            ch,
        ));
        for m in &r.members {
            let om = old.and_then(|o| o.members.iter().find(|x| x.config_key == m.config_key));
            let (a, ch) = classify(om, |x| {
                vec![
                    ("priority", x.priority != m.priority),
                    ("weight", x.weight != m.weight),
                    ("active", x.active != m.active),
                ]
            });
            out.push(item(
                "member",
                format!("{}/{}:{}", r.project, r.route_key, m.config_key),
                a,
                ch,
            ));
        }
        if exclusive && let Some(o) = old {
            for om in o
                .members
                .iter()
                .filter(|om| om.active && !r.members.iter().any(|m| m.config_key == om.config_key))
            {
                out.push(item(
                    "member",
                    format!("{}/{}:{}", r.project, r.route_key, om.config_key),
                    Action::Update,
                    vec!["deactivated"],
                ));
            }
        }
    }
    Ok((out, blobs))
}

macro_rules! id_of {
    ($tx:expr, $sql:expr, $($bind:expr),+) => {{
        let row = sqlx::query($sql)$(.bind($bind))+.fetch_optional(&mut *$tx).await.map_err(StoreError::Query)?;
        match row {
            Some(r) => Some(r.try_get::<i64, _>(0).map_err(StoreError::Query)?),
            None => None,
        }
    }};
}

fn json_text<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref()
        .and_then(|v| serde_json::to_string(v).ok())
        .filter(|t| t != "null")
}

impl Db {
    /// Applies a catalog in one transaction; returns the plan that was carried out.
    pub async fn apply_catalog(
        &self,
        cat: &Catalog,
        ring: &Keyring,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<PlanItem>, ApplyError> {
        self.apply_catalog_with(cat, ring, env, false).await
    }

    /// [`Db::apply_catalog`]; `exclusive` deactivates members a file does not list.
    pub async fn apply_catalog_with(
        &self,
        cat: &Catalog,
        ring: &Keyring,
        env: &dyn Fn(&str) -> Option<String>,
        exclusive: bool,
    ) -> Result<Vec<PlanItem>, ApplyError> {
        let snap = self.snapshot().await?;
        let (items, blobs) = plan_with(&snap, cat, ring, env, exclusive)?;
        if items.iter().all(|i| i.action == Action::Unchanged) {
            return Ok(items);
        }
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(StoreError::Query)?;
            let mut conn_ids = BTreeMap::new();
            for (c, blob) in cat.connections.iter().zip(&blobs) {
                let id = id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_connection WHERE name = ?",
                    &c.name
                );
                let active = i64::from(c.active);
                let id = match (id, blob) {
                    (Some(id), Some(b)) => { sqlx::query("UPDATE ai_connection SET provider = ?, base_url = ?, api_key_encrypted = ?, is_active = ? WHERE id = ?").bind(&c.provider).bind(&c.base_url).bind(b).bind(active).bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?; id }
                    (Some(id), None) => { sqlx::query("UPDATE ai_connection SET provider = ?, base_url = ?, is_active = ? WHERE id = ? AND (provider <> ? OR base_url <> ? OR is_active <> ?)").bind(&c.provider).bind(&c.base_url).bind(active).bind(id).bind(&c.provider).bind(&c.base_url).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?; id }
                    (None, Some(b)) => sqlx::query("INSERT INTO ai_connection (name, provider, base_url, api_key_encrypted, is_active) VALUES (?, ?, ?, ?, ?)").bind(&c.name).bind(&c.provider).bind(&c.base_url).bind(b).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?.insert_id(),
                    (None, None) => return Err(ApplyError::Key { path: format!("connections.{}", c.name), message: "no key to store".into() }),
                };
                conn_ids.insert(c.name.clone(), id);
            }
            for m in &cat.models {
                let conn = match conn_ids.get(&m.connection) {
                    Some(i) => *i,
                    None => id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_connection WHERE name = ?",
                        &m.connection
                    )
                    .ok_or_else(|| ApplyError::Key {
                        path: format!("models.{}", m.name),
                        message: format!("connection {:?} not found", m.connection),
                    })?,
                };
                match id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_model WHERE name = ?",
                    &m.name
                ) {
                    Some(id) => {
                        sqlx::query("UPDATE ai_model SET connection_id = ?, is_active = 1 WHERE id = ? AND connection_id <> ?").bind(conn).bind(id).bind(conn).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                    None => {
                        sqlx::query("INSERT INTO ai_model (name, connection_id, is_active) VALUES (?, ?, 1)").bind(&m.name).bind(conn).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                }
            }
            for (pp, it) in cat
                .param_profiles
                .iter()
                .zip(items.iter().filter(|i| i.kind == "param_profile"))
            {
                if it.action == Action::Unchanged {
                    continue;
                }
                let params = Value::Object(pp.params.clone()).to_string();
                match id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_param_profile WHERE name = ?",
                    &pp.name
                ) {
                    Some(id) => {
                        sqlx::query("UPDATE ai_param_profile SET params_json = ?, is_active = 1 WHERE id = ?").bind(&params).bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                    None => {
                        sqlx::query("INSERT INTO ai_param_profile (name, params_json, is_active) VALUES (?, ?, 1)").bind(&pp.name).bind(&params).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                }
            }
            for (pr, it) in cat
                .prompts
                .iter()
                .zip(items.iter().filter(|i| i.kind == "prompt"))
            {
                if it.action == Action::Unchanged {
                    continue;
                }
                let (m, rf, vars) = (
                    pr.messages.to_string(),
                    json_text(&pr.response_format),
                    json_text(&pr.variables),
                );
                match id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_prompt WHERE name = ? AND version = ?",
                    &pr.name,
                    &pr.version
                ) {
                    Some(id) => {
                        sqlx::query("UPDATE ai_prompt SET messages_json = ?, response_format_json = ?, variables_json = ?, description = COALESCE(?, description), status = 'active' WHERE id = ?").bind(&m).bind(&rf).bind(&vars).bind(&pr.description).bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                    None => {
                        sqlx::query("INSERT INTO ai_prompt (name, version, description, messages_json, response_format_json, variables_json, status) VALUES (?, ?, ?, ?, ?, ?, 'active')").bind(&pr.name).bind(&pr.version).bind(&pr.description).bind(&m).bind(&rf).bind(&vars).execute(&mut *tx).await.map_err(StoreError::Query)?;
                    }
                }
            }
            let mut config_ids = BTreeMap::new();
            for (c, it) in cat
                .configs
                .iter()
                .zip(items.iter().filter(|i| i.kind == "config"))
            {
                let existing = id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_config WHERE config_key = ?",
                    &c.config_key
                );
                if it.action == Action::Unchanged {
                    if let Some(id) = existing {
                        config_ids.insert(c.config_key.clone(), id);
                    }
                    continue;
                }
                let model = id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_model WHERE name = ?",
                    &c.model
                )
                .ok_or_else(|| ApplyError::Key {
                    path: format!("configs.{}", c.config_key),
                    message: format!("model {:?} not found", c.model),
                })?;
                let prompt = match &c.prompt {
                    Some(p) => id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_prompt WHERE name = ? AND version = ?",
                        &p.name,
                        &p.version
                    ),
                    None => None,
                };
                let profile = match &c.param_profile {
                    Some(p) => id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_param_profile WHERE name = ?",
                        p
                    ),
                    None => None,
                };
                let active = i64::from(c.active);
                let id = match existing {
                    Some(id) => { sqlx::query("UPDATE ai_config SET model_id = ?, prompt_id = ?, param_profile_id = ?, description = ?, is_active = ? WHERE id = ?").bind(model).bind(prompt).bind(profile).bind(&c.description).bind(active).bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?; id }
                    None => sqlx::query("INSERT INTO ai_config (config_key, model_id, prompt_id, param_profile_id, description, is_active) VALUES (?, ?, ?, ?, ?, ?)").bind(&c.config_key).bind(model).bind(prompt).bind(profile).bind(&c.description).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?.insert_id(),
                };
                config_ids.insert(c.config_key.clone(), id);
            }
            for r in &cat.routes {
                let project = match id_of!(
                    tx,
                    "SELECT CAST(id AS SIGNED) FROM ai_project_v2 WHERE name = ?",
                    &r.project
                ) {
                    Some(id) => {
                        sqlx::query("UPDATE ai_project_v2 SET status = 'active' WHERE id = ? AND status <> 'active'").bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?;
                        id
                    }
                    None => {
                        sqlx::query("INSERT INTO ai_project_v2 (name, status) VALUES (?, 'active')")
                            .bind(&r.project)
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::Query)?
                            .insert_id()
                    }
                };
                let prompt = match &r.prompt {
                    Some(p) => id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_prompt WHERE name = ? AND version = ?",
                        &p.name,
                        &p.version
                    ),
                    None => None,
                };
                let profile = match &r.param_profile {
                    Some(p) => id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_param_profile WHERE name = ?",
                        p
                    ),
                    None => None,
                };
                let (pc, vars, rf) = (
                    json_text(&r.policy_config),
                    json_text(&r.variables),
                    json_text(&r.response_format),
                );
                let active = i64::from(r.active);
                let route_changed = items.iter().any(|i| {
                    i.kind == "route"
                        && i.name == format!("{}/{}", r.project, r.route_key)
                        && i.action != Action::Unchanged
                });
                let route = match id_of!(tx, "SELECT CAST(id AS SIGNED) FROM ai_route_v2 WHERE project_id = ? AND route_key = ?", project, &r.route_key) {
                    Some(id) => {
                        if route_changed {
                            sqlx::query("UPDATE ai_route_v2 SET policy = ?, policy_config_json = ?, variables_json = ?, prompt_id = ?, param_profile_id = ?, response_format_json = ?, is_active = ? WHERE id = ?").bind(&r.policy).bind(&pc).bind(&vars).bind(prompt).bind(profile).bind(&rf).bind(active).bind(id).execute(&mut *tx).await.map_err(StoreError::Query)?;
                        }
                        id
                    }
                    None => sqlx::query("INSERT INTO ai_route_v2 (project_id, route_key, policy, policy_config_json, variables_json, prompt_id, param_profile_id, response_format_json, is_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").bind(project).bind(&r.route_key).bind(&r.policy).bind(&pc).bind(&vars).bind(prompt).bind(profile).bind(&rf).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?.insert_id(),
                };
                let mut listed: Vec<i64> = Vec::new();
                for m in &r.members {
                    let config = match config_ids.get(&m.config_key) {
                        Some(i) => *i,
                        None => id_of!(
                            tx,
                            "SELECT CAST(id AS SIGNED) FROM ai_config WHERE config_key = ?",
                            &m.config_key
                        )
                        .ok_or_else(|| ApplyError::Key {
                            path: format!("routes.{}/{}", r.project, r.route_key),
                            message: format!("config {:?} not found", m.config_key),
                        })?,
                    };
                    let active = i64::from(m.active);
                    match id_of!(
                        tx,
                        "SELECT CAST(id AS SIGNED) FROM ai_route_member_v2 WHERE route_id = ? AND config_id = ?",
                        route,
                        config
                    ) {
                        Some(id) => {
                            sqlx::query("UPDATE ai_route_member_v2 SET priority = ?, weight = ?, is_active = ? WHERE id = ? AND (priority <> ? OR weight <> ? OR is_active <> ?)").bind(m.priority).bind(m.weight).bind(active).bind(id).bind(m.priority).bind(m.weight).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?;
                        }
                        None => {
                            sqlx::query("INSERT INTO ai_route_member_v2 (route_id, config_id, priority, weight, is_active) VALUES (?, ?, ?, ?, ?)").bind(route).bind(config).bind(m.priority).bind(m.weight).bind(active).execute(&mut *tx).await.map_err(StoreError::Query)?;
                        }
                    }
                    listed.push(config);
                }
                if exclusive {
                    let marks = if listed.is_empty() {
                        "NULL".to_owned()
                    } else {
                        vec!["?"; listed.len()].join(", ")
                    };
                    let sql = format!(
                        "UPDATE ai_route_member_v2 SET is_active = 0 WHERE route_id = ? AND is_active = 1 AND config_id NOT IN ({marks})"
                    );
                    let mut q = sqlx::query(&sql).bind(route);
                    for id in &listed {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await.map_err(StoreError::Query)?;
                }
            }
            tx.commit().await.map_err(StoreError::Query)?;
            Ok::<(), ApplyError>(())
        })?;
        Ok(items)
    }
}
