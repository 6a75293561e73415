//! The one writer of the seven config tables (connections, models, param profiles, prompts,
//! configs, projects and routes with their members), and the snapshot it plans against.
//! `cfg gen`, `cfg route-pool`, quickstart and the test fixtures all write through
//! [`Db::apply_catalog`]; nothing else writes these tables.
//!
//! Invariants: every write of one apply happens in one transaction (all or nothing); the plan
//! ([`crate::catalog::plan`]) is computed from the snapshot, so applying twice changes nothing
//! and burns no ids; a dry run only reads.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::dialect::{self, InsertId};
use super::{Db, StoreError, db_err, json_col, on_pool, sql};
use crate::catalog::{
    Action, ApplyError, Catalog, Config, Connection, Member, Model, ParamProfile, PlanItem,
    PlanKind, Prompt, PromptRef, Route, Snapshot, env_reference, plan_with,
};
use crate::crypto::Keyring;

/// Row shapes of the snapshot queries.
type PromptRow = (
    i64,
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

impl Db {
    /// The base URLs of the active connections of `provider` (one query).
    pub async fn active_connection_urls(&self, provider: &str) -> Result<Vec<String>, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar::<_, String>(
            sql::ACTIVE_CONNECTION_URLS
        )
        .bind(provider)
        .fetch_all(p)
        .await
        .map_err(db_err))
    }

    /// Reads every configuration row (a handful of queries, read-only).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let pool = self.pool().await?;
        let mut s = Snapshot::default();
        let conns: Vec<(i64, String, String, String, Option<String>, i64)> =
            on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_CONNECTIONS)
                .fetch_all(p)
                .await)
            .map_err(db_err)?;
        for (_, name, provider, base_url, blob, active) in conns {
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
        let models: Vec<(i64, String, String)> =
            on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_MODELS)
                .fetch_all(p)
                .await)
            .map_err(db_err)?;
        for (id, name, connection) in models {
            s.model_ids.insert(id, name.clone());
            s.models.insert(name.clone(), Model { name, connection });
        }
        let profiles: Vec<(i64, String, Option<String>)> =
            on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_PROFILES)
                .fetch_all(p)
                .await)
            .map_err(db_err)?;
        for (id, name, params) in profiles {
            let params = match json_col(params, "ai_param_profile.params_json")? {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            s.profile_ids.insert(id, name.clone());
            s.profiles
                .insert(name.clone(), ParamProfile { name, params });
        }
        let prompts: Vec<PromptRow> = on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_PROMPTS)
            .fetch_all(p)
            .await)
        .map_err(db_err)?;
        for (id, name, version, messages, rf, vars, description) in prompts {
            let variables = match json_col(vars, "ai_prompt.variables_json")? {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            };
            s.prompt_ids.insert(id, (name.clone(), version.clone()));
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
        let configs: Vec<ConfigRow> = on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_CONFIGS)
            .fetch_all(p)
            .await)
        .map_err(db_err)?;
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
                    model_id: None,
                    prompt_id: None,
                    param_profile_id: None,
                },
            );
        }
        let routes: Vec<RouteRow> = on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_ROUTES)
            .fetch_all(p)
            .await)
        .map_err(db_err)?;
        let members: Vec<(i64, String, i64, i64, i64)> =
            on_pool!(pool, |p| sqlx::query_as(sql::SNAPSHOT_MEMBERS)
                .fetch_all(p)
                .await)
            .map_err(db_err)?;
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

macro_rules! id_of {
    ($tx:expr, $sql:expr, $($bind:expr),+) => {{
        let row = sqlx::query($sql)$(.bind($bind))+.fetch_optional(&mut *$tx).await.map_err(db_err)?;
        match row {
            Some(r) => Some(r.try_get::<i64, _>(0).map_err(db_err)?),
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
        // The same resolution the plan made: legacy ids become names.
        let resolved = snap.resolve_legacy_ids(cat)?;
        let cat = &resolved;
        if items.iter().all(|i| i.action == Action::Unchanged) {
            return Ok(items);
        }
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(db_err)?;
            let mut conn_ids = BTreeMap::new();
            for (c, blob) in cat.connections.iter().zip(&blobs) {
                let id = id_of!(tx, sql::CONNECTION_ID, &c.name);
                let active = i64::from(c.active);
                let id = match (id, blob) {
                    (Some(id), Some(b)) => {
                        sqlx::query(sql::UPDATE_CONNECTION_WITH_KEY)
                            .bind(&c.provider)
                            .bind(&c.base_url)
                            .bind(b)
                            .bind(active)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        id
                    }
                    (Some(id), None) => {
                        sqlx::query(sql::UPDATE_CONNECTION)
                            .bind(&c.provider)
                            .bind(&c.base_url)
                            .bind(active)
                            .bind(id)
                            .bind(&c.provider)
                            .bind(&c.base_url)
                            .bind(active)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        id
                    }
                    (None, Some(b)) => sqlx::query(sql::INSERT_CONNECTION)
                        .bind(&c.name)
                        .bind(&c.provider)
                        .bind(&c.base_url)
                        .bind(b)
                        .bind(active)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .insert_id(),
                    (None, None) => {
                        return Err(ApplyError::Key {
                            path: format!("connections.{}", c.name),
                            message: "no key to store".into(),
                        });
                    }
                };
                conn_ids.insert(c.name.clone(), id);
            }
            for m in &cat.models {
                let conn = match conn_ids.get(&m.connection) {
                    Some(i) => *i,
                    None => id_of!(tx, sql::CONNECTION_ID, &m.connection).ok_or_else(|| {
                        ApplyError::Key {
                            path: format!("models.{}", m.name),
                            message: format!("connection {:?} not found", m.connection),
                        }
                    })?,
                };
                match id_of!(tx, sql::MODEL_ID, &m.name) {
                    Some(id) => {
                        sqlx::query(sql::UPDATE_MODEL)
                            .bind(conn)
                            .bind(id)
                            .bind(conn)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                    None => {
                        sqlx::query(sql::INSERT_MODEL)
                            .bind(&m.name)
                            .bind(conn)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                }
            }
            for (pp, it) in cat
                .param_profiles
                .iter()
                .zip(items.iter().filter(|i| i.kind == PlanKind::ParamProfile))
            {
                if it.action == Action::Unchanged {
                    continue;
                }
                let params = Value::Object(pp.params.clone()).to_string();
                match id_of!(tx, sql::PROFILE_ID, &pp.name) {
                    Some(id) => {
                        sqlx::query(sql::UPDATE_PROFILE)
                            .bind(&params)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                    None => {
                        sqlx::query(sql::INSERT_PROFILE)
                            .bind(&pp.name)
                            .bind(&params)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                }
            }
            for (pr, it) in cat
                .prompts
                .iter()
                .zip(items.iter().filter(|i| i.kind == PlanKind::Prompt))
            {
                if it.action == Action::Unchanged {
                    continue;
                }
                let (m, rf, vars) = (
                    pr.messages.to_string(),
                    json_text(&pr.response_format),
                    json_text(&pr.variables),
                );
                match id_of!(tx, sql::PROMPT_ID, &pr.name, &pr.version) {
                    Some(id) => {
                        sqlx::query(sql::UPDATE_PROMPT)
                            .bind(&m)
                            .bind(&rf)
                            .bind(&vars)
                            .bind(&pr.description)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                    None => {
                        sqlx::query(sql::INSERT_PROMPT)
                            .bind(&pr.name)
                            .bind(&pr.version)
                            .bind(&pr.description)
                            .bind(&m)
                            .bind(&rf)
                            .bind(&vars)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    }
                }
            }
            let mut config_ids = BTreeMap::new();
            for (c, it) in cat
                .configs
                .iter()
                .zip(items.iter().filter(|i| i.kind == PlanKind::Config))
            {
                let existing = id_of!(tx, sql::CONFIG_ID, &c.config_key);
                if it.action == Action::Unchanged {
                    if let Some(id) = existing {
                        config_ids.insert(c.config_key.clone(), id);
                    }
                    continue;
                }
                let model = id_of!(tx, sql::MODEL_ID, &c.model).ok_or_else(|| ApplyError::Key {
                    path: format!("configs.{}", c.config_key),
                    message: format!("model {:?} not found", c.model),
                })?;
                let prompt = match &c.prompt {
                    Some(p) => id_of!(tx, sql::PROMPT_ID, &p.name, &p.version),
                    None => None,
                };
                let profile = match &c.param_profile {
                    Some(p) => id_of!(tx, sql::PROFILE_ID, p),
                    None => None,
                };
                let active = i64::from(c.active);
                let id = match existing {
                    Some(id) => {
                        sqlx::query(sql::UPDATE_CONFIG)
                            .bind(model)
                            .bind(prompt)
                            .bind(profile)
                            .bind(&c.description)
                            .bind(active)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        id
                    }
                    None => sqlx::query(sql::INSERT_CONFIG)
                        .bind(&c.config_key)
                        .bind(model)
                        .bind(prompt)
                        .bind(profile)
                        .bind(&c.description)
                        .bind(active)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .insert_id(),
                };
                config_ids.insert(c.config_key.clone(), id);
            }
            for r in &cat.routes {
                let project = match id_of!(tx, sql::PROJECT_ID, &r.project) {
                    Some(id) => {
                        sqlx::query(sql::ACTIVATE_PROJECT)
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        id
                    }
                    None => sqlx::query(sql::INSERT_PROJECT)
                        .bind(&r.project)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .insert_id(),
                };
                let prompt = match &r.prompt {
                    Some(p) => id_of!(tx, sql::PROMPT_ID, &p.name, &p.version),
                    None => None,
                };
                let profile = match &r.param_profile {
                    Some(p) => id_of!(tx, sql::PROFILE_ID, p),
                    None => None,
                };
                let (pc, vars, rf) = (
                    json_text(&r.policy_config),
                    json_text(&r.variables),
                    json_text(&r.response_format),
                );
                let active = i64::from(r.active);
                let route_changed = items.iter().any(|i| {
                    i.kind == PlanKind::Route
                        && i.name == format!("{}/{}", r.project, r.route_key)
                        && i.action != Action::Unchanged
                });
                let route = match id_of!(tx, sql::ROUTE_ID, project, &r.route_key) {
                    Some(id) => {
                        if route_changed {
                            sqlx::query(sql::UPDATE_ROUTE)
                                .bind(&r.policy)
                                .bind(&pc)
                                .bind(&vars)
                                .bind(prompt)
                                .bind(profile)
                                .bind(&rf)
                                .bind(active)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
                        }
                        id
                    }
                    None => sqlx::query(sql::INSERT_ROUTE)
                        .bind(project)
                        .bind(&r.route_key)
                        .bind(&r.policy)
                        .bind(&pc)
                        .bind(&vars)
                        .bind(prompt)
                        .bind(profile)
                        .bind(&rf)
                        .bind(active)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?
                        .insert_id(),
                };
                let mut listed: Vec<i64> = Vec::new();
                for m in &r.members {
                    let config = match config_ids.get(&m.config_key) {
                        Some(i) => *i,
                        None => id_of!(tx, sql::CONFIG_ID, &m.config_key).ok_or_else(|| {
                            ApplyError::Key {
                                path: format!("routes.{}/{}", r.project, r.route_key),
                                message: format!("config {:?} not found", m.config_key),
                            }
                        })?,
                    };
                    let active = i64::from(m.active);
                    match id_of!(tx, sql::MEMBER_ID, route, config) {
                        Some(id) => {
                            sqlx::query(sql::UPDATE_MEMBER)
                                .bind(m.priority)
                                .bind(m.weight)
                                .bind(active)
                                .bind(id)
                                .bind(m.priority)
                                .bind(m.weight)
                                .bind(active)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
                        }
                        None => {
                            sqlx::query(sql::INSERT_MEMBER)
                                .bind(route)
                                .bind(config)
                                .bind(m.priority)
                                .bind(m.weight)
                                .bind(active)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
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
                    q.execute(&mut *tx).await.map_err(db_err)?;
                }
            }
            dialect::bumped(
                sqlx::query(dialect::bump_catalog(self.is_mysql()))
                    .execute(&mut *tx)
                    .await,
            )?;
            tx.commit().await.map_err(db_err)?;
            Ok::<(), ApplyError>(())
        })?;
        self.catalog_written();
        Ok(items)
    }
}
