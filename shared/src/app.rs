//! The process's state, built once and borrowed by every invocation or command: the runner (SQL
//! store, HTTP provider, key cache), the object store and the settings. The functions and the
//! CLI build it the same way, so a CLI run behaves exactly like a deployed one.
//!
//! Invariants: nothing here connects or calls out (the pool connects lazily on first use); a
//! state that cannot be built is an error with a stable code, never a half-built value. One of
//! each: one object store (the runner's spill-over, audit spool and media source share its
//! handle, never a second client), one copy of the settings (the parts the edges need are
//! borrowed from it, never copied out).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{AccessSettings, ConfigError, EvalSettings, ObjectSettings, Settings};
use crate::error::RunError;
use crate::objects;
use crate::ports::{ObjectStore, Queue};
use crate::provider::HttpProvider;
use crate::run::{MediaSource, Runner, Spill};
use crate::store::Db;

/// The production runner: SQL store plus HTTP provider.
pub type AppRunner = Runner<Db, HttpProvider>;

/// Everything a process keeps between invocations.
#[derive(Debug)]
pub struct App {
    /// The engine.
    pub runner: AppRunner,
    /// Object storage (uploads, results, spill-over): the one handle, shared with the runner.
    pub objects: Arc<dyn ObjectStore>,
    /// The evaluation queue, when `EVAL_QUEUE_URL` is set.
    pub queue: Option<Arc<dyn Queue>>,
    /// The settings the state was built from, held once.
    settings: Settings,
}

/// The audit spool: `OSS_BUCKET` under `AUDIT_SPOOL_PREFIX`; with the local objects directory
/// (the CLI and the embedded default) a bucket `ai-runner` when none is named. Without a bucket
/// on S3/OSS there is no spool (a failed insert is then logged with the whole row).
pub(crate) fn audit_spool(
    settings: &ObjectSettings,
    objects: &Arc<dyn ObjectStore>,
) -> Option<crate::spool::AuditSpool> {
    let bucket = match (&settings.bucket, &settings.target) {
        (Some(b), _) => b.clone(),
        (None, crate::config::ObjectTarget::Local(_)) => "ai-runner".to_owned(),
        (None, crate::config::ObjectTarget::S3 { .. }) => return None,
    };
    Some(crate::spool::AuditSpool {
        store: objects.clone(),
        bucket,
        prefix: settings.audit_spool_prefix.clone(),
    })
}

/// The evaluation queue, when `EVAL_QUEUE_URL` is set (and the SQS client is compiled in).
#[cfg(feature = "queue")]
fn queue(settings: &Settings) -> Option<Arc<dyn Queue>> {
    crate::queue::SqsQueue::from_settings(&settings.eval).map(|q| Arc::new(q) as Arc<dyn Queue>)
}

#[cfg(not(feature = "queue"))]
fn queue(settings: &Settings) -> Option<Arc<dyn Queue>> {
    if settings.eval.queue_url.is_some() {
        tracing::warn!(
            "EVAL_QUEUE_URL is set but this build has no SQS client (feature `queue`); evaluations run in process"
        );
    }
    None
}

impl App {
    /// Builds the state from settings.
    pub fn new(settings: &Settings) -> Result<Self, RunError> {
        Self::with_db(settings, Db::new(settings.database.clone()))
    }

    /// Builds the state around a database handle the caller made (e.g. one that creates the
    /// embedded file).
    pub fn with_db(settings: &Settings, db: Db) -> Result<Self, RunError> {
        let provider = HttpProvider::new(settings.http.clone())?;
        let objects: Arc<dyn ObjectStore> = Arc::from(objects::from_settings(&settings.objects));
        let spill = if settings.enable_oss_spillover {
            let bucket = settings
                .objects
                .bucket
                .clone()
                .ok_or(ConfigError::Missing(vec!["OSS_BUCKET"]))?;
            Some(Spill {
                store: Arc::clone(&objects),
                bucket,
                prefix: settings.objects.spill_prefix.clone(),
                threshold: settings.objects.spill_threshold,
            })
        } else {
            None
        };
        Ok(Self {
            runner: Runner::new(db, provider, settings)
                .with_spill(spill)
                .with_audit_spool(audit_spool(&settings.objects, &objects))
                .with_media(Some(MediaSource {
                    store: Arc::clone(&objects),
                    settings: settings.objects.clone(),
                })),
            objects,
            queue: queue(settings),
            settings: settings.clone(),
        })
    }

    /// Loads settings (env files + environment) and builds the state: what a function's `main` does.
    pub fn from_env() -> Result<Self, RunError> {
        Self::new(&Settings::load()?)
    }

    /// The settings the state was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Object settings (bucket, prefixes, limits).
    pub fn object_settings(&self) -> &ObjectSettings {
        &self.settings.objects
    }

    /// Evaluation settings (chunk size, reports prefix).
    pub fn eval_settings(&self) -> &EvalSettings {
        &self.settings.eval
    }

    /// Who may call the HTTP APIs (`ACCESS_MODE`, skew, fail-open).
    pub fn access(&self) -> &AccessSettings {
        &self.settings.access
    }

    /// Kept back from a platform deadline for the audit row and the answer.
    pub fn deadline_reserve(&self) -> Duration {
        self.settings.http.deadline_reserve
    }
}
