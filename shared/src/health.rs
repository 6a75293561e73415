//! The readiness checks behind `ai-runner doctor` and `ai-runner init`: read the configuration
//! exactly as the functions do and check each thing a run depends on.
//!
//! Invariants: read-only (no DDL, no writes, no provider calls); never reports a secret; every
//! failed check carries the stable [`Code`] the CLI turns into a fix hint.

use std::time::Duration;

use serde::Serialize;

use crate::code::Code;
use crate::config::{ObjectTarget, Settings};
use crate::crypto::Keyring;
use crate::ports::{ObjectError, ObjectPin};
use crate::store::{Db, migrate};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// Why it failed, when it did.
    pub code: Option<Code>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        code: None,
    }
}

fn fail(name: &'static str, code: Code, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        code: Some(code),
    }
}

/// Which checks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    All,
    /// Only the environment / settings.
    Env,
    /// Only the database (reachability, schema, keys).
    Db,
}

/// Runs the checks; `timeout` bounds each connection attempt (database, provider hosts).
pub async fn run(scope: Scope, timeout: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    let settings = match Settings::load() {
        Ok(s) => {
            out.push(pass(
                "settings",
                format!("database {}", s.database.describe()),
            ));
            s
        }
        Err(e) => {
            out.push(fail("settings", e.code(), e.to_string()));
            return out;
        }
    };
    if scope != Scope::Db {
        out.push(match &settings.pepper {
            Some(_) => pass(
                "pepper",
                if settings.previous_pepper.is_some() {
                    "AI_PEPPER set (rotation: AI_PEPPER_PREVIOUS set too)"
                } else {
                    "AI_PEPPER set"
                },
            ),
            None => fail("pepper", Code::PepperMissing, "AI_PEPPER is not set"),
        });
    }
    if scope == Scope::Env {
        return out;
    }
    let db = Db::new(settings.database.clone()).with_connect_timeout(timeout);
    match db.pool().await {
        Ok(_) => out.push(pass("database", "reachable")),
        Err(e) => {
            out.push(fail("database", e.code(), crate::error::chain(&e)));
            return out;
        }
    }
    match migrate::plan(&db).await {
        Ok(plan) if plan.is_empty() => out.push(pass("schema", format!("at version {}", crate::schema::latest_version()))),
        Ok(plan) => out.push(fail(
            "schema",
            Code::SchemaOutdated,
            format!(
                "{} migration statement(s) missing (extended audit columns, route cursors, media tables)",
                plan.len()
            ),
        )),
        Err(e) => out.push(fail("schema", e.code(), e.to_string())),
    }
    let ring = Keyring::new(settings.pepper.clone(), settings.previous_pepper.clone());
    match db.check_keys(&ring).await {
        Ok(keys) => {
            let bad: Vec<String> = keys
                .iter()
                .filter(|k| !k.decrypts)
                .map(|k| {
                    format!(
                        "{}:{} ({})",
                        k.table,
                        k.name,
                        k.error.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            if bad.is_empty() {
                out.push(pass(
                    "keys",
                    format!("{} stored secret(s) decrypt", keys.len()),
                ));
            } else {
                out.push(fail(
                    "keys",
                    Code::DecryptFailed,
                    format!(
                        "{} of {} do not decrypt: {}",
                        bad.len(),
                        keys.len(),
                        bad.join(", ")
                    ),
                ));
            }
        }
        Err(e) => out.push(fail("keys", e.code(), e.to_string())),
    }
    out.push(breakers(&db).await);
    if scope == Scope::All {
        out.push(providers(&db, timeout).await);
        out.push(objects(&settings).await);
        out.push(spool(&settings).await);
    }
    db.close().await;
    out
}

/// The connections' circuit breakers: a failed check naming each one that is open or half-open
/// (`ai-runner breaker reset` closes one by hand).
async fn breakers(db: &Db) -> Check {
    use crate::model::breaker::BreakerState;
    const NAME: &str = "circuit breakers";
    let now = crate::model::now_ms();
    let rows = match db.list_breakers().await {
        Ok(rows) => rows,
        Err(crate::ports::StoreError::Outdated(_)) => {
            return pass(NAME, "off: ai_connection_breaker is missing (see schema)");
        }
        Err(e) => return fail(NAME, e.code(), e.to_string()),
    };
    let open: Vec<String> = rows
        .iter()
        .filter(|r| r.state(now) != BreakerState::Closed)
        .map(|r| format!("{} {}", r.connection, r.describe(now)))
        .collect();
    if open.is_empty() {
        pass(NAME, format!("none open ({} stored)", rows.len()))
    } else {
        fail(NAME, Code::CircuitOpen, open.join("; "))
    }
}

async fn providers(db: &Db, timeout: Duration) -> Check {
    let urls = match db.snapshot().await {
        Ok(s) => s
            .to_catalog()
            .connections
            .into_iter()
            .filter(|c| c.active)
            .map(|c| (c.name, c.base_url))
            .collect::<Vec<_>>(),
        Err(e) => return fail("providers", e.code(), e.to_string()),
    };
    let mut bad = Vec::new();
    for (name, url) in &urls {
        let parsed = reqwest::Url::parse(url);
        let host = parsed
            .as_ref()
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        match host {
            None => bad.push(format!("{name}: {url:?} is not an http(s) URL")),
            Some(hp) => {
                let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(hp.clone()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .is_some_and(|mut a| a.next().is_some());
                if !resolved {
                    bad.push(format!("{name}: host {} does not resolve", hp.0));
                }
            }
        }
    }
    if bad.is_empty() {
        pass(
            "providers",
            format!("{} active connection URL(s) resolve", urls.len()),
        )
    } else {
        fail("providers", Code::ProviderUnreachable, bad.join("; "))
    }
}

/// Audit rows waiting in the spool (the database did not take them): a failed check naming how
/// many and the oldest one's age, until `audit replay` has written them.
async fn spool(settings: &Settings) -> Check {
    let store: std::sync::Arc<dyn crate::ports::ObjectStore> =
        std::sync::Arc::from(crate::objects::from_settings(&settings.objects));
    let Some(spool) = crate::app::audit_spool(&settings.objects, &store) else {
        return pass(
            "audit spool",
            "none (no OSS_BUCKET): an audit row the database refuses is logged whole",
        );
    };
    match spool.pending(usize::MAX).await {
        Ok((_, p)) if p.rows == 0 => pass(
            "audit spool",
            format!("empty ({}/{})", spool.bucket, spool.prefix),
        ),
        Ok((_, p)) => fail(
            "audit spool",
            Code::AuditSpooled,
            format!(
                "{} audit row(s) wait in {}/{}, the oldest {} s old",
                p.rows,
                spool.bucket,
                spool.prefix,
                p.oldest_ms.unwrap_or(0) / 1000
            ),
        ),
        Err(ObjectError::NotFound { .. }) => pass("audit spool", "empty (no spool yet)"),
        Err(e) => fail("audit spool", e.code(), e.to_string()),
    }
}

async fn objects(settings: &Settings) -> Check {
    let o = &settings.objects;
    let Some(bucket) = &o.bucket else {
        return pass(
            "objects",
            match &o.target {
                ObjectTarget::Local(dir) => format!(
                    "local object directory {} (no OSS_BUCKET: spill-over off)",
                    dir.display()
                ),
                ObjectTarget::S3 { .. } => {
                    "no OSS_BUCKET set: spill-over off; uploads use the buckets in their events"
                        .to_owned()
                }
            },
        );
    };
    let store = crate::objects::from_settings(o);
    match store
        .head(bucket, "ai-runner-doctor-probe", ObjectPin::NONE)
        .await
    {
        Ok(_) | Err(ObjectError::NotFound { .. }) => {
            pass("objects", format!("bucket {bucket} reachable"))
        }
        Err(e) => fail("objects", e.code(), e.to_string()),
    }
}
