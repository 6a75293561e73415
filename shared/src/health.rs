//! `ai-runner doctor`: reads the configuration exactly as the functions do and checks each thing a
//! run depends on, with a fix hint for every failure.
//!
//! Invariants: read-only (no DDL, no writes, no provider calls); never prints a secret.

use serde::Serialize;

use crate::config::{ObjectTarget, Settings};
use crate::crypto::Keyring;
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
    /// How to fix it, when it failed.
    pub hint: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        hint: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        hint: Some(hint.into()),
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

/// Runs the checks.
pub async fn run(scope: Scope) -> Vec<Check> {
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
            out.push(fail(
                "settings",
                format!("{}: {e}", e.code()),
                crate::error::hint(e.code()).unwrap_or("check the environment and env files"),
            ));
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
            None => fail(
                "pepper",
                "AI_PEPPER is not set",
                "set AI_PEPPER (the pepper the stored keys were encrypted with)",
            ),
        });
    }
    if scope == Scope::Env {
        return out;
    }
    let db = Db::new(settings.database.clone());
    match db.pool().await {
        Ok(_) => out.push(pass("database", "reachable")),
        Err(e) => {
            out.push(fail(
                "database",
                format!("{}: {}", e.code(), crate::error::chain(&e)),
                crate::error::hint(e.code()).unwrap_or("check the database settings"),
            ));
            return out;
        }
    }
    match migrate::plan(&db).await {
        Ok(plan) if plan.is_empty() => out.push(pass("schema", format!("at version {}", crate::schema::latest_version()))),
        Ok(plan) => out.push(fail("schema", format!("{} migration statement(s) missing (extended audit columns, route cursors, media tables)", plan.len()), "run `ai-runner db migrate --print` to review, then `ai-runner db migrate`")),
        Err(e) => out.push(fail("schema", format!("{}: {e}", e.code()), "run `ai-runner db init` on a new database")),
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
                out.push(fail("keys", format!("{} of {} do not decrypt: {}", bad.len(), keys.len(), bad.join(", ")), "set the pepper they were encrypted with (AI_PEPPER or AI_PEPPER_PREVIOUS), or re-encrypt them with `ai-runner keys encrypt`"));
            }
        }
        Err(e) => out.push(fail(
            "keys",
            format!("{}: {e}", e.code()),
            "check the database",
        )),
    }
    if scope == Scope::All {
        out.push(providers(&db).await);
        out.push(objects(&settings).await);
    }
    db.close().await;
    out
}

async fn providers(db: &Db) -> Check {
    let urls = match db.snapshot().await {
        Ok(s) => s
            .to_catalog()
            .connections
            .into_iter()
            .filter(|c| c.active)
            .map(|c| (c.name, c.base_url))
            .collect::<Vec<_>>(),
        Err(e) => {
            return fail(
                "providers",
                format!("{}: {e}", e.code()),
                "check the database",
            );
        }
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
                if tokio::net::lookup_host(hp.clone())
                    .await
                    .map(|mut a| a.next().is_none())
                    .unwrap_or(true)
                {
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
        fail(
            "providers",
            bad.join("; "),
            "fix ai_connection.base_url (the full chat-completions URL) or the network/DNS",
        )
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
    match store.head(bucket, "ai-runner-doctor-probe").await {
        Ok(_) | Err(crate::objects::ObjectError::NotFound { .. }) => {
            pass("objects", format!("bucket {bucket} reachable"))
        }
        Err(e) => fail(
            "objects",
            format!("{}: {e}", e.code()),
            "check OSS_ENDPOINT, OSS_REGION, the credentials and OSS_BUCKET",
        ),
    }
}
