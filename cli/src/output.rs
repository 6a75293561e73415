//! Everything the CLI prints: results, plans, findings, files. Machine output (`--json`) goes to
//! stdout as pretty JSON; progress and notes go to stderr.
//!
//! Invariants: nothing printed holds a secret (results and rows are already scrubbed by the
//! library; keys are never part of them). Every line on stdout goes through [`stdout`] (the
//! [`out!`] and [`outln!`] macros; `print!` is denied in the crate): a reader that stops reading
//! (`ai-runner ... | head`) never makes a command panic, as `println!` would on a closed pipe.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ai_runner::catalog::{Action, Finding, PlanItem, Severity};
use ai_runner::run::RouteResult;
use ai_runner::store::schema_dump::TableDump;
use ai_runner::{Code, RunResult};
use serde_json::Value;

use crate::failure::Failure;

/// Set once stdout refused a write: nothing more is written there.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout. A reader that went away (a closed pipe: `| head -c 10`) is not a failure:
/// the rest of the output is dropped and the command ends as it would have, quietly, as Unix
/// tools do. Any other write error is said once on stderr.
pub fn stdout(text: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(text) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = writeln!(std::io::stderr(), "cannot write to stdout: {e}");
        }
    }
}

/// `print!` through [`stdout`]: survives a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` through [`stdout`]: survives a closed pipe.
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// Prints a value as pretty JSON on stdout.
pub fn pretty<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Writes `text` to `out`, creating its directory, or to stdout when `out` is `-` or absent.
pub fn write_out(out: Option<&Path>, text: &str) -> Result<(), Failure> {
    match out.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Failure::usage(
                        Code::IoError,
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            std::fs::write(path, text).map_err(|e| {
                Failure::usage(
                    Code::IoError,
                    format!("cannot write {}: {e}", path.display()),
                )
            })
        }
        None => {
            out!("{text}");
            Ok(())
        }
    }
}

/// A run's content (or the whole result with `json`), then its outcome.
pub fn result(result: &RunResult, json: bool) -> Result<(), Failure> {
    if json {
        pretty(result);
    } else if let Some(content) = &result.content.as_ref().filter(|_| result.is_ok()) {
        outln!("{content}");
    }
    outcome(result)
}

/// A route's member attempts on stderr, then its result as [`result`].
pub fn route(result: &RouteResult, json: bool) -> Result<(), Failure> {
    if json {
        pretty(result);
        return outcome(&result.result);
    }
    for a in &result.member_attempts {
        let what = match &a.error {
            None => "answered".to_owned(),
            Some(e) if a.handed_over => format!("failed with {}, handed over", e.code),
            Some(e) => format!("failed with {}", e.code),
        };
        eprintln!(
            "member {} {}: {} (audit row {})",
            a.attempt,
            a.config_key,
            what,
            a.audit_id.map_or("-".into(), |i| i.to_string())
        );
    }
    self::result(&result.result, false)
}

/// A run's failure as the command's failure.
pub fn outcome(result: &RunResult) -> Result<(), Failure> {
    match &result.failure {
        None => Ok(()),
        Some(e) => Err(Failure::new(
            e.code(),
            format!("{e} (trace_id {})", result.trace_id),
        )),
    }
}

/// One line per planned change.
pub fn plan(items: &[PlanItem]) {
    for i in items {
        let action = match i.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
        };
        let changes = if i.changes.is_empty() {
            String::new()
        } else {
            format!(" ({})", i.changes.join(", "))
        };
        outln!("{action:9} {} {}{changes}", i.kind, i.name);
    }
}

/// Catalog findings, one per line (or as JSON).
pub fn findings(findings: &[Finding], json: bool) {
    if json {
        pretty(&findings);
        return;
    }
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        outln!("{sev}: {}: {} {}", f.path, f.code, f.message);
    }
}

/// Findings on stderr, one per line, where stdout carries a JSON document (`--json`).
pub fn findings_on_stderr(findings: &[Finding]) {
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!("{sev}: {}: {} {}", f.path, f.code, f.message);
    }
}

/// Renders a dump as Markdown (DDL plus a column table per table).
pub fn schema_markdown(tables: &[TableDump], title: &str) -> String {
    let mut md = format!(
        "# {title}\n\n{} table(s). Generated read-only by `ai-runner cfg dump-schema`.\n",
        tables.len()
    );
    for t in tables {
        md.push_str(&format!(
            "\n## {}\n\n```sql\n{}\n```\n",
            t.name, t.create_sql
        ));
        if let Some(first) = t.columns.first() {
            let keys: Vec<&String> = first.keys().collect();
            md.push_str(&format!(
                "\n| {} |\n|{}|\n",
                keys.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" | "),
                vec!["---"; keys.len()].join("|")
            ));
            for c in &t.columns {
                let cells: Vec<String> = keys
                    .iter()
                    .map(|k| match c.get(*k) {
                        Some(Value::String(s)) => s.replace('|', "\\|"),
                        Some(Value::Null) | None => String::new(),
                        Some(v) => v.to_string(),
                    })
                    .collect();
                md.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
    }
    md
}
