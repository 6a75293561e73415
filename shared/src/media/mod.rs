//! The upload pipeline: every new audio object runs its mapped route exactly once and its
//! result is kept next to it.
//!
//! Per object: skip keys under the results/spill prefixes (so results never trigger
//! themselves) -> find the most specific mapping (none: skipped, logged) -> HEAD the object ->
//! claim its job row (duplicates and racing deliveries stop here) -> accept it as audio or
//! reject it (`MEDIA_UNSUPPORTED`, `MEDIA_TOO_LARGE`) -> hand it to the model as a presigned URL
//! (`MEDIA_URL`, default) or inline base64 (`MEDIA_MODE=inline`, `MEDIA_DATA`) -> run the route
//! -> write the result JSON under the results prefix -> finish the job row.
//!
//! Invariants: a presigned URL's signature and inline media never reach an audit row, the job row
//! or the stored result; objects are never made public; only failures worth retrying are
//! reported as failures to the platform (so it redelivers), everything else is recorded. The
//! HEAD, the GET and the presigned URL are pinned to the version the event named
//! ([`ObjectPin`]): the size check and the read see one version, or the job fails
//! `OBJECT_CHANGED` / `OBJECT_NOT_FOUND` (two quick uploads to one key are two jobs, two answers).

mod format;

pub use format::{AUDIO_FORMATS, audio_format, check_media, media_vars, wav_seconds};

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::code::Code;
use crate::config::ObjectSettings;
use crate::model::media::{Claim, JobFinish, JobKey, JobStatus, MediaMapping, ObjectRef};
use crate::model::now_ms;
use crate::ports::{
    JobStore, ObjectError, ObjectMeta, ObjectPin, ObjectStore, Provider, Store, StoreError,
};
use crate::run::{RunContext, Runner};

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Not ours to process (no mapping, a results key, ...).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Its job already finished: a repeated delivery.
    Duplicate {
        /// Job id.
        job_id: i64,
        /// The job's status.
        status: JobStatus,
    },
    /// Another delivery holds the job right now.
    InProgress {
        /// Job id.
        job_id: i64,
    },
    /// Not audio we accept; recorded, not sent to a provider.
    Rejected {
        /// Job id.
        job_id: i64,
        /// `MEDIA_UNSUPPORTED` or `MEDIA_TOO_LARGE`.
        code: Code,
        /// Why.
        message: String,
    },
    /// The route answered; the result is stored.
    Succeeded {
        /// Job id.
        job_id: i64,
        /// Which member answered.
        answered_by: Option<String>,
        /// Where the result JSON is.
        result: String,
        /// The run's trace id.
        trace_id: String,
    },
    /// It failed (recorded on the job row).
    Failed {
        /// Job id, when one was claimed.
        job_id: Option<i64>,
        /// Stable code.
        code: Code,
        /// Why.
        message: String,
        /// Whether a redelivery may succeed (the platform is told to retry).
        retryable: bool,
    },
}

/// One object's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Bucket.
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Report {
    /// A failure the platform should redeliver, or a job another delivery holds right now (if
    /// that one crashed, the redelivery after its lease takes the job over).
    pub fn needs_retry(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Failed {
                retryable: true,
                ..
            } | Outcome::InProgress { .. }
        )
    }
}

fn object_failure(e: &ObjectError, job_id: Option<i64>) -> Outcome {
    failed(job_id, e.code(), e, e.retryable())
}

fn store_failure(e: &StoreError, job_id: Option<i64>) -> Outcome {
    failed(job_id, e.code(), e, e.retryable())
}

fn failed(job_id: Option<i64>, code: Code, e: &dyn std::fmt::Display, retryable: bool) -> Outcome {
    Outcome::Failed {
        job_id,
        code,
        message: e.to_string(),
        retryable,
    }
}

/// Runs the pipeline for one object. `force` re-runs a job that already finished (the CLI's
/// `media process`).
pub async fn process<S: Store + JobStore, P: Provider>(
    runner: &Runner<S, P>,
    objects: &dyn ObjectStore,
    cfg: &ObjectSettings,
    obj: &ObjectRef,
    ctx: &RunContext,
    force: bool,
) -> Report {
    let outcome = process_inner(runner, objects, cfg, obj, ctx, force).await;
    match &outcome {
        Outcome::Skipped { reason } => {
            tracing::info!(bucket = %obj.bucket, key = %obj.key, reason = %reason, "object skipped")
        }
        Outcome::Failed { code, message, .. } => {
            tracing::warn!(bucket = %obj.bucket, key = %obj.key, code = %code, message = %message, "object failed")
        }
        other => {
            tracing::info!(bucket = %obj.bucket, key = %obj.key, outcome = ?other, "object processed")
        }
    }
    Report {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        outcome,
    }
}

async fn process_inner<S: Store + JobStore, P: Provider>(
    runner: &Runner<S, P>,
    objects: &dyn ObjectStore,
    cfg: &ObjectSettings,
    obj: &ObjectRef,
    ctx: &RunContext,
    force: bool,
) -> Outcome {
    let skip = |reason: &str| Outcome::Skipped {
        reason: reason.to_owned(),
    };
    if obj.key.starts_with(&cfg.results_prefix) {
        return skip("the key is under the results prefix (our own output)");
    }
    if obj.key.starts_with(&cfg.spill_prefix) {
        return skip("the key is under the spill-over prefix");
    }
    let db = runner.store();
    let mapping = match db.find_mapping(&obj.bucket, &obj.key).await {
        Ok(Some(m)) => m,
        Ok(None) => return skip("no active mapping matches this bucket and key"),
        Err(e) => {
            return store_failure(&e, None);
        }
    };
    let lease = lease_ms(cfg, ctx);
    let started = now_ms();
    let meta = match objects
        .head(&obj.bucket, &obj.key, ObjectPin::of(obj))
        .await
    {
        Ok(m) => m,
        Err(e) => return unreadable(db, obj, &mapping, &e, started, lease).await,
    };
    let job = JobKey::of(obj, meta.version_id.as_deref(), meta.etag.as_deref());
    if force && let Err(e) = db.reopen_job(&job).await {
        return store_failure(&e, None);
    }
    let (job_id, attempt, pending) = match db
        .claim_job(&job, &mapping.project, &mapping.route_key, started, lease)
        .await
    {
        Ok(Claim::New(id)) => (id, 1, None),
        Ok(Claim::TakenOver {
            id,
            attempts,
            pending,
        }) => (id, attempts, pending),
        Ok(Claim::Done { id, status }) => return Outcome::Duplicate { job_id: id, status },
        Ok(Claim::InProgress(id)) => return Outcome::InProgress { job_id: id },
        Err(e) => {
            return store_failure(&e, None);
        }
    };
    let mut finish = JobFinish {
        attempt,
        size_bytes: i64::try_from(meta.size).ok(),
        content_type: meta.content_type.clone(),
        ..JobFinish::default()
    };
    if let Some(doc) = pending {
        // The route answered on an earlier delivery; only its result object is missing. The
        // provider is not called again.
        return store_result(db, objects, cfg, obj, job_id, doc, finish, started).await;
    }
    let outcome = run_job(
        runner,
        objects,
        cfg,
        obj,
        ctx,
        &mapping,
        &meta,
        job_id,
        &mut finish,
    )
    .await;
    finish.finished_ms = now_ms();
    finish.duration_ms = finish.finished_ms - started;
    let (status, code, message) = match &outcome {
        Outcome::Succeeded { .. } => (JobStatus::Succeeded, None, None),
        Outcome::Rejected { code, message, .. } => (
            JobStatus::Rejected,
            Some(code.as_str().to_owned()),
            Some(message.clone()),
        ),
        Outcome::Failed { code, message, .. } => (
            if has_pending_result(&finish) {
                JobStatus::Answered
            } else {
                JobStatus::Failed
            },
            Some(code.as_str().to_owned()),
            Some(message.clone()),
        ),
        _ => (JobStatus::Failed, None, None),
    };
    finish.status = status;
    finish.error_code = code;
    finish.error_message = message;
    record_finish(db, job_id, &finish, outcome).await
}

/// How long a claim holds: just past the end of this invocation when its deadline is known (a
/// crashed or timed-out run is taken over by the next delivery after that), else
/// `MEDIA_JOB_LEASE_SECS`.
/// Where the result document of the upload `key` is written: `<results prefix><key>.result.json`
/// (one format for the document written and the one re-written after a pending put).
fn result_key(cfg: &ObjectSettings, key: &str) -> String {
    format!("{}{key}.result.json", cfg.results_prefix)
}

fn lease_ms(cfg: &ObjectSettings, ctx: &RunContext) -> i64 {
    // Past the platform's kill (the deadline keeps back AI_DEADLINE_RESERVE_MS, 2 s by default).
    const MARGIN: Duration = Duration::from_secs(10);
    let lease = match ctx.remaining() {
        Some(left) => left + MARGIN,
        None => cfg.job_lease,
    };
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

fn has_pending_result(finish: &JobFinish) -> bool {
    finish
        .summary
        .as_ref()
        .is_some_and(|s| s.get("pending_result").is_some())
}

/// Finishes the job row, if this delivery still holds it.
async fn record_finish<S: JobStore>(
    db: &S,
    job_id: i64,
    finish: &JobFinish,
    outcome: Outcome,
) -> Outcome {
    match db.finish_job(job_id, finish).await {
        Ok(true) => outcome,
        Ok(false) => {
            tracing::warn!(
                job_id,
                attempt = finish.attempt,
                "the job was taken over by a later delivery; its result stands, this one is not recorded"
            );
            outcome
        }
        Err(e) => {
            // The lease runs out and a redelivery takes the job over: nothing is lost.
            tracing::error!(job_id, code = %e.code(), error = %crate::error::chain(&e), "job row not finished");
            failed(Some(job_id), e.code(), &e, true)
        }
    }
}

/// An object that could not be read when its event arrived still leaves a job row (status
/// `failed`, its code), keyed by the version the event named.
async fn unreadable<S: JobStore>(
    db: &S,
    obj: &ObjectRef,
    mapping: &MediaMapping,
    e: &ObjectError,
    started: i64,
    lease: i64,
) -> Outcome {
    let job = JobKey::of(obj, None, None);
    let (id, attempt) = match db
        .claim_job(&job, &mapping.project, &mapping.route_key, started, lease)
        .await
    {
        Ok(Claim::New(id)) => (id, 1),
        Ok(Claim::TakenOver {
            id,
            attempts,
            pending: Some(doc),
        }) => {
            // The answer waiting on the row stays there for the next delivery.
            let finish = JobFinish {
                status: JobStatus::Answered,
                attempt: attempts,
                error_code: Some(e.code().as_str().to_owned()),
                error_message: Some(e.to_string()),
                summary: Some(json!({"pending_result": doc})),
                finished_ms: now_ms(),
                duration_ms: now_ms() - started,
                ..JobFinish::default()
            };
            return record_finish(db, id, &finish, failed(Some(id), e.code(), e, true)).await;
        }
        Ok(Claim::TakenOver { id, attempts, .. }) => (id, attempts),
        Ok(Claim::Done { id, .. } | Claim::InProgress(id)) => return object_failure(e, Some(id)),
        Err(se) => {
            tracing::error!(code = %se.code(), "no job row for an unreadable object");
            return object_failure(e, None);
        }
    };
    let finish = JobFinish {
        status: JobStatus::Failed,
        attempt,
        error_code: Some(e.code().as_str().to_owned()),
        error_message: Some(e.to_string()),
        finished_ms: now_ms(),
        duration_ms: now_ms() - started,
        ..JobFinish::default()
    };
    record_finish(db, id, &finish, object_failure(e, Some(id))).await
}

/// Stores a result document kept on the job row and finishes the job `succeeded`; if storing
/// fails again, the document stays on the row for the next delivery.
#[allow(clippy::too_many_arguments)]
async fn store_result<S: JobStore>(
    db: &S,
    objects: &dyn ObjectStore,
    cfg: &ObjectSettings,
    obj: &ObjectRef,
    job_id: i64,
    doc: String,
    mut finish: JobFinish,
    started: i64,
) -> Outcome {
    let result_key = result_key(cfg, &obj.key);
    let parsed: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
    let put = objects
        .put(
            &obj.bucket,
            &result_key,
            doc.clone().into_bytes(),
            "application/json",
        )
        .await;
    finish.finished_ms = now_ms();
    finish.duration_ms = finish.finished_ms - started;
    // The route result flattens its run result: the trace id sits beside `answered_by`.
    finish.trace_id = parsed
        .pointer("/result/trace_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ids: Vec<String> = parsed
        .pointer("/result/member_attempts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a.get("audit_id")
                .and_then(Value::as_i64)
                .map(|i| i.to_string())
        })
        .collect();
    finish.audit_ids = (!ids.is_empty()).then(|| ids.join(","));
    finish.media_format = parsed
        .pointer("/object/format")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let outcome = match put {
        Ok(()) => {
            finish.status = JobStatus::Succeeded;
            finish.result_bucket = Some(obj.bucket.clone());
            finish.result_key = Some(result_key.clone());
            finish.summary = Some(json!({"stored_on_redelivery": true}));
            Outcome::Succeeded {
                job_id,
                answered_by: parsed
                    .pointer("/result/answered_by")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                result: format!("s3://{}/{result_key}", obj.bucket),
                trace_id: finish.trace_id.clone().unwrap_or_default(),
            }
        }
        Err(e) => {
            finish.status = JobStatus::Answered;
            finish.error_code = Some(e.code().as_str().to_owned());
            finish.error_message = Some(e.to_string());
            finish.summary = Some(json!({"pending_result": doc}));
            failed(Some(job_id), e.code(), &e, true)
        }
    };
    record_finish(db, job_id, &finish, outcome).await
}

#[allow(clippy::too_many_arguments)]
async fn run_job<S: Store + JobStore, P: Provider>(
    runner: &Runner<S, P>,
    objects: &dyn ObjectStore,
    cfg: &ObjectSettings,
    obj: &ObjectRef,
    ctx: &RunContext,
    mapping: &MediaMapping,
    meta: &ObjectMeta,
    job_id: i64,
    finish: &mut JobFinish,
) -> Outcome {
    let format = match check_media(
        &obj.key,
        meta.content_type.as_deref(),
        meta.size,
        cfg.media_max_bytes,
    ) {
        Ok(f) => f,
        Err((code, message)) => {
            return Outcome::Rejected {
                job_id,
                code,
                message,
            };
        }
    };
    finish.media_format = Some(format.to_owned());

    // Route variables < mapping variables < the media variables set here.
    let route_vars = match runner
        .resolve_route(&mapping.project, &mapping.route_key)
        .await
    {
        Ok(r) => r.variables.clone(),
        Err(e) => {
            return store_failure(&e, Some(job_id));
        }
    };
    let mut vars = Map::new();
    if let Some(Value::Object(m)) = &mapping.variables {
        vars.extend(m.clone());
    }
    let mode = vars
        .get("MEDIA_MODE")
        .or_else(|| route_vars.as_ref().and_then(|r| r.get("MEDIA_MODE")))
        .and_then(Value::as_str)
        .unwrap_or("url")
        .to_ascii_lowercase();
    let mut ctx = RunContext {
        deadline: ctx.deadline,
        request_id: ctx.request_id.clone(),
        redact: ctx.redact.clone(),
        caller: ctx.caller.clone(),
        media_seconds: meta.duration_seconds,
        media_bytes: Some(meta.size),
        ..RunContext::new(ctx.trigger)
    };
    match media_vars(
        objects,
        cfg,
        obj,
        meta.size,
        format,
        mode == "inline",
        &mut vars,
        &mut ctx.redact,
    )
    .await
    {
        Ok(seconds) => ctx.media_seconds = seconds.or(ctx.media_seconds),
        Err(e) => return object_failure(&e, Some(job_id)),
    }

    let routed = runner
        .run_route(&mapping.project, &mapping.route_key, &vars, &ctx)
        .await;
    finish.trace_id = Some(routed.result.trace_id.clone());
    let ids: Vec<String> = routed
        .member_attempts
        .iter()
        .filter_map(|a| a.audit_id.map(|i| i.to_string()))
        .collect();
    finish.audit_ids = (!ids.is_empty()).then(|| ids.join(","));
    finish.summary = Some(json!({
        "status": routed.result.status,
        "answered_by": routed.answered_by,
        "members_tried": routed.member_attempts.len(),
        "http_attempts": routed.result.attempts,
        "total_ms": routed.result.total_ms,
        "content_chars": routed.result.content.as_ref().map(|c| c.chars().count()),
    }));

    let result_key = result_key(cfg, &obj.key);
    let mut doc = json!({
        "object": {"bucket": obj.bucket, "key": obj.key, "size": meta.size, "format": format, "etag": meta.etag, "version_id": meta.version_id},
        "job_id": job_id,
        "route": {"project": mapping.project, "route_key": mapping.route_key},
        "result": routed,
    })
    .to_string();
    for r in ctx.redact.iter().filter(|r| r.len() >= 8) {
        doc = doc.replace(r.as_str(), "[redacted]");
    }
    if let Err(e) = objects
        .put(
            &obj.bucket,
            &result_key,
            doc.clone().into_bytes(),
            "application/json",
        )
        .await
    {
        // The route answered (and was billed): keep its result on the job row, so the
        // redelivery stores it instead of calling the provider again. A failed route is not
        // kept: its redelivery runs it again.
        if routed.result.failure.is_none()
            && let Some(Value::Object(m)) = &mut finish.summary
        {
            m.insert("pending_result".into(), Value::String(doc));
        }
        return failed(Some(job_id), e.code(), &e, true);
    }
    finish.result_bucket = Some(obj.bucket.clone());
    finish.result_key = Some(result_key.clone());
    match &routed.result.failure {
        None => Outcome::Succeeded {
            job_id,
            answered_by: routed.answered_by.clone(),
            result: format!("s3://{}/{result_key}", obj.bucket),
            trace_id: routed.result.trace_id.clone(),
        },
        Some(e) => failed(Some(job_id), e.code(), e, e.retryable()),
    }
}
