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

mod knobs;
mod targets;
mod values;

pub use knobs::{
    AccessMode, AccessSettings, BreakerSettings, EvalSettings, HttpSettings, OpenAiSettings,
    RunAlone, SnapshotSettings, ValidationSettings,
};
use knobs::{parse_access, parse_breaker, parse_eval, parse_snapshot};
pub use targets::{DatabaseTarget, MySqlTarget, ObjectSettings, ObjectTarget};
use targets::{parse_database, parse_objects};
use values::{flag, fraction, num, secs};
pub use values::{parse_flag, value_flag};

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
    /// The OpenAI-compatible API's request rules.
    pub openai: OpenAiSettings,
    /// `COST_CACHE_SECS` (default 60): how long a process keeps a model's prices and the list of
    /// budgets before reading them again (a change reaches running functions within it).
    pub cost_cache: std::time::Duration,
    /// How long resolved configs and routes are reused (`AI_CONFIG_CACHE_MS`,
    /// `AI_CONFIG_CHECK_MS`, `AI_CONFIG_STALE_MAX_S`).
    pub snapshot: SnapshotSettings,
    /// The circuit breakers (`AI_BREAKER_FAILURES`, `AI_BREAKER_WINDOW_S`,
    /// `AI_BREAKER_COOLDOWN_S`, `AI_BREAKER_RUN_ALONE`).
    pub breaker: BreakerSettings,
    /// `COST_RESERVATION_GRACE_SECS` (default 60): how long past the end of its call (the
    /// deadline, else the longest its send can take) a budget reservation is kept before it may
    /// be reclaimed as the reservation of a call that died; covers the settlement's own writes and
    /// the clocks of different hosts.
    pub cost_reservation_grace: std::time::Duration,
    /// `COST_MEDIA_MAX_SECONDS` (default 3600): the duration a model priced per second is
    /// reserved for under a budget when neither the recording's duration nor its size is known
    /// (a URL the provider fetches); the call settles at that reservation.
    pub cost_media_max_seconds: f64,
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
            openai: knobs::parse_openai(get)?,
            cost_cache: std::time::Duration::from_secs(num(get, "COST_CACHE_SECS", 60)?),
            snapshot: parse_snapshot(get)?,
            breaker: parse_breaker(get)?,
            cost_reservation_grace: std::time::Duration::from_secs(num(
                get,
                "COST_RESERVATION_GRACE_SECS",
                60,
            )?),
            cost_media_max_seconds: num::<u32>(get, "COST_MEDIA_MAX_SECONDS", 3600)?.into(),
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
    fn every_access_mode_reads_back_from_its_name_and_says_what_it_accepts() {
        for mode in AccessMode::ALL {
            let s = from(&[("ACCESS_MODE", mode.as_str())]).unwrap();
            assert_eq!(s.access.mode, mode, "{mode}");
            assert_eq!(
                mode.needs_key(),
                mode != AccessMode::Platform,
                "{mode}: only iam leaves it to the platform"
            );
            assert_eq!(
                mode.needs_platform(),
                mode.as_str().starts_with("iam+"),
                "{mode}"
            );
        }
        let accepts = |m: AccessMode| (m.accepts_signed(), m.accepts_bearer());
        assert_eq!(accepts(AccessMode::Hmac), (true, false));
        assert_eq!(accepts(AccessMode::Bearer), (false, true));
        assert_eq!(accepts(AccessMode::Keys), (true, true));
        assert_eq!(accepts(AccessMode::PlatformAndKeys), (true, true));
        assert_eq!(accepts(AccessMode::Platform), (false, false));
        assert_eq!(
            AccessMode::parse(" Platform+Bearer "),
            Some(AccessMode::PlatformAndBearer)
        );
        assert_eq!(AccessMode::parse("platform"), Some(AccessMode::Platform));
        assert_eq!(AccessMode::parse("bearer+iam"), None);
        let e = from(&[("ACCESS_MODE", "open")]).unwrap_err();
        assert!(e.to_string().contains("iam+keys"), "{e}");
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
