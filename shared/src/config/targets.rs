//! Where the data lives: the database target (the embedded SQLite file, MySQL/MariaDB by URL or
//! by the predecessor's variables) and the object store (S3, OSS, a local directory).
//!
//! Invariants: a partial MySQL or object-store setup is an error naming every missing variable,
//! never a half-filled target; passwords and secret keys are [`Secret`]s.

use std::path::PathBuf;
use std::time::Duration;

use super::values::{flag, num};
use super::{ConfigError, DEFAULT_SQLITE_PATH, Getter};
use crate::secret::Secret;

/// Where the configuration and audit tables live.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseTarget {
    /// MySQL or MariaDB (production, the predecessor's RDS).
    MySql(MySqlTarget),
    /// An embedded SQLite file (the default).
    Sqlite(PathBuf),
}

/// Connection settings for MySQL / MariaDB.
#[derive(Debug, Clone, PartialEq)]
pub enum MySqlTarget {
    /// A `mysql://` URL (it may carry a password, hence secret).
    Url(Secret),
    /// The predecessor's `MYSQL_*` variables.
    Parts {
        /// `MYSQL_HOST`.
        host: String,
        /// `MYSQL_PORT` (default 3306).
        port: u16,
        /// `MYSQL_USER`.
        user: String,
        /// `MYSQL_PASSWORD`.
        password: Secret,
        /// `MYSQL_AI_DATABASE`.
        database: String,
    },
}

impl DatabaseTarget {
    /// A description safe to print (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite:{}", p.display()),
            Self::MySql(MySqlTarget::Parts {
                host,
                port,
                user,
                database,
                ..
            }) => format!("mysql://{user}@{host}:{port}/{database}"),
            Self::MySql(MySqlTarget::Url(url)) => {
                let u = url.expose();
                // Drop the userinfo: it may hold a password.
                match (u.find("://"), u.rfind('@')) {
                    (Some(s), Some(at)) if at > s => format!("mysql://***@{}", &u[at + 1..]),
                    _ => u.to_owned(),
                }
            }
        }
    }
}

/// Where objects live.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectTarget {
    /// AWS S3, Alibaba OSS (S3-compatible endpoint) or any S3-protocol server.
    S3 {
        /// `OSS_ENDPOINT` / `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`; `None` = AWS's default.
        endpoint: Option<String>,
        /// `OSS_REGION` / `AWS_REGION` (default `us-east-1`).
        region: String,
        /// `OSS_ACCESS_KEY_ID` + `OSS_ACCESS_KEY_SECRET`, else `AWS_ACCESS_KEY_ID` +
        /// `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`).
        credentials: Option<(String, Secret, Option<Secret>)>,
        /// `OSS_FORCE_PATH_STYLE` (default false; true for most local servers).
        path_style: bool,
    },
    /// A local directory, one sub-directory per bucket (the embedded default).
    Local(PathBuf),
}

/// Object storage and the upload pipeline's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSettings {
    /// The store.
    pub target: ObjectTarget,
    /// `OSS_BUCKET` (alias `OSS_BUCKET_NAME`): where spill-over objects go.
    pub bucket: Option<String>,
    /// `OSS_RESULTS_PREFIX` (default `ai-runner/results/`): where run results are written.
    pub results_prefix: String,
    /// `OSS_SPILL_PREFIX` (default `ai-runner/spill/`): where large audit bodies go.
    pub spill_prefix: String,
    /// `AUDIT_SPOOL_PREFIX` (default `ai-runner/audit-spool/`): where audit rows the database
    /// did not take wait for `audit replay`.
    pub audit_spool_prefix: String,
    /// `AUDIT_SPILL_THRESHOLD_BYTES` (default 65536).
    pub spill_threshold: usize,
    /// `MEDIA_MAX_BYTES` (default 25 MiB, the OpenAI audio upload limit).
    pub media_max_bytes: u64,
    /// `MEDIA_URL_EXPIRY_SECS` (default 900): lifetime of presigned media URLs.
    pub media_url_expiry: Duration,
    /// `MEDIA_JOB_LEASE_SECS` (default 900): after this a job stuck in progress can be taken over.
    pub job_lease: Duration,
}

pub(super) fn parse_database<'a>(get: Getter<'a>) -> Result<DatabaseTarget, ConfigError> {
    if let Some(url) = get.get("DATABASE_URL").filter(|u| !u.trim().is_empty()) {
        let url = url.trim();
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            return Ok(DatabaseTarget::MySql(MySqlTarget::Url(Secret::new(
                url.replacen("mariadb://", "mysql://", 1),
            ))));
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_URL",
                    reason: "sqlite URL has no file path".into(),
                });
            }
            return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
        }
        return Err(ConfigError::Invalid {
            name: "DATABASE_URL",
            reason: "must start with mysql:// or sqlite://".into(),
        });
    }
    const REQUIRED: [&str; 4] = [
        "MYSQL_HOST",
        "MYSQL_USER",
        "MYSQL_PASSWORD",
        "MYSQL_AI_DATABASE",
    ];
    let present: Vec<_> = REQUIRED.iter().filter(|k| get.get(k).is_some()).collect();
    if present.is_empty() {
        let path = get
            .get("AI_RUNNER_DB_PATH")
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_SQLITE_PATH);
        return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
    }
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .copied()
        .filter(|k| {
            get.get(k)
                .is_none_or(|v| v.is_empty() && *k != "MYSQL_PASSWORD")
        })
        .collect();
    if !missing.is_empty() {
        return Err(ConfigError::Missing(missing));
    }
    let port = num::<u16>(get, "MYSQL_PORT", 3306)?;
    Ok(DatabaseTarget::MySql(MySqlTarget::Parts {
        host: get.get("MYSQL_HOST").unwrap_or_default().to_owned(),
        port,
        user: get.get("MYSQL_USER").unwrap_or_default().to_owned(),
        password: Secret::new(get.get("MYSQL_PASSWORD").unwrap_or_default()),
        database: get.get("MYSQL_AI_DATABASE").unwrap_or_default().to_owned(),
    }))
}

pub(super) fn parse_objects(get: Getter<'_>) -> Result<ObjectSettings, ConfigError> {
    let nonempty = |k: &str| {
        get.get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let endpoint = nonempty("OSS_ENDPOINT")
        .or_else(|| nonempty("AWS_ENDPOINT_URL_S3"))
        .or_else(|| nonempty("AWS_ENDPOINT_URL"));
    let oss_keys = (
        nonempty("OSS_ACCESS_KEY_ID"),
        nonempty("OSS_ACCESS_KEY_SECRET"),
    );
    let aws_keys = (
        nonempty("AWS_ACCESS_KEY_ID"),
        nonempty("AWS_SECRET_ACCESS_KEY"),
    );
    let credentials = match (oss_keys, aws_keys) {
        ((Some(id), Some(secret)), _) => Some((id, Secret::new(secret), None)),
        ((Some(_), None), _) => return Err(ConfigError::Missing(vec!["OSS_ACCESS_KEY_SECRET"])),
        ((None, Some(_)), _) => return Err(ConfigError::Missing(vec!["OSS_ACCESS_KEY_ID"])),
        (_, (Some(id), Some(secret))) => Some((
            id,
            Secret::new(secret),
            nonempty("AWS_SESSION_TOKEN").map(Secret::new),
        )),
        // Function Compute puts the function role's temporary keys here.
        _ => match (
            nonempty("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            nonempty("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ) {
            (Some(id), Some(secret)) => Some((
                id,
                Secret::new(secret),
                nonempty("ALIBABA_CLOUD_SECURITY_TOKEN").map(Secret::new),
            )),
            _ => None,
        },
    };
    let explicit_local = nonempty("AI_RUNNER_OBJECTS_DIR");
    let target = match (&endpoint, &credentials, explicit_local) {
        (_, _, Some(dir)) => ObjectTarget::Local(PathBuf::from(dir)),
        (None, None, None) if get.get("AWS_LAMBDA_FUNCTION_NAME").is_none() => {
            ObjectTarget::Local(PathBuf::from("./ai-runner-objects"))
        }
        _ => ObjectTarget::S3 {
            endpoint,
            region: nonempty("OSS_REGION")
                .or_else(|| nonempty("AWS_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            credentials,
            path_style: flag(get, "OSS_FORCE_PATH_STYLE", false)?,
        },
    };
    let prefix = |k: &'static str, default: &str| -> Result<String, ConfigError> {
        let p = nonempty(k).unwrap_or_else(|| default.to_owned());
        if p.starts_with('/') {
            return Err(ConfigError::Invalid {
                name: k,
                reason: "object key prefixes do not start with '/'".into(),
            });
        }
        Ok(p)
    };
    Ok(ObjectSettings {
        target,
        bucket: nonempty("OSS_BUCKET").or_else(|| nonempty("OSS_BUCKET_NAME")),
        results_prefix: prefix("OSS_RESULTS_PREFIX", "ai-runner/results/")?,
        spill_prefix: prefix("OSS_SPILL_PREFIX", "ai-runner/spill/")?,
        audit_spool_prefix: prefix("AUDIT_SPOOL_PREFIX", "ai-runner/audit-spool/")?,
        spill_threshold: num(get, "AUDIT_SPILL_THRESHOLD_BYTES", 65_536)?,
        media_max_bytes: num(get, "MEDIA_MAX_BYTES", 25 * 1024 * 1024)?,
        media_url_expiry: Duration::from_secs(num(get, "MEDIA_URL_EXPIRY_SECS", 900)?),
        job_lease: match num(get, "MEDIA_JOB_LEASE_SECS", 900u64)? {
            0 => {
                return Err(ConfigError::Invalid {
                    name: "MEDIA_JOB_LEASE_SECS",
                    reason: "a lease of 0 lets every delivery take a running job over; use at least the function's timeout".into(),
                });
            }
            secs => Duration::from_secs(secs),
        },
    })
}
