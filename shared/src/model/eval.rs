//! The data of an evaluation run: each assertion's outcome, each (target, case, repetition)
//! result, the per-target summary, the gate, and the run as stored.
//!
//! Invariants: plain values that serialize with stable field names (the JSON report, the stored
//! rows and `eval show` are this data); the evaluation core (`eval`) computes them, the
//! store persists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether an assertion held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It held.
    Pass,
    /// It did not.
    Fail,
    /// It could not be checked (e.g. `cost` before calls carry a cost): counts neither way.
    NotEvaluated,
}

/// One assertion's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graded {
    /// The type as written (`not-contains`, ...).
    #[serde(rename = "type")]
    pub label: String,
    /// Held or not.
    pub verdict: Verdict,
    /// 0..=1.
    pub score: f64,
    /// Why, in words.
    pub reason: String,
    /// Its weight.
    pub weight: f64,
    /// Its metric name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// For `llm-rubric`: the judge call's audit row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<i64>,
}

/// One (target, case, repetition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// `project/route_key` or the config key.
    pub target: String,
    /// The case.
    pub case_key: String,
    /// 0-based repetition.
    pub repeat: u32,
    /// Passed its assertions.
    pub pass: bool,
    /// 0..=1.
    pub score: f64,
    /// The answer's text.
    pub output: Option<String>,
    /// The answer parsed as JSON, when the request asked for JSON.
    pub parsed: Option<Value>,
    /// Every assertion's outcome.
    pub assertions: Vec<Graded>,
    /// Whole call, milliseconds.
    pub latency_ms: u64,
    /// The call's failure code, if it failed.
    pub error_code: Option<String>,
    /// Its message.
    pub error_message: Option<String>,
    /// The call's trace id.
    pub trace_id: String,
    /// The audit rows of the call (one per route member tried).
    pub audit_ids: Vec<i64>,
}

/// A target's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// The target.
    pub target: String,
    /// Results (cases x repetitions).
    pub results: usize,
    /// Passed.
    pub passed: usize,
    /// Failed their assertions.
    pub failed: usize,
    /// The call itself failed.
    pub errors: usize,
    /// passed / results.
    pub pass_rate: f64,
    /// Mean case score.
    pub mean_score: f64,
    /// Mean score per named metric.
    pub metrics: BTreeMap<String, f64>,
    /// Latency percentiles, milliseconds.
    pub latency_p50_ms: u64,
    /// 95th percentile.
    pub latency_p95_ms: u64,
    /// Cases that passed some repetitions and failed others.
    pub flaky: Vec<String>,
}

/// Whether the run's gates held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    /// All held.
    pub passed: bool,
    /// Each gate that did not, in words.
    pub failures: Vec<String>,
}

/// A finished evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run's id (on every call's audit row as `request_id` = `eval:<id>`).
    pub run_id: String,
    /// The suite.
    pub suite: String,
    /// Whole run, milliseconds.
    pub total_ms: u64,
    /// Per target.
    pub targets: Vec<TargetSummary>,
    /// The gates.
    pub gate: GateOutcome,
    /// Every result, in (target, case, repetition) order.
    pub results: Vec<CaseResult>,
    /// Why the run stopped before every case was called (consecutive provider failures), if it
    /// did: the missing results were never called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

super::vocab! {
    /// Where a stored evaluation run is (`ai_eval_run.status`).
    pub enum EvalStatus {
        /// Being run (or interrupted: a resume goes on).
        Running = "running",
        /// The early-stop breaker tripped; the finalizer writes it as `stopped`.
        Stopping = "stopping",
        /// One instance holds the claim to write its summary.
        Finalizing = "finalizing",
        /// Every planned result ran and the summary is written.
        Finished = "finished",
        /// Stopped early (see `stop_reason`): the missing results were never called.
        Stopped = "stopped",
        /// Could not be started (its chunks could not be queued).
        Failed = "failed",
    }
}

impl EvalStatus {
    /// True once nothing more happens to the run (`finished`, `stopped`, `failed`).
    pub fn is_final(self) -> bool {
        match self {
            Self::Finished | Self::Stopped | Self::Failed => true,
            Self::Running | Self::Stopping | Self::Finalizing => false,
        }
    }
}

/// An evaluation run as stored (`ai_eval_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    /// The run's id (`request_id` = `eval:<id>` on its calls' audit rows).
    pub run_key: String,
    /// The suite.
    pub suite: String,
    /// `running` (or interrupted), `stopping`, `finalizing`, `finished`, `stopped` (early, see
    /// `stop_reason`) or `failed` (could not be started).
    pub status: EvalStatus,
    /// `cli`, `schedule`, `api`.
    pub trigger: super::Trigger,
    /// The suite and its dataset as read (what a resume runs again).
    pub suite_json: Value,
    /// The command line's narrowing and gates.
    pub options_json: Value,
    /// SHA-256 of the targets' resolved configuration (model, URL, prompt, params, policy,
    /// members): two runs with the same hash measured the same thing.
    pub config_hash: Option<String>,
    /// Planned results.
    pub total: i64,
    /// The run compared against, if any.
    pub baseline: Option<String>,
    /// Per-target summaries, once finished.
    pub summary: Option<Vec<TargetSummary>>,
    /// The gate, once finished.
    pub gate: Option<GateOutcome>,
    /// Where the reports went.
    pub report_location: Option<String>,
    /// Started (epoch ms).
    pub created_ms: i64,
    /// Finished (epoch ms).
    pub finished_ms: Option<i64>,
    /// Why it stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Consecutive provider failures, as the run's workers last saw them (fan-out).
    #[serde(default)]
    pub failure_streak: i64,
}

impl EvalRun {
    /// The same run, created now.
    pub fn stamped(self) -> Self {
        Self {
            created_ms: super::now_ms(),
            ..self
        }
    }
}

/// One case of the evaluation catalog as it is stored (`ai_eval_case`): typed columns that read
/// back into the document a file would hold ([`StoredCase::document`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCase {
    /// Unique within its dataset.
    pub key: String,
    /// Runtime variables (a mapping), when it has any.
    pub vars: Option<Value>,
    /// The expected value.
    pub expected: Option<Value>,
    /// The object of a media case, as (bucket, key).
    pub media: Option<(String, String)>,
    /// Tags.
    pub tags: Vec<String>,
    /// The case's own assertions as written.
    pub assert: Option<Value>,
    /// The case's threshold.
    pub threshold: Option<f64>,
    /// Left out of runs when false.
    pub active: bool,
    /// The case's own prompt (a promptfoo test's rendered prompt).
    pub prompt: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// A mapping of free metadata (promptfoo's test `metadata`).
    pub metadata: Option<Value>,
}

impl StoredCase {
    /// The case as a document holds it (only what is set).
    pub fn document(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("key".into(), Value::String(self.key.clone()));
        if let Some(v) = &self.vars {
            m.insert("vars".into(), v.clone());
        }
        if let Some(e) = &self.expected {
            m.insert("expected".into(), e.clone());
        }
        if let Some((bucket, key)) = &self.media {
            m.insert(
                "media".into(),
                serde_json::json!({"bucket": bucket, "key": key}),
            );
        }
        if !self.tags.is_empty() {
            m.insert("tags".into(), Value::from(self.tags.clone()));
        }
        if let Some(a) = &self.assert {
            m.insert("assert".into(), a.clone());
        }
        if let Some(t) = self.threshold {
            m.insert("threshold".into(), Value::from(t));
        }
        if !self.active {
            m.insert("active".into(), Value::Bool(false));
        }
        if let Some(p) = &self.prompt {
            m.insert("prompt".into(), Value::String(p.clone()));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(meta) = &self.metadata {
            m.insert("metadata".into(), meta.clone());
        }
        Value::Object(m)
    }
}

/// A dataset of the evaluation catalog as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDataset {
    /// Unique name.
    pub name: String,
    /// Free text (`None` keeps a stored one).
    pub description: Option<String>,
    /// Its cases.
    pub cases: Vec<StoredCase>,
}

/// A suite of the evaluation catalog as stored: its name, dataset and the definition as written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSuite {
    /// Unique name.
    pub name: String,
    /// The dataset it runs.
    pub dataset: String,
    /// The suite mapping as written (targets, assertions, gates, ...).
    pub definition: serde_json::Map<String, Value>,
}

/// What `cfg gen` writes to the evaluation catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalCatalog {
    /// Datasets with their cases.
    pub datasets: Vec<StoredDataset>,
    /// Suites.
    pub suites: Vec<StoredSuite>,
}
