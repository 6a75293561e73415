//! Running a suite: every (target, case, repetition) as an ordinary audited call
//! (`trigger_source` = `eval`, `request_id` = the evaluation run's id), graded by its assertions,
//! summarised per target and gated. Map: [`plan`] (what a run calls, resolved and checked before
//! any call), [`execute`] (the calls, their grading and judge calls), [`lifecycle`] (stored runs:
//! create, start, resume, complete, results written in batches), [`summary`] (per-target numbers
//! and gates); this module holds the options, the early-stop breaker and the in-memory run.
//!
//! Invariants: calls run at most `concurrency` at a time; results carry the audit row ids of their
//! calls; a call that fails is an error result (score 0, its code kept), never a crash; the
//! summary is computed from the results only, so a report can always be recomputed from them.

mod execute;
mod judge;
mod lifecycle;
mod plan;
mod summary;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub(crate) use execute::{Jobs, execute, finish};
pub use lifecycle::{EvalError, Start, in_plan_order, resume, start};
pub(crate) use lifecycle::{create, stored_suite};
pub(crate) use plan::targets_of;
pub use plan::{JUDGE_VARS, Resolved, plan, preflight, prepare};
pub use summary::{gate, summarise};

use super::suite::{Gates, Suite, Target};
use crate::code::Code;
pub use crate::model::eval::{CaseResult, GateOutcome, Report, TargetSummary};
use crate::ports::{Provider, Store};
use crate::run::{Runner, new_trace_id};

/// Narrowing and overrides from the command line (stored with a run, so a resume runs the same
/// plan).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Run only these targets (default: the suite's).
    pub targets: Vec<Target>,
    /// Calls in flight at once (default: the suite's).
    pub concurrency: Option<usize>,
    /// Repetitions (default: the suite's).
    pub repeat: Option<u32>,
    /// At most this many cases.
    pub limit: Option<usize>,
    /// Only cases with one of these tags.
    pub tags: Vec<String>,
    /// Extra gates (added to the suite's).
    pub gates: Gates,
    /// Gate: no target's pass rate may fall more than this below the baseline run's.
    pub max_regression: Option<f64>,
    /// Stop after this many consecutive provider failures (default: the suite's; 0 = never).
    pub stop_after_failures: Option<u32>,
    /// Who started the run through the API (an access key, the platform's principal): recorded
    /// on the audit row of every call the run makes, wherever its chunks are worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<crate::model::access::Caller>,
}

/// Sees each result as it finishes, with (done, total).
pub type Progress<'a> = &'a (dyn Fn(&CaseResult, usize, usize) + Sync);

/// Counts consecutive provider failures (unreachable, timeouts, 5xx, 429) across a run's
/// results and trips at the suite's limit, so an outage does not burn the rest of the run.
#[derive(Debug)]
pub struct Breaker {
    limit: u32,
    streak: AtomicU32,
    tripped: AtomicBool,
}

impl Breaker {
    /// A breaker that trips after `limit` consecutive failures (0 = never), starting from
    /// `streak` failures already seen (by other workers of the same run).
    pub fn new(limit: u32, streak: u32) -> Self {
        let b = Self {
            limit,
            streak: AtomicU32::new(streak),
            tripped: AtomicBool::new(false),
        };
        if limit > 0 && streak >= limit {
            b.tripped.store(true, Ordering::SeqCst);
        }
        b
    }

    /// The result failed because the provider looks down: the classification the connections'
    /// circuit breakers use ([`crate::breaker::is_outage`]), so both agree on it.
    pub fn is_outage(r: &CaseResult) -> bool {
        r.error_code
            .as_deref()
            .and_then(Code::parse)
            .is_some_and(crate::breaker::is_outage)
    }

    /// Counts one result; true when this result tripped the breaker.
    pub fn see(&self, r: &CaseResult) -> bool {
        if !Self::is_outage(r) {
            self.streak.store(0, Ordering::SeqCst);
            return false;
        }
        let n = self.streak.fetch_add(1, Ordering::SeqCst) + 1;
        self.limit > 0 && n >= self.limit && !self.tripped.swap(true, Ordering::SeqCst)
    }

    /// Tripped: call nothing more.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Consecutive failures seen last.
    pub fn streak(&self) -> u32 {
        self.streak.load(Ordering::SeqCst)
    }

    /// The words a stopped run records.
    pub fn reason(&self) -> String {
        format!(
            "stopped after {} consecutive provider failures (stop_after_failures = {})",
            self.streak(),
            self.limit
        )
    }
}

/// Runs the suite in memory (nothing stored but the calls' audit rows).
pub async fn run<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    progress: Progress<'_>,
) -> Report {
    let run_key = new_trace_id()[..16].to_owned();
    let started = Instant::now();
    let (resolved, _) = prepare(runner, suite, opts).await;
    let breaker = Breaker::new(stop_after(suite, opts), 0);
    let jobs = Jobs {
        run_key: &run_key,
        done: Vec::new(),
        skip: BTreeSet::new(),
        range: None,
        resolved: &resolved,
        breaker: &breaker,
    };
    let results = execute(runner, suite, opts, jobs, progress, |r| async { r }).await;
    let stopped = breaker.tripped().then(|| breaker.reason());
    finish(suite, opts, run_key, started, results, None, stopped)
}

/// The suite's early-stop limit, unless the options override it.
pub fn stop_after(suite: &Suite, opts: &Options) -> u32 {
    opts.stop_after_failures
        .unwrap_or(suite.stop_after_failures)
}
