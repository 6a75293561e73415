//! Reading what a run needs: a config by key, a route with its members, the round-robin cursor.
//! This is the [`Store`] port's implementation.
//!
//! Invariants: resolving a config_key is one query; a route is two (the route, its members);
//! inactive configs, connections, routes and projects are invisible; JSON columns are parsed here,
//! once, into the model's types.

use sqlx::Row;

use super::dialect::{self, is_missing_table};
use super::{Db, StoreError, db_err, json_col, on_pool, sql};
use crate::model::{
    AuditRow, ConnectionInfo, PromptInfo, ResolvedConfig, ResolvedRoute, RouteMember,
};
use crate::ports::Store;

impl Store for Db {
    async fn resolve_config(&self, config_key: &str) -> Result<ResolvedConfig, StoreError> {
        let pool = self.pool().await?;
        let row = on_pool!(pool, |p| {
            let row = sqlx::query(sql::RESOLVE_CONFIG)
                .bind(config_key)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            row.map(|r| raw_config(&r)).transpose().map_err(db_err)?
        });
        row.ok_or_else(|| StoreError::ConfigNotFound(config_key.to_owned()))?
            .into_resolved()
    }

    async fn insert_audit(&self, row: &AuditRow) -> Result<i64, StoreError> {
        self.write_audit(row).await
    }

    async fn resolve_route(
        &self,
        project: &str,
        route_key: &str,
    ) -> Result<ResolvedRoute, StoreError> {
        let pool = self.pool().await?;
        let route = on_pool!(pool, |p| {
            let row = sqlx::query(sql::RESOLVE_ROUTE)
                .bind(project)
                .bind(route_key)
                .fetch_optional(p)
                .await
                .map_err(db_err)?;
            row.map(|r| raw_route(&r)).transpose().map_err(db_err)?
        })
        .ok_or_else(|| StoreError::RouteNotFound {
            project: project.to_owned(),
            route_key: route_key.to_owned(),
        })?;
        let members = on_pool!(pool, |p| {
            let rows = sqlx::query(sql::ROUTE_MEMBERS)
                .bind(route.route_id)
                .fetch_all(p)
                .await
                .map_err(db_err)?;
            rows.iter()
                .map(|r| -> Result<_, sqlx::Error> {
                    Ok((
                        r.try_get::<i64, _>("member_id")?,
                        r.try_get::<i64, _>("priority")?,
                        r.try_get::<i64, _>("weight")?,
                        raw_config(r)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?
        });
        let members = members
            .into_iter()
            .map(|(member_id, priority, weight, raw)| {
                Ok(RouteMember {
                    member_id,
                    priority,
                    weight,
                    config: raw.into_resolved()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let overrides = route.prompt.into_resolved()?;
        Ok(ResolvedRoute {
            route_id: route.route_id,
            project: route.project,
            route_key: route.route_key,
            policy: route.policy,
            policy_config: json_col(route.policy_config_json, "ai_route_v2.policy_config_json")?,
            variables: json_col(route.route_variables_json, "ai_route_v2.variables_json")?,
            response_format: json_col(
                route.route_response_format_json,
                "ai_route_v2.response_format_json",
            )?,
            prompt: overrides.prompt,
            params: overrides.params,
            members,
        })
    }

    async fn next_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        dialect::next_cursor(self.pool().await?, route_id).await
    }

    async fn catalog_version(&self) -> Result<Option<i64>, StoreError> {
        let pool = self.pool().await?;
        let res = on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(sql::CATALOG_VERSION)
            .fetch_optional(p)
            .await);
        match res {
            Ok(v) => Ok(Some(v.unwrap_or(0))),
            Err(e) if is_missing_table(&e) => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }

    fn local_catalog_writes(&self) -> u64 {
        Db::catalog_writes()
    }

    async fn peek_cursor(&self, route_id: i64) -> Result<Option<u64>, StoreError> {
        let pool = self.pool().await?;
        let res = on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(sql::PEEK_CURSOR)
            .bind(route_id)
            .fetch_optional(p)
            .await);
        match res {
            Ok(Some(v)) => Ok(Some(u64::try_from(v).unwrap_or(0) + 1)),
            Ok(None) => Ok(Some(0)),
            Err(e) if is_missing_table(&e) => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }
}

fn raw_config<'r, R: Row>(r: &'r R) -> Result<RawConfig, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawConfig {
        config_id: r.try_get("config_id")?,
        config_key: r.try_get("config_key")?,
        model: r.try_get("model_name")?,
        connection_id: r.try_get("connection_id")?,
        connection_name: r.try_get("connection_name")?,
        connection_provider: r.try_get("connection_provider")?,
        base_url: r.try_get("base_url")?,
        key_blob: r.try_get("key_blob")?,
        prompt_name: r.try_get("prompt_name")?,
        prompt_version: r.try_get("prompt_version")?,
        messages_json: r.try_get("messages_json")?,
        response_format_json: r.try_get("response_format_json")?,
        variables_json: r.try_get("variables_json")?,
        params_json: r.try_get("params_json")?,
    })
}

struct RawRoute {
    route_id: i64,
    project: String,
    route_key: String,
    policy: String,
    policy_config_json: Option<String>,
    route_variables_json: Option<String>,
    route_response_format_json: Option<String>,
    prompt: RawConfig,
}

fn raw_route<'r, R: Row>(r: &'r R) -> Result<RawRoute, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawRoute {
        route_id: r.try_get("route_id")?,
        project: r.try_get("project_name")?,
        route_key: r.try_get("route_key")?,
        policy: r.try_get("policy")?,
        policy_config_json: r.try_get("policy_config_json")?,
        route_variables_json: r.try_get("route_variables_json")?,
        route_response_format_json: r.try_get("route_response_format_json")?,
        // The route's own prompt and params travel in the same column names as a config's.
        prompt: RawConfig {
            config_id: 0,
            config_key: String::new(),
            model: String::new(),
            connection_id: 0,
            connection_name: String::new(),
            connection_provider: String::new(),
            base_url: String::new(),
            key_blob: None,
            prompt_name: r.try_get("prompt_name")?,
            prompt_version: r.try_get("prompt_version")?,
            messages_json: r.try_get("messages_json")?,
            response_format_json: r.try_get("response_format_json")?,
            variables_json: r.try_get("variables_json")?,
            params_json: r.try_get("params_json")?,
        },
    })
}

/// The resolve query's row before its JSON columns are parsed.
struct RawConfig {
    config_id: i64,
    config_key: String,
    model: String,
    connection_id: i64,
    connection_name: String,
    connection_provider: String,
    base_url: String,
    key_blob: Option<String>,
    prompt_name: Option<String>,
    prompt_version: Option<String>,
    messages_json: Option<String>,
    response_format_json: Option<String>,
    variables_json: Option<String>,
    params_json: Option<String>,
}

impl RawConfig {
    fn into_resolved(self) -> Result<ResolvedConfig, StoreError> {
        let prompt = match (
            self.prompt_name,
            json_col(self.messages_json, "ai_prompt.messages_json")?,
        ) {
            (Some(name), Some(messages)) => Some(PromptInfo {
                name,
                version: self.prompt_version.unwrap_or_default(),
                messages,
                response_format: json_col(
                    self.response_format_json,
                    "ai_prompt.response_format_json",
                )?,
                variables: json_col(self.variables_json, "ai_prompt.variables_json")?,
            }),
            _ => None,
        };
        Ok(ResolvedConfig {
            config_id: self.config_id,
            config_key: self.config_key,
            model: self.model,
            connection: ConnectionInfo {
                id: self.connection_id,
                name: self.connection_name,
                provider: self.connection_provider,
                base_url: self.base_url,
                key_blob: self.key_blob.unwrap_or_default(),
            },
            prompt,
            params: json_col(self.params_json, "ai_param_profile.params_json")?,
        })
    }
}
