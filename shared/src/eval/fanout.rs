//! Evaluation runs that outgrow one invocation: a run is started from the evaluation catalog,
//! its planned calls are cut into chunks sent through a [`Queue`] (SQS), each chunk is worked by
//! whichever `run-route` instance receives it, and the chunk that completes the run finalizes it
//! (summary, gate, reports).
//!
//! Invariants:
//! - every result is an idempotent insert keyed (run, target, case, repetition), and a chunk
//!   skips what is stored already, so a redelivered or duplicated message never counts twice and
//!   rarely calls twice;
//! - a run is finalized exactly once: finalizing is claimed by one conditional `UPDATE`, and the
//!   final write is fenced by the claim's token; a finalizer that died is taken over once its
//!   claim is older than [`FINALIZE_LEASE_MS`] (the message that found it in progress fails, so
//!   the queue redelivers it later);
//! - a run stops early (status `stopping`, then `stopped`) when its workers see the suite's
//!   number of consecutive provider failures; chunks that arrive after that call nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::report;
use super::run::{
    Breaker, CaseResult, EvalError, Jobs, Options, Report, Start, create, execute, finish, plan,
    prepare, stop_after, stored_suite,
};
use super::suite::read_suite;
use crate::model::eval::EvalStatus;
use crate::model::now_ms;
use crate::ports::{EvalStore, ObjectStore, Provider, Queue, Store};
use crate::run::{Runner, new_trace_id};

/// How long a finalizer's claim holds before another worker may take the run over.
pub const FINALIZE_LEASE_MS: i64 = 300_000;

/// One queue message: plan positions `start..end` of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// The run.
    pub eval_run: String,
    /// First plan position.
    pub start: usize,
    /// One past the last.
    pub end: usize,
}

/// A run that was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// The run's id.
    pub run_id: String,
    /// The suite.
    pub suite: String,
    /// Planned results.
    pub total: usize,
    /// Messages sent.
    pub chunks: usize,
    /// `queued`.
    pub status: &'static str,
}

/// Where a finalized run's reports go: private objects `<prefix><suite>/<run>/report.{json,xml,html}`.
#[derive(Clone, Copy)]
pub struct ReportSink<'a> {
    /// The object store.
    pub store: &'a dyn ObjectStore,
    /// Bucket.
    pub bucket: &'a str,
    /// Key prefix (ends with `/`).
    pub prefix: &'a str,
}

impl std::fmt::Debug for ReportSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSink")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The suite `name` from the evaluation catalog, checked and prepared; any problem is
/// [`EvalError::Invalid`] naming it (nothing is called or written).
async fn catalog_suite<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    name: &str,
    opts: &Options,
) -> Result<(super::suite::Suite, super::run::Resolved), EvalError> {
    let doc = runner
        .store()
        .suite_document(name)
        .await?
        .ok_or_else(|| {
            EvalError::Invalid(format!(
                "no active suite named {name:?} in the evaluation catalog (apply one with `ai-runner cfg gen`)"
            ))
        })?;
    let (suite, findings) = read_suite(&doc, name, Path::new("."));
    let suite = suite.ok_or_else(|| EvalError::Invalid(describe(&findings)))?;
    let (resolved, problems) = prepare(runner, &suite, opts).await;
    if !problems.is_empty() {
        return Err(EvalError::Invalid(describe(&problems)));
    }
    Ok((suite, resolved))
}

/// Every target a run of catalog suite `name` with `opts` would call, its judge included (what
/// an API caller's scope must cover before the run starts). Nothing is called or written.
pub async fn suite_targets<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    name: &str,
    opts: &Options,
) -> Result<Vec<super::suite::Target>, EvalError> {
    let doc = runner.store().suite_document(name).await?.ok_or_else(|| {
        EvalError::Invalid(format!(
            "no active suite named {name:?} in the evaluation catalog"
        ))
    })?;
    let (suite, findings) = read_suite(&doc, name, Path::new("."));
    let suite = suite.ok_or_else(|| EvalError::Invalid(describe(&findings)))?;
    let mut out: Vec<_> = super::run::targets_of(&suite, opts)
        .into_iter()
        .cloned()
        .collect();
    out.extend(suite.judge.clone());
    Ok(out)
}

fn describe(findings: &[crate::catalog::Finding]) -> String {
    findings
        .iter()
        .filter(|f| f.severity == crate::catalog::Severity::Error)
        .map(|f| format!("{}: {} ({})", f.path, f.message, f.code))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Starts a run of catalog suite `name` and queues its chunks of `chunk_size` calls. A queue that
/// does not take every message marks the run `failed` (so it is never mistaken for a running one)
/// and is [`EvalError::Queue`] (retryable: the schedule's retry starts a new run).
pub async fn start_queued<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    name: &str,
    opts: &Options,
    how: &Start,
    queue: &dyn Queue,
    chunk_size: usize,
) -> Result<Queued, EvalError> {
    let (suite, resolved) = catalog_suite(runner, name, opts).await?;
    let total = plan(&suite, opts).len();
    if total == 0 {
        // Nothing would ever finalize a run without chunks.
        return Err(EvalError::Invalid(format!(
            "suite {name:?}: no case matches the tags / limit given; nothing to run"
        )));
    }
    let (run_key, _) = create(runner, &suite, opts, &resolved, how).await?;
    let size = chunk_size.max(1);
    let bodies: Vec<String> = (0..total)
        .step_by(size)
        .map(|start| {
            serde_json::to_string(&Chunk {
                eval_run: run_key.clone(),
                start,
                end: (start + size).min(total),
            })
            .unwrap_or_default()
        })
        .collect();
    if let Err(e) = queue.send(&bodies).await {
        let why = e.to_string();
        if let Err(se) = runner
            .store()
            .stop_run(&run_key, EvalStatus::Failed, &why)
            .await
        {
            tracing::error!(run = %run_key, code = %se.code(), "could not mark the unqueued run failed");
        }
        return Err(EvalError::Queue(why));
    }
    tracing::info!(run = %run_key, suite = %name, total, chunks = bodies.len(), "evaluation run queued");
    Ok(Queued {
        run_id: run_key,
        suite: suite.name,
        total,
        chunks: bodies.len(),
        status: "queued",
    })
}

/// Runs catalog suite `name` in this process (no queue configured), stores it like the CLI
/// does, and writes its reports to `sink` when given.
pub async fn start_inline<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    name: &str,
    opts: &Options,
    how: &Start,
    sink: Option<ReportSink<'_>>,
) -> Result<Report, EvalError> {
    let (suite, _) = catalog_suite(runner, name, opts).await?;
    let report = super::run::start(runner, &suite, opts, how, &|_, _, _| {}).await?;
    if let Some(sink) = sink {
        match write_reports(sink, &report).await {
            Ok(location) => {
                // The run is finished already; the location is recorded by a second write.
                if let Err(e) = runner
                    .store()
                    .finish_run(&report.run_id, &report, Some(&location), None)
                    .await
                {
                    tracing::warn!(run = %report.run_id, code = %e.code(), "report location not stored");
                }
            }
            Err(e) => tracing::warn!(run = %report.run_id, error = %e, "reports not written"),
        }
    }
    Ok(report)
}

/// What working one chunk did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Worked {
    /// Calls made by this chunk.
    pub called: usize,
    /// This chunk finalized the run.
    pub finalized: bool,
    /// The run was over already (finished, stopped or failed): nothing was called.
    pub skipped: bool,
}

/// Works one chunk: calls its planned jobs that have no stored result, records each, counts
/// provider failures toward the early stop, and finalizes the run when it is complete. An `Err`
/// means the message must be redelivered (database down, a result not stored, a finalization in
/// progress elsewhere or failed).
pub async fn work<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    chunk: &Chunk,
    sink: Option<ReportSink<'_>>,
) -> Result<Worked, EvalError> {
    let store = runner.store();
    let run = store
        .eval_run(&chunk.eval_run)
        .await?
        .ok_or_else(|| EvalError::UnknownRun(chunk.eval_run.clone()))?;
    let mut worked = Worked {
        called: 0,
        finalized: false,
        skipped: false,
    };
    if run.status.is_final() {
        worked.skipped = true;
        return Ok(worked);
    }
    let started = Instant::now();
    let (suite, opts) = stored_suite(&run)?;
    if run.status == EvalStatus::Running {
        let (resolved, _) = prepare(runner, &suite, &opts).await;
        let skip: BTreeSet<(String, String, u32)> = store.result_keys(&run.run_key).await?;
        let breaker = Breaker::new(
            stop_after(&suite, &opts),
            u32::try_from(run.failure_streak).unwrap_or(0),
        );
        let lost = Arc::new(AtomicBool::new(false));
        let jobs = Jobs {
            run_key: &run.run_key,
            done: Vec::new(),
            skip,
            range: Some(chunk.start..chunk.end),
            resolved: &resolved,
            breaker: &breaker,
        };
        let fresh = execute(runner, &suite, &opts, jobs, &|_, _, _| {}, |r: CaseResult| {
            let (key, lost) = (run.run_key.clone(), Arc::clone(&lost));
            async move {
                if let Err(e) = store.record_result(&key, &r).await {
                    tracing::warn!(code = %e.code(), run = %key, case = %r.case_key, "evaluation result not stored; the chunk will be redelivered");
                    lost.store(true, Ordering::SeqCst);
                }
                r
            }
        })
        .await;
        worked.called = fresh.len();
        let trailing = fresh
            .iter()
            .rev()
            .take_while(|r| Breaker::is_outage(r))
            .count();
        let all_failed = !fresh.is_empty() && trailing == fresh.len();
        let streak = store
            .note_failures(
                &run.run_key,
                all_failed,
                i64::try_from(fresh.len()).unwrap_or(i64::MAX),
                i64::try_from(trailing).unwrap_or(i64::MAX),
            )
            .await?;
        let limit = stop_after(&suite, &opts);
        if breaker.tripped() || (limit > 0 && streak >= i64::from(limit)) {
            let reason = format!(
                "stopped after {streak} consecutive provider failures (stop_after_failures = {limit})"
            );
            store
                .stop_run(&run.run_key, EvalStatus::Stopping, &reason)
                .await?;
        }
        if lost.load(Ordering::SeqCst) {
            return Err(EvalError::Queue(
                "some results were not stored; redeliver the chunk".into(),
            ));
        }
    }
    worked.finalized =
        finalize_if_complete(runner, &run.run_key, &suite, &opts, started, sink).await?;
    Ok(worked)
}

/// Finalizes the run when every planned result is stored, or when it was stopped early; true if
/// this call finalized it.
async fn finalize_if_complete<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    run_key: &str,
    suite: &super::suite::Suite,
    opts: &Options,
    started: Instant,
    sink: Option<ReportSink<'_>>,
) -> Result<bool, EvalError> {
    let store = runner.store();
    let Some(run) = store.eval_run(run_key).await? else {
        return Err(EvalError::UnknownRun(run_key.to_owned()));
    };
    let complete = store.count_results(run_key).await? >= run.total;
    let stopping = run.status == EvalStatus::Stopping;
    if !(complete || stopping || run.status == EvalStatus::Finalizing) {
        return Ok(false);
    }
    if run.status.is_final() {
        return Ok(false);
    }
    let token = new_trace_id()[..16].to_owned();
    let now = now_ms();
    if !store
        .claim_finalize(run_key, &token, now, now - FINALIZE_LEASE_MS)
        .await?
    {
        // Another worker is finalizing: fail this message so the queue brings it back; by then
        // the run is finished (and the message is acknowledged) or the claim is stale.
        return match store.eval_run(run_key).await?.map(|r| r.status) {
            Some(EvalStatus::Finalizing) => Err(EvalError::Queue(format!(
                "run {run_key} is being finalized by another worker"
            ))),
            _ => Ok(false),
        };
    }
    let mut results = store.eval_results(run_key).await?;
    super::run::in_plan_order(&run, &mut results);
    let base = match &run.baseline {
        Some(b) => store.eval_run(b).await?.and_then(|r| r.summary),
        None => None,
    };
    let stopped = run.stop_reason.clone().filter(|_| !complete);
    let mut report = finish(
        suite,
        opts,
        run_key.to_owned(),
        started,
        results,
        base.as_deref(),
        stopped,
    );
    report.total_ms = u64::try_from(now_ms() - run.created_ms).unwrap_or(0);
    let location = match sink {
        Some(sink) => Some(
            write_reports(sink, &report)
                .await
                .map_err(|e| EvalError::Queue(format!("reports not written: {e}")))?,
        ),
        None => None,
    };
    let written = store
        .finish_run(run_key, &report, location.as_deref(), Some(&token))
        .await?;
    if written {
        tracing::info!(run = %run_key, passed = report.gate.passed, "evaluation run finalized");
    }
    Ok(written)
}

/// Writes the three reports; returns the prefix they went under (`bucket/key-prefix`).
pub async fn write_reports(
    sink: ReportSink<'_>,
    report: &Report,
) -> Result<String, crate::ports::ObjectError> {
    let base = format!("{}{}/{}/", sink.prefix, report.suite, report.run_id);
    for (name, body, ty) in [
        ("report.json", report::json(report), "application/json"),
        ("junit.xml", report::junit(report), "application/xml"),
        (
            "report.html",
            report::html(report),
            "text/html; charset=utf-8",
        ),
    ] {
        sink.store
            .put(sink.bucket, &format!("{base}{name}"), body.into_bytes(), ty)
            .await?;
    }
    Ok(format!("{}/{base}", sink.bucket))
}
