//! Evaluations: a dataset of cases run through routes and configs, each answer checked by
//! assertions, scored, summarised per target and gated; reported as JSON, JUnit XML and HTML.
//!
//! Map: [`assert`] (the assertion vocabulary and scoring: pure), [`suite`] (datasets and suites
//! read from YAML, JSONL and CSV, every problem with its path), [`run`] (running a suite through a
//! [`crate::run::Runner`]: every call an ordinary audited call with trigger `eval`), [`report`]
//! (the three report formats), [`fanout`] (runs that outgrow one invocation: chunks through a
//! queue, finalized exactly once), [`compare`] (two runs side by side), [`harvest`] (datasets
//! built from audit rows and stored objects), [`promptfoo`] (promptfoo configs translated into
//! a dataset and a suite).
//!
//! Invariants: the core only (no SQL, no platform): the runner's ports do the I/O; a suite that
//! reads without errors runs; a report is computed from the results alone.

pub mod assert;
pub mod compare;
pub mod fanout;
pub mod harvest;
pub mod promptfoo;
pub mod report;
pub mod run;
pub mod suite;
