//! Stored runs: created with their suite snapshot, options and configuration hash, started,
//! resumed where they stopped, completed with their summary; results written in batches.
//!
//! Invariants: a run's status moves `running` -> a final state once; a resumed run calls only
//! what has no stored result; a result is acknowledged only after its batch committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::{
    Breaker, CaseResult, Jobs, Options, Progress, Report, Resolved, execute, finish, plan, prepare,
    stop_after,
};
use crate::code::Code;
use crate::eval::suite::{Suite, read_suite};
use crate::model::eval::{EvalRun, EvalStatus};
use crate::ports::{EvalStore, Provider, Store, StoreError};
use crate::run::{Runner, Trigger, new_trace_id};

/// Where a stored run comes from.
#[derive(Debug, Clone)]
pub struct Start {
    /// `cli`, `schedule`, `api`.
    pub trigger: Trigger,
    /// Compare against this run (`--baseline`), if any.
    pub baseline: Option<String>,
}

/// Why a stored run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No run with this key.
    #[error("no evaluation run {0:?}")]
    UnknownRun(String),
    /// The stored suite no longer reads (it was stored by another version).
    #[error("the stored suite of run {run} does not read: {why}")]
    BadSnapshot {
        /// The run.
        run: String,
        /// The first problem.
        why: String,
    },
    /// The suite, a target or a case is not runnable; nothing was called.
    #[error("{0}")]
    Invalid(String),
    /// The run's messages could not be queued.
    #[error("the evaluation queue failed: {0}")]
    Queue(String),
}

impl EvalError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Store(e) => e.code(),
            Self::UnknownRun(_) => Code::UnknownReference,
            Self::BadSnapshot { .. } | Self::Invalid(_) => Code::SuiteInvalid,
            Self::Queue(_) => Code::QueueUnavailable,
        }
    }
}

/// Creates the stored run (status `running`) for `suite`: its snapshot, options, configuration
/// hash and baseline. Returns the run key and baseline.
pub(crate) async fn create<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    resolved: &Resolved,
    how: &Start,
) -> Result<(String, Option<String>), EvalError> {
    let run_key = new_trace_id()[..16].to_owned();
    let store = runner.store();
    let baseline = match how.baseline.as_deref() {
        Some("last") => store.last_finished_run(&suite.name, &run_key).await?,
        Some(k) => Some(
            store
                .eval_run(k)
                .await?
                .map(|r| r.run_key)
                .ok_or_else(|| EvalError::UnknownRun(k.to_owned()))?,
        ),
        None => None,
    };
    store
        .create_run(
            &EvalRun {
                run_key: run_key.clone(),
                suite: suite.name.clone(),
                status: EvalStatus::Running,
                trigger: how.trigger,
                suite_json: suite.snapshot.clone(),
                options_json: serde_json::to_value(opts).unwrap_or(Value::Null),
                config_hash: resolved.hash.clone(),
                total: i64::try_from(plan(suite, opts).len()).unwrap_or(i64::MAX),
                baseline: baseline.clone(),
                summary: None,
                gate: None,
                report_location: None,
                created_ms: 0,
                finished_ms: None,
                stop_reason: None,
                failure_streak: 0,
            }
            .stamped(),
        )
        .await?;
    Ok((run_key, baseline))
}

/// Runs the suite and stores the run and every result as it finishes, so an interrupted run can
/// be resumed ([`resume`]); `config_hash` says what configuration was measured.
pub async fn start<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    how: &Start,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let started = Instant::now();
    let (resolved, _) = prepare(runner, suite, opts).await;
    let (run_key, baseline) = create(runner, suite, opts, &resolved, how).await?;
    complete(
        runner,
        suite,
        opts,
        &resolved,
        run_key,
        baseline,
        started,
        Vec::new(),
        progress,
    )
    .await
}

/// Puts a stored run's results in plan order (targets as the suite lists them, then cases, then
/// repetitions), whatever order they were stored in (a fanned-out run's chunks finish in any
/// order). Results the plan does not know go last.
pub fn in_plan_order(run: &EvalRun, results: &mut [CaseResult]) {
    let Ok((suite, opts)) = stored_suite(run) else {
        return;
    };
    let order: BTreeMap<(String, String, u32), usize> = plan(&suite, &opts)
        .iter()
        .enumerate()
        .map(|(i, (t, c, r))| ((t.label(), c.key.clone(), *r), i))
        .collect();
    results.sort_by_key(|r| {
        order
            .get(&(r.target.clone(), r.case_key.clone(), r.repeat))
            .copied()
            .unwrap_or(usize::MAX)
    });
}

/// A stored run's suite and options, read back from its snapshot.
pub(crate) fn stored_suite(run: &EvalRun) -> Result<(Suite, Options), EvalError> {
    let (suite, findings) = read_suite(&run.suite_json, &run.suite, Path::new("."));
    let suite = suite.ok_or_else(|| EvalError::BadSnapshot {
        run: run.run_key.clone(),
        why: findings
            .first()
            .map(|f| format!("{}: {}", f.path, f.message))
            .unwrap_or_default(),
    })?;
    let opts: Options = serde_json::from_value(run.options_json.clone()).unwrap_or_default();
    Ok((suite, opts))
}

/// Goes on with an interrupted run: the same suite, options and run id; only the (target, case,
/// repetition) without a stored result are called.
pub async fn resume<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    run_key: &str,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let started = Instant::now();
    let store = runner.store();
    let run = store
        .eval_run(run_key)
        .await?
        .ok_or_else(|| EvalError::UnknownRun(run_key.to_owned()))?;
    let (suite, opts) = stored_suite(&run)?;
    let (resolved, _) = prepare(runner, &suite, &opts).await;
    let done = store.eval_results(run_key).await?;
    complete(
        runner,
        &suite,
        &opts,
        &resolved,
        run.run_key,
        run.baseline,
        started,
        done,
        progress,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn complete<S: Store + EvalStore, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    resolved: &Resolved,
    run_key: String,
    baseline: Option<String>,
    started: Instant,
    done: Vec<CaseResult>,
    progress: Progress<'_>,
) -> Result<Report, EvalError> {
    let store = runner.store();
    let breaker = Breaker::new(stop_after(suite, opts), 0);
    let jobs = Jobs {
        run_key: &run_key,
        done,
        skip: BTreeSet::new(),
        range: None,
        resolved,
        breaker: &breaker,
    };
    // Results are written by one writer beside the calls, with group commit: whatever finished
    // while the previous batch was being written goes in the next batch, one commit each. A
    // result is reported (progress) only once it is stored, so a resume never redoes it.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
    let calls = async move {
        let results = execute(runner, suite, opts, jobs, progress, |r: CaseResult| {
            let (ack, stored) = tokio::sync::oneshot::channel();
            let sent = tx.send((r.clone(), ack));
            async move {
                if sent.is_ok() {
                    // Err: the writer is gone; the result stands in this report.
                    let _ = stored.await;
                }
                r
            }
        })
        .await;
        drop(tx);
        results
    };
    let (results, ()) = tokio::join!(calls, write_batches(store, &run_key, rx));
    let base = match &baseline {
        Some(b) => store.eval_run(b).await?.and_then(|r| r.summary),
        None => None,
    };
    let stopped = breaker.tripped().then(|| breaker.reason());
    let report = finish(
        suite,
        opts,
        run_key,
        started,
        results,
        base.as_deref(),
        stopped,
    );
    store
        .finish_run(&report.run_id, &report, None, None)
        .await?;
    Ok(report)
}

/// Most results per write.
pub(super) const BATCH_MAX: usize = 256;

/// A finished result and who waits for it to be stored.
type Pending = (CaseResult, tokio::sync::oneshot::Sender<()>);

/// Writes results as they arrive: the first waiting one with every other already waiting (up to
/// [`BATCH_MAX`]) in one transaction, then acknowledges them; returns when the senders are gone.
async fn write_batches<S: EvalStore>(
    store: &S,
    run_key: &str,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::new();
    let mut acks = Vec::new();
    while let Some((first, ack)) = rx.recv().await {
        batch.push(first);
        acks.push(ack);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok((r, ack)) => {
                    batch.push(r);
                    acks.push(ack);
                }
                Err(_) => break,
            }
        }
        if store.record_results(run_key, &batch).await.is_err() {
            // Once more after a pause (a lock timeout, a dropped connection); each insert is
            // idempotent.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Err(e) = store.record_results(run_key, &batch).await {
                // The results stand in this report; a resume would call these cases again.
                tracing::warn!(code = %e.code(), run = %run_key, results = batch.len(), "evaluation results not stored");
            }
        }
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}
