//! Process configuration: parsed once from the environment and the predecessor's `.env` files, or
//! built in code.
//!
//! Sources, later wins: `.env`, `basic.env`, `mysql.env`, `oss.env`, `ai.env` (in the directory
//! named by `AI_RUNNER_ENV_DIR`, else the working directory), then the process environment, then
//! values set on the [`SettingsBuilder`] (the predecessor's `init({...})`).
//!
//! Invariants: a [`Settings`] value is always complete and valid (a partial MySQL setup is an
//! error naming every missing variable, never a half-filled struct); secrets are [`Secret`]s; the
//! process environment is read, never written.

// This module is where the process environment is read (clippy.toml forbids it elsewhere).
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::code::Code;
use crate::secret::Secret;

/// The env files read, in the order they are layered.
pub const ENV_FILES: [&str; 5] = [".env", "basic.env", "mysql.env", "oss.env", "ai.env"];

/// The embedded database used when nothing else is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./ai-runner.db";

/// A configuration problem, found before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Some variables a chosen setup needs are absent.
    #[error("missing configuration: {} (set them, or unset the others to use the embedded database)", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A variable is present but its value cannot be used.
    #[error("invalid value for {name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why (never echoes secret values).
        reason: String,
    },
    /// An env file exists but cannot be read.
    #[error("cannot read env file {path}: {reason}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Missing(_) => Code::ConfigMissing,
            Self::Invalid { .. } | Self::EnvFile { .. } => Code::ConfigInvalid,
        }
    }
}

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

/// HTTP behaviour towards providers.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// `AI_TIMEOUT` (seconds, default 30): the whole of one HTTP attempt.
    pub timeout: Duration,
    /// `AI_MAX_RETRIES` (default 2): extra attempts after a retryable failure.
    pub max_retries: u32,
    /// `AI_RETRY_BASE_MS` (default 500): first backoff; doubles each retry.
    pub retry_base: Duration,
    /// `AI_RETRY_JITTER` (fraction 0..=1, default 0.2): random spread applied to each backoff.
    pub retry_jitter: f64,
    /// `AI_RETRY_AFTER_CAP_MS` (default 20000): the longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
    /// `AI_MAX_RESPONSE_BYTES` (default 16 MiB): the largest answer (body or stream) read.
    pub max_response_bytes: u64,
    /// `AI_DEADLINE_RESERVE_MS` (default 2000): time kept back from the platform's deadline for
    /// writing the audit row and answering.
    pub deadline_reserve: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_base: Duration::from_millis(500),
            retry_jitter: 0.2,
            retry_after_cap: Duration::from_secs(20),
            max_response_bytes: 16 * 1024 * 1024,
            deadline_reserve: Duration::from_secs(2),
        }
    }
}

/// Output validation defaults; a param profile may override the two switches for itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationSettings {
    /// `JSON_SCHEMA_ENFORCE` (default true): validate JSON wherever the prompt or params ask for it.
    pub json_schema_enforce: bool,
    /// `ENFORCE_NO_ENGLISH` (default true): reject Latin letters in JSON string values.
    pub enforce_no_english: bool,
    /// `AI_CONTENT_RETRIES` (default 3): extra provider calls when content fails validation.
    pub content_retries: u32,
    /// `AI_CONTENT_RETRY_DELAY_MS` (default 1000): pause between content retries.
    pub content_retry_delay: Duration,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            json_schema_enforce: true,
            enforce_no_english: true,
            content_retries: 3,
            content_retry_delay: Duration::from_millis(1000),
        }
    }
}

/// Everything the runtime needs, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The database.
    pub database: DatabaseTarget,
    /// `AI_RUNNER_DB_PATH` (default `./ai-runner.db`): the embedded file, used when no MySQL is
    /// configured (and by `quickstart --mode local` even when one is).
    pub embedded_db: PathBuf,
    /// `AI_PEPPER`: needed to decrypt and encrypt provider keys.
    pub pepper: Option<Secret>,
    /// `AI_PEPPER_PREVIOUS`: still accepted for decryption during a rotation.
    pub previous_pepper: Option<Secret>,
    /// `PROJECT_NAME`: a label for logs and audit rows.
    pub project_name: Option<String>,
    /// Provider HTTP behaviour.
    pub http: HttpSettings,
    /// Output validation.
    pub validation: ValidationSettings,
    /// `ENABLE_OSS_SPILLOVER` (default false): audit bodies over the threshold go to objects.
    pub enable_oss_spillover: bool,
    /// Object storage (uploads, results, spill-over).
    pub objects: ObjectSettings,
    /// Evaluation runs started by `run-route` (queue, chunking, reports).
    pub eval: EvalSettings,
    /// `AUDIT_MAX_BODY_BYTES` (default 4 MiB): a request or response body larger than this is
    /// stored as a JSON stub (size, SHA-256, its start) unless spill-over moved it to an object
    /// first; keeps every insert under MySQL's `max_allowed_packet`.
    pub audit_max_body_bytes: usize,
    /// Who may call the functions' HTTP APIs.
    pub access: AccessSettings,
    /// `COST_CACHE_SECS` (default 60): how long a process keeps a model's prices and the list of
    /// budgets before reading them again (a change reaches running functions within it).
    pub cost_cache: std::time::Duration,
}

/// `ACCESS_MODE`: what authenticates an API call (API Gateway, Function URL, FC HTTP trigger).
/// Direct invocations, schedules and queues are authorised by the platform (invoke rights) and
/// never checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// `iam`: the platform's authorizer only (IAM / JWT in front of API Gateway, FC's
    /// `authType: function`); its principal is recorded. The default on Lambda.
    Platform,
    /// `hmac`: every API call must be signed with an access key (scopes, quotas, rate limits).
    /// The default on Function Compute, whose HTTP triggers have no IAM in front.
    Hmac,
    /// `iam+hmac`: both; the platform's principal and the access key are recorded.
    PlatformAndHmac,
}

/// Access control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessSettings {
    /// `ACCESS_MODE` (`iam`, `hmac`, `iam+hmac`; default `hmac` on Function Compute, else `iam`).
    pub mode: AccessMode,
    /// `ACCESS_MAX_SKEW_SECS` (default 300, 1..=3600): how far a signed timestamp may be from the
    /// server's clock; nonces are kept as long.
    pub max_skew: Duration,
    /// `ACCESS_FAIL_OPEN` (default false): when the quota and rate counters cannot be reached,
    /// let calls through (logged) instead of answering `ACCESS_UNAVAILABLE`. Key lookup and
    /// nonces always fail closed.
    pub fail_open: bool,
}

fn parse_access(get: Getter<'_>) -> Result<AccessSettings, ConfigError> {
    let on_fc = get.get("AWS_LAMBDA_RUNTIME_API").is_none_or(str::is_empty)
        && (get.get("FC_FUNCTION_NAME").is_some_and(|v| !v.is_empty())
            || get.get("FC_SERVER_PORT").is_some_and(|v| !v.is_empty()));
    let mode = match get
        .get("ACCESS_MODE")
        .map(|m| m.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") => {
            if on_fc {
                AccessMode::Hmac
            } else {
                AccessMode::Platform
            }
        }
        Some("iam" | "platform") => AccessMode::Platform,
        Some("hmac") => AccessMode::Hmac,
        Some("iam+hmac" | "platform+hmac") => AccessMode::PlatformAndHmac,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "ACCESS_MODE",
                reason: format!("{other:?} is not one of iam, hmac, iam+hmac"),
            });
        }
    };
    let skew = num(get, "ACCESS_MAX_SKEW_SECS", 300u64)?;
    if !(1..=3600).contains(&skew) {
        return Err(ConfigError::Invalid {
            name: "ACCESS_MAX_SKEW_SECS",
            reason: "must be from 1 to 3600".into(),
        });
    }
    Ok(AccessSettings {
        mode,
        max_skew: Duration::from_secs(skew),
        fail_open: flag(get, "ACCESS_FAIL_OPEN", false)?,
    })
}

/// How `run-route` runs evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// `EVAL_QUEUE_URL`: the SQS queue a run's chunks go through; unset = run in process.
    pub queue_url: Option<String>,
    /// `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL`: an SQS-protocol server instead of AWS's.
    pub queue_endpoint: Option<String>,
    /// `AWS_REGION` (default `us-east-1`).
    pub region: String,
    /// `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): what Lambda sets.
    pub credentials: Option<(String, Secret, Option<Secret>)>,
    /// `EVAL_CHUNK_SIZE` (default 10, 1..=1000): calls per queue message.
    pub chunk_size: usize,
    /// `EVAL_REPORTS_PREFIX` (default `ai-runner/eval-reports/`): where a scheduled run's reports
    /// go in `OSS_BUCKET`.
    pub reports_prefix: String,
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

impl Settings {
    /// Reads env files and the environment, as every entry point does.
    pub fn load() -> Result<Self, ConfigError> {
        Self::builder().with_env_files()?.with_process_env().build()
    }

    /// Starts an empty builder (nothing read yet).
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Parses a complete variable map (the core of every loader).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = &Vars(vars);
        Ok(Self {
            database: parse_database(get)?,
            embedded_db: PathBuf::from(
                get.get("AI_RUNNER_DB_PATH")
                    .filter(|p| !p.is_empty())
                    .unwrap_or(DEFAULT_SQLITE_PATH),
            ),
            pepper: get
                .get("AI_PEPPER")
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            previous_pepper: get
                .get("AI_PEPPER_PREVIOUS")
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            project_name: get
                .get("PROJECT_NAME")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            http: HttpSettings {
                timeout: secs(get, "AI_TIMEOUT", 30.0)?,
                max_retries: num(get, "AI_MAX_RETRIES", 2)?,
                retry_base: Duration::from_millis(num(get, "AI_RETRY_BASE_MS", 500)?),
                retry_jitter: fraction(get, "AI_RETRY_JITTER", 0.2)?,
                retry_after_cap: Duration::from_millis(num(get, "AI_RETRY_AFTER_CAP_MS", 20_000)?),
                max_response_bytes: num(get, "AI_MAX_RESPONSE_BYTES", 16 * 1024 * 1024)?.max(1024),
                deadline_reserve: Duration::from_millis(num(get, "AI_DEADLINE_RESERVE_MS", 2000)?),
            },
            validation: ValidationSettings {
                json_schema_enforce: flag(get, "JSON_SCHEMA_ENFORCE", true)?,
                enforce_no_english: flag(get, "ENFORCE_NO_ENGLISH", true)?,
                content_retries: num(get, "AI_CONTENT_RETRIES", 3)?,
                content_retry_delay: Duration::from_millis(num(
                    get,
                    "AI_CONTENT_RETRY_DELAY_MS",
                    1000,
                )?),
            },
            enable_oss_spillover: flag(get, "ENABLE_OSS_SPILLOVER", false)?,
            objects: parse_objects(get)?,
            eval: parse_eval(get)?,
            audit_max_body_bytes: num(get, "AUDIT_MAX_BODY_BYTES", 4 * 1024 * 1024)?.max(4096),
            access: parse_access(get)?,
            cost_cache: std::time::Duration::from_secs(num(get, "COST_CACHE_SECS", 60)?),
        })
    }
}

/// Layers variable sources, then parses them once.
#[derive(Debug, Default, Clone)]
pub struct SettingsBuilder {
    vars: HashMap<String, String>,
}

impl SettingsBuilder {
    /// Layers the predecessor's env files from `AI_RUNNER_ENV_DIR` or the working directory.
    pub fn with_env_files(self) -> Result<Self, ConfigError> {
        self.with_env_files_in(&env_dir())
    }

    /// Layers the env files found in `dir` (missing files are skipped).
    pub fn with_env_files_in(mut self, dir: &Path) -> Result<Self, ConfigError> {
        for name in ENV_FILES {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let iter = dotenvy::from_path_iter(&path).map_err(|e| ConfigError::EnvFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError::EnvFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                self.vars.insert(k, v);
            }
        }
        Ok(self)
    }

    /// Layers the process environment over what is already set.
    pub fn with_process_env(mut self) -> Self {
        for (k, v) in std::env::vars() {
            self.vars.insert(k, v);
        }
        self
    }

    /// Sets one variable by its environment name (the predecessor's dict injection).
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Sets many variables by their environment names.
    pub fn vars<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in pairs {
            self.vars.insert(k.into(), v.into());
        }
        self
    }

    /// Uses this database URL (`mysql://…` or `sqlite://…`).
    pub fn database_url(self, url: impl Into<String>) -> Self {
        self.var("DATABASE_URL", url)
    }

    /// Uses this pepper.
    pub fn pepper(self, pepper: impl Into<String>) -> Self {
        self.var("AI_PEPPER", pepper)
    }

    /// Parses and checks everything layered so far.
    pub fn build(&self) -> Result<Settings, ConfigError> {
        Settings::from_vars(&self.vars)
    }
}

/// Read access to the layered variables.
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

type Getter<'a> = &'a Vars<'a>;

fn parse_database<'a>(get: Getter<'a>) -> Result<DatabaseTarget, ConfigError> {
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

fn parse_objects(get: Getter<'_>) -> Result<ObjectSettings, ConfigError> {
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

fn parse_eval(get: Getter<'_>) -> Result<EvalSettings, ConfigError> {
    let nonempty = |k: &str| {
        get.get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let chunk_size = num(get, "EVAL_CHUNK_SIZE", 10usize)?;
    if !(1..=1000).contains(&chunk_size) {
        return Err(ConfigError::Invalid {
            name: "EVAL_CHUNK_SIZE",
            reason: "must be from 1 to 1000".into(),
        });
    }
    let reports_prefix =
        nonempty("EVAL_REPORTS_PREFIX").unwrap_or_else(|| "ai-runner/eval-reports/".into());
    if reports_prefix.starts_with('/') {
        return Err(ConfigError::Invalid {
            name: "EVAL_REPORTS_PREFIX",
            reason: "object key prefixes do not start with '/'".into(),
        });
    }
    Ok(EvalSettings {
        queue_url: nonempty("EVAL_QUEUE_URL"),
        queue_endpoint: nonempty("AWS_ENDPOINT_URL_SQS").or_else(|| nonempty("AWS_ENDPOINT_URL")),
        region: nonempty("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        credentials: match (
            nonempty("AWS_ACCESS_KEY_ID"),
            nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Some((
                id,
                Secret::new(secret),
                nonempty("AWS_SESSION_TOKEN").map(Secret::new),
            )),
            _ => None,
        },
        chunk_size,
        reports_prefix,
    })
}

fn num<'a, T: std::str::FromStr>(
    get: Getter<'a>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected a non-negative whole number, got {v:?}"),
        }),
    }
}

fn secs<'a>(get: Getter<'a>, name: &'static str, default: f64) -> Result<Duration, ConfigError> {
    let v = match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => v.parse::<f64>().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected seconds, got {v:?}"),
        })?,
    };
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be between 0 and 3600 seconds".into(),
        });
    }
    Ok(Duration::from_secs_f64(v))
}

fn fraction<'a>(get: Getter<'a>, name: &'static str, default: f64) -> Result<f64, ConfigError> {
    let v = match get.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => return Ok(default),
        Some(v) => v.parse::<f64>().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected a fraction between 0 and 1, got {v:?}"),
        })?,
    };
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("expected a fraction between 0 and 1, got {v}"),
        })
    }
}

/// Parses the predecessor's boolean spellings.
pub fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

fn flag<'a>(get: Getter<'a>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => parse_flag(v).ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("expected true or false, got {v:?}"),
        }),
    }
}

/// Creates a random pepper and appends it to `ai.env` in `dir` (owner-only permissions), for a
/// first run on the embedded database. Refuses if `ai.env` already sets one.
pub fn generate_pepper_file(dir: &Path) -> Result<Secret, ConfigError> {
    use base64::Engine;
    use rand::RngCore;
    use std::io::Write;
    let path = dir.join("ai.env");
    let err = |reason: String| ConfigError::EnvFile {
        path: path.clone(),
        reason,
    };
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("AI_PEPPER="))
        {
            return Err(err("already sets AI_PEPPER".into()));
        }
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let pepper = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| err(e.to_string()))?;
    writeln!(
        f,
        "# generated by ai-runner quickstart: keep it secret, keep it safe\nAI_PEPPER={pepper}"
    )
    .map_err(|e| err(e.to_string()))?;
    Ok(Secret::new(pepper))
}

/// The directory env files are read from (`AI_RUNNER_ENV_DIR`, else the working directory).
pub fn env_dir() -> PathBuf {
    std::env::var_os("AI_RUNNER_ENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Which serverless platform the process runs on, read from the variables the platforms set
/// themselves (not user settings, so not part of [`Settings`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `AWS_LAMBDA_RUNTIME_API`: set on Lambda (and by `cargo lambda watch`).
    pub lambda_runtime_api: Option<String>,
    /// `FC_FUNCTION_NAME`: set on Alibaba Function Compute.
    pub fc_function_name: Option<String>,
    /// `FC_SERVER_PORT`: the custom runtime's port on Function Compute.
    pub fc_server_port: Option<u16>,
}

impl Platform {
    /// Reads the platform's variables.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            lambda_runtime_api: var("AWS_LAMBDA_RUNTIME_API"),
            fc_function_name: var("FC_FUNCTION_NAME"),
            fc_server_port: var("FC_SERVER_PORT").and_then(|p| p.parse().ok()),
        }
    }

    /// True when running as an Alibaba Function Compute custom runtime rather than on Lambda.
    pub fn on_function_compute(&self) -> bool {
        self.lambda_runtime_api.is_none()
            && (self.fc_function_name.is_some() || self.fc_server_port.is_some())
    }
}

/// A variable of the process environment, for the few values a user names at run time (a
/// catalog's `${VAR}` key references): the one sanctioned reader outside [`Settings`].
pub fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::builder().vars(pairs.iter().copied()).build()
    }

    #[test]
    fn a_job_lease_of_zero_and_nonsense_limits_are_refused_at_start() {
        for (name, value) in [
            ("MEDIA_JOB_LEASE_SECS", "0"),
            ("EVAL_CHUNK_SIZE", "0"),
            ("EVAL_CHUNK_SIZE", "5000"),
            ("AI_MAX_RESPONSE_BYTES", "lots"),
        ] {
            let e = from(&[(name, value)]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={value}: {e}");
        }
        let s = from(&[
            ("MEDIA_JOB_LEASE_SECS", "300"),
            ("AI_DEADLINE_RESERVE_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(s.objects.job_lease, Duration::from_secs(300));
        assert_eq!(s.http.deadline_reserve, Duration::from_millis(1500));
        assert_eq!(s.http.max_response_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn access_mode_defaults_to_signed_calls_on_function_compute_only() {
        assert_eq!(from(&[]).unwrap().access.mode, AccessMode::Platform);
        let fc = from(&[("FC_FUNCTION_NAME", "ai-runner-run-once")]).unwrap();
        assert_eq!(fc.access.mode, AccessMode::Hmac);
        let both = from(&[("ACCESS_MODE", "IAM+HMAC")]).unwrap();
        assert_eq!(both.access.mode, AccessMode::PlatformAndHmac);
        assert_eq!(both.access.max_skew, Duration::from_secs(300));
        assert!(!both.access.fail_open);
        for bad in [("ACCESS_MODE", "open"), ("ACCESS_MAX_SKEW_SECS", "0")] {
            let e = from(&[bad]).unwrap_err();
            assert_eq!(e.code(), Code::ConfigInvalid, "{bad:?}");
        }
    }

    #[test]
    fn nothing_configured_means_the_embedded_sqlite_file() {
        let s = from(&[]).unwrap();
        assert_eq!(
            s.database,
            DatabaseTarget::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH))
        );
        assert_eq!(s.http, HttpSettings::default());
        assert!(s.validation.json_schema_enforce && s.validation.enforce_no_english);
        assert!(s.pepper.is_none());
    }

    #[test]
    fn partial_mysql_settings_name_every_missing_variable() {
        let err = from(&[("MYSQL_HOST", "db")]).unwrap_err();
        assert_eq!(err.code(), Code::ConfigMissing);
        let msg = err.to_string();
        for k in ["MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_AI_DATABASE"] {
            assert!(msg.contains(k), "{msg}");
        }
        assert!(!msg.contains("MYSQL_HOST"), "{msg}");
    }

    #[test]
    fn mysql_variables_build_a_target_with_an_empty_password_allowed() {
        let s = from(&[
            ("MYSQL_HOST", "rds.local"),
            ("MYSQL_USER", "app"),
            ("MYSQL_PASSWORD", ""),
            ("MYSQL_AI_DATABASE", "ai_config"),
            ("MYSQL_PORT", "3307"),
        ])
        .unwrap();
        assert_eq!(
            s.database.describe(),
            "mysql://app@rds.local:3307/ai_config"
        );
    }

    #[test]
    fn database_url_wins_and_its_password_never_prints() {
        let s = from(&[
            ("DATABASE_URL", "mysql://u:hunter22@h:3306/d"),
            ("MYSQL_HOST", "ignored"),
        ])
        .unwrap();
        assert_eq!(s.database.describe(), "mysql://***@h:3306/d");
        assert!(!format!("{s:?}").contains("hunter22"));
        let s = from(&[("DATABASE_URL", "sqlite://data/x.db?mode=rwc")]).unwrap();
        assert_eq!(
            s.database,
            DatabaseTarget::Sqlite(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            from(&[("DATABASE_URL", "postgres://x")])
                .unwrap_err()
                .code(),
            Code::ConfigInvalid
        );
    }

    #[test]
    fn numeric_and_boolean_knobs_are_parsed_and_bad_values_rejected() {
        let s = from(&[
            ("AI_TIMEOUT", "2.5"),
            ("AI_MAX_RETRIES", "5"),
            ("AI_RETRY_JITTER", "0"),
            ("ENFORCE_NO_ENGLISH", "false"),
            ("AI_PEPPER", "pep"),
        ])
        .unwrap();
        assert_eq!(s.http.timeout, Duration::from_millis(2500));
        assert_eq!(s.http.max_retries, 5);
        assert!(!s.validation.enforce_no_english);
        assert_eq!(s.pepper.as_ref().map(Secret::expose), Some("pep"));
        assert!(!format!("{s:?}").contains("pep\""));
        for (k, v) in [
            ("AI_TIMEOUT", "soon"),
            ("AI_MAX_RETRIES", "-1"),
            ("AI_RETRY_JITTER", "3"),
            ("JSON_SCHEMA_ENFORCE", "maybe"),
        ] {
            let err = from(&[(k, v)]).unwrap_err();
            assert_eq!(err.code(), Code::ConfigInvalid);
            assert!(err.to_string().contains(k));
        }
    }

    #[test]
    fn env_files_are_layered_in_order_and_builder_values_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "PROJECT_NAME=first\nAI_MAX_RETRIES=1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("basic.env"), "PROJECT_NAME=second\n").unwrap();
        std::fs::write(dir.path().join("ai.env"), "AI_PEPPER=\"from file\"\n").unwrap();
        let s = Settings::builder()
            .with_env_files_in(dir.path())
            .unwrap()
            .var("AI_MAX_RETRIES", "4")
            .build()
            .unwrap();
        assert_eq!(s.project_name.as_deref(), Some("second"));
        assert_eq!(s.http.max_retries, 4);
        assert_eq!(s.pepper.as_ref().map(Secret::expose), Some("from file"));
    }
}
