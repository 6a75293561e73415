//! `eval run / resume / list / show / compare / import`: a suite from a YAML file (or a promptfoo
//! config, translated by `ai_runner::eval::promptfoo`), run through its targets
//! with the configured database and providers, graded, stored as it goes (runs and results in
//! the database, so an interrupted run resumes), reported (stdout table, `--out` JSON / JUnit /
//! HTML) and gated.
//!
//! Exit codes: 0 the run passed its gates, 1 a gate failed, 2 bad input or setup (the suite does
//! not read, a target does not resolve, a case leaves a placeholder open: nothing is called).

use std::io::IsTerminal;
use std::path::Path;
use std::path::PathBuf;

use ai_runner::Code;
use ai_runner::catalog::{self, Severity};
use ai_runner::eval::compare::compare;
use ai_runner::eval::promptfoo;
use ai_runner::eval::report;
use ai_runner::eval::run::{self, CaseResult, EvalError, Options, Report, Start};
use ai_runner::eval::suite::{Suite, Target, read_suite};
use ai_runner::ports::EvalStore;
use clap::{Args, Subcommand};

use crate::commands::dataset::DatasetCommand;

mod source;
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};
use source::{Source, import, mapping, promptfoo_name};

/// `eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The evaluation command.
    #[command(subcommand)]
    pub command: EvalCommand,
}

/// `eval ...`.
#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run a suite: every case through every target, graded; exit 0 passed, 1 a gate failed,
    /// 2 bad input or setup. A promptfoo config runs as written: `eval run promptfooconfig.yaml`
    /// (or `-c FILE`, promptfoo's flag).
    Run {
        /// The suite's name, or a promptfoo config file (.yaml, .yml, .json).
        suite: Option<String>,
        /// The YAML file holding `datasets:` and `suites:` (or an `evals:` section), or a promptfoo
        /// config. Without it a named suite comes from the database's evaluation catalog (applied
        /// by `cfg gen` or `eval import`), else from ./evals.yaml; with no name either,
        /// ./promptfooconfig.yaml runs.
        #[arg(short = 'f', long, visible_short_alias = 'c', visible_alias = "config")]
        file: Option<PathBuf>,
        /// A promptfoo config's provider (id or label), or `grader`, run as an ai-runner target:
        /// `ID=config:KEY`, `ID=PROJECT/ROUTE` or `ID=echo` (repeatable).
        #[arg(long = "provider", value_name = "ID=TARGET")]
        providers: Vec<String>,
        /// A promptfoo config's assertions ai-runner cannot honour (javascript, python,
        /// similar, transforms, ...) are reported as not evaluated, never as passed, and the
        /// rest runs (without it they stop the run before any call).
        #[arg(long)]
        skip_unsupported: bool,
        /// Run only this target: `project/route_key` or `config:KEY` (repeatable).
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
        /// Calls in flight at once (default: the suite's, else 4).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Repetitions of every case (flaky cases pass some and fail others).
        #[arg(long)]
        repeat: Option<u32>,
        /// At most this many cases.
        #[arg(long)]
        limit: Option<usize>,
        /// Only cases with this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Write a report; the name picks the format: .json, .xml (JUnit), .html, or
        /// .promptfoo.json (promptfoo's eval JSON, which `promptfoo import` reads) (repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Gate: every target needs at least this pass rate (0..1).
        #[arg(long)]
        min_pass_rate: Option<f64>,
        /// Gate: every target needs this metric's mean score at least, METRIC=VALUE (repeatable).
        #[arg(long = "cutoff", value_name = "METRIC=VALUE")]
        cutoffs: Vec<String>,
        /// Compare with this earlier run (`last`: the suite's latest finished run).
        #[arg(long)]
        baseline: Option<String>,
        /// Gate: no target's pass rate may fall more than this (0..1) below the baseline's.
        #[arg(long, requires = "baseline")]
        max_regression: Option<f64>,
        /// Stop after this many consecutive provider failures (0 = never; default: the suite's,
        /// else 20).
        #[arg(long)]
        stop_after_failures: Option<u32>,
        /// Check the suite and its targets and print the plan; call nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a promptfoo config into the database's evaluation catalog as one dataset and one
    /// suite (so `eval run SUITE`, schedules and the fan-out run it; `cfg export` writes it
    /// back); `--dry-run` shows the plan.
    Import {
        /// The promptfoo config (promptfooconfig.yaml).
        file: PathBuf,
        /// The dataset's name (default: the suite's).
        #[arg(long)]
        dataset: Option<String>,
        /// The suite's name (default: the file's stem, or its directory's for promptfooconfig.*).
        #[arg(long)]
        suite: Option<String>,
        /// A provider (id or label), or `grader`, as an ai-runner target: `ID=config:KEY`,
        /// `ID=PROJECT/ROUTE` or `ID=echo` (repeatable).
        #[arg(long = "provider", value_name = "ID=TARGET")]
        providers: Vec<String>,
        /// Keep assertions ai-runner cannot honour as not evaluated (see `eval run`).
        #[arg(long)]
        skip_unsupported: bool,
        /// Show what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Datasets in the database's evaluation catalog: list them, or add cases from the audit
    /// trail or from stored audio.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Go on with an interrupted run: only cases without a stored result are called.
    Resume {
        /// The run id (see `eval list`).
        run: String,
        /// Write a report (.json, .xml, .html; repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Recent runs, newest first.
    List {
        /// Only this suite's runs.
        #[arg(long)]
        suite: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run's summary (and reports rebuilt from its stored results).
    Show {
        /// The run id.
        run: String,
        /// Write a report (.json, .xml, .html; repeatable).
        #[arg(long = "out", value_name = "FILE")]
        outs: Vec<PathBuf>,
        /// Print the whole report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run B against run A: per target side by side, per case what newly fails or passes.
    Compare {
        /// Run A (before).
        a: String,
        /// Run B (after).
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl EvalArgs {
    /// Runs the evaluation command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        match self.command {
            EvalCommand::Run {
                suite,
                file,
                providers,
                skip_unsupported,
                targets,
                concurrency,
                repeat,
                limit,
                tags,
                outs,
                min_pass_rate,
                cutoffs,
                baseline,
                max_regression,
                stop_after_failures,
                dry_run,
                json,
            } => {
                let mut opts = Options {
                    max_regression: fraction("--max-regression", max_regression)?,
                    stop_after_failures,
                    concurrency,
                    repeat,
                    limit,
                    tags,
                    ..Options::default()
                };
                for t in &targets {
                    opts.targets.push(Target::parse(t).ok_or_else(|| {
                        Failure::usage(
                            Code::InvalidInput,
                            format!("--target {t:?} is not project/route_key or config:KEY"),
                        )
                    })?);
                }
                opts.gates.min_pass_rate = fraction("--min-pass-rate", min_pass_rate)?;
                for c in &cutoffs {
                    let parsed = c
                        .split_once('=')
                        .and_then(|(m, v)| Some((m.to_owned(), v.parse::<f64>().ok()?)))
                        .filter(|(m, v)| !m.is_empty() && (0.0..=1.0).contains(v));
                    opts.gates.cutoffs.push(parsed.ok_or_else(|| {
                        Failure::usage(
                            Code::InvalidInput,
                            format!("--cutoff {c:?} is not METRIC=VALUE with a value from 0 to 1"),
                        )
                    })?);
                }
                for o in &outs {
                    format_of(o)?;
                }
                let how = Start {
                    trigger: ai_runner::Trigger::Cli,
                    baseline,
                };
                let source = Source::of(suite, file, mapping(&providers)?, skip_unsupported)?;
                run_suite(cx, &source, &opts, &how, &outs, dry_run, json).await
            }
            EvalCommand::Import {
                file,
                dataset,
                suite,
                providers,
                skip_unsupported,
                dry_run,
            } => {
                let map = mapping(&providers)?;
                import(cx, &file, dataset, suite, &map, skip_unsupported, dry_run).await
            }
            EvalCommand::Dataset { command } => command.run(cx).await,
            EvalCommand::Resume { run, outs, json } => {
                for o in &outs {
                    format_of(o)?;
                }
                let app = cx.app()?;
                let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
                let report = run::resume(&app.runner, &run, &progress_printer())
                    .await
                    .map_err(eval_failure)?;
                let suite = suite_of_run(cx, &run).await?;
                conclude(&report, &outs, json, suite.as_ref())
            }
            EvalCommand::List { suite, limit, json } => {
                let runs = cx.db()?.eval_runs(suite.as_deref(), limit).await?;
                if json {
                    output::pretty(&runs);
                    return Ok(());
                }
                for r in &runs {
                    let rate = r
                        .summary
                        .as_ref()
                        .map(|s| {
                            s.iter()
                                .map(|t| format!("{} {:.3}", t.target, t.pass_rate))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    outln!(
                        "{} {} {:9} gate={} {} [{}]",
                        r.run_key,
                        r.suite,
                        r.status,
                        match &r.gate {
                            Some(g) if g.passed => "passed",
                            Some(_) => "FAILED",
                            None => "-",
                        },
                        rate,
                        r.config_hash
                            .as_deref()
                            .map_or("", |h| &h[..12.min(h.len())])
                    );
                }
                Ok(())
            }
            EvalCommand::Show { run, outs, json } => {
                for o in &outs {
                    format_of(o)?;
                }
                let report = stored_report(cx, &run).await?;
                let suite = suite_of_run(cx, &run).await?;
                write_reports(&report, &outs, suite.as_ref())?;
                if json {
                    output::pretty(&report);
                } else {
                    summary(&report);
                }
                Ok(())
            }
            EvalCommand::Compare { a, b, json } => {
                let (ra, rb) = (stored_report(cx, &a).await?, stored_report(cx, &b).await?);
                let c = compare(&ra.results, &rb.results);
                if json {
                    output::pretty(&c);
                    return Ok(());
                }
                outln!("{a} -> {b}");
                let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
                for t in &c.targets {
                    outln!(
                        "{:<32} pass rate {} -> {}  mean score {} -> {}  p50 {} -> {} ms",
                        t.target,
                        num(t.pass_rate.0),
                        num(t.pass_rate.1),
                        num(t.mean_score.0),
                        num(t.mean_score.1),
                        t.latency_p50_ms.0.map_or("-".into(), |v| v.to_string()),
                        t.latency_p50_ms.1.map_or("-".into(), |v| v.to_string()),
                    );
                }
                for (title, list) in [
                    ("newly failing", &c.newly_failing),
                    ("newly passing", &c.newly_passing),
                    ("score changed", &c.score_changes),
                ] {
                    for d in list {
                        outln!(
                            "{title}: {} {} ({:+.3})",
                            d.target,
                            d.case_key,
                            d.score_delta
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

fn fraction(flag: &str, v: Option<f64>) -> Result<Option<f64>, Failure> {
    match v {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(Failure::usage(
            Code::InvalidInput,
            format!("{flag} is a fraction from 0 to 1"),
        )),
        other => Ok(other),
    }
}

fn eval_failure(e: EvalError) -> Failure {
    Failure::usage(e.code(), e.to_string())
}

/// A stored run as a report (its results, summarised again).
async fn stored_report(cx: &Cx, run_key: &str) -> Result<Report, Failure> {
    let db = cx.db()?;
    let run = db.eval_run(run_key).await?.ok_or_else(|| {
        Failure::usage(
            Code::UnknownReference,
            format!("no evaluation run {run_key:?} (see `ai-runner eval list`)"),
        )
    })?;
    let mut results = db.eval_results(run_key).await?;
    Ok(report::stored(run, &mut results))
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Junit,
    Html,
    /// promptfoo's eval JSON (`*.promptfoo.json`).
    Promptfoo,
}

fn format_of(p: &Path) -> Result<Format, Failure> {
    if p.to_string_lossy().ends_with(".promptfoo.json") {
        return Ok(Format::Promptfoo);
    }
    match p.extension().and_then(|e| e.to_str()) {
        Some("json") => Ok(Format::Json),
        Some("xml") => Ok(Format::Junit),
        Some("html" | "htm") => Ok(Format::Html),
        _ => Err(Failure::usage(
            Code::InvalidInput,
            format!(
                "--out {}: the extension picks the format: .json, .xml (JUnit), .html or .promptfoo.json (promptfoo's eval JSON)",
                p.display()
            ),
        )),
    }
}

async fn run_suite(
    cx: &Cx,
    source: &Source,
    opts: &Options,
    how: &Start,
    outs: &[std::path::PathBuf],
    dry_run: bool,
    json: bool,
) -> Result<(), Failure> {
    let file = source.file.as_deref();
    let (mut doc, dir) = match (file, source.name.as_deref()) {
        (Some(f), _) => (super::read_yaml(f)?, f.parent().unwrap_or(Path::new("."))),
        (None, Some(name)) => match cx.db()?.suite_document(name).await? {
            Some(doc) => (doc, Path::new(".")),
            None if Path::new("evals.yaml").is_file() => {
                (super::read_yaml(Path::new("evals.yaml"))?, Path::new("."))
            }
            None => {
                return Err(Failure::usage(
                    Code::SuiteInvalid,
                    format!(
                        "no suite named {name:?} in the database's evaluation catalog, and no ./evals.yaml (give the file with -f)"
                    ),
                ));
            }
        },
        (None, None) => {
            return Err(Failure::usage(Code::InvalidInput, "give the suite's name"));
        }
    };
    let name = match (file, source.name.clone()) {
        (Some(f), name) if promptfoo::is_promptfoo(&doc) => {
            let name = name.unwrap_or_else(|| promptfoo_name(f));
            let (translated, findings) =
                promptfoo::translate(&doc, dir, &name, &source.providers, source.skip_unsupported);
            show(&findings, json);
            doc = translated.ok_or_else(|| invalid(&findings))?;
            name
        }
        (_, Some(_)) if !source.providers.is_empty() => {
            return Err(Failure::usage(
                Code::InvalidInput,
                "--provider maps a promptfoo config's providers; this suite is not one",
            ));
        }
        (_, Some(name)) => name,
        (Some(f), None) => {
            return Err(Failure::usage(
                Code::InvalidInput,
                format!(
                    "{} is not a promptfoo config: give the suite's name (eval run NAME -f FILE)",
                    f.display()
                ),
            ));
        }
        (None, None) => return Err(Failure::usage(Code::InvalidInput, "give the suite's name")),
    };
    let name = name.as_str();
    let (suite, findings) = read_suite(&doc, name, dir);
    show(&findings, json);
    let Some(suite) = suite else {
        return Err(invalid(&findings));
    };
    let app = cx.app()?;
    let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
    let problems = run::preflight(&app.runner, &suite, opts).await;
    show(&problems, json);
    if !problems.is_empty() {
        return Err(invalid(&problems));
    }
    let planned = run::plan(&suite, opts);
    if dry_run {
        let targets = if opts.targets.is_empty() {
            suite.targets.len()
        } else {
            opts.targets.len()
        };
        let repeat = opts.repeat.unwrap_or(suite.repeat).max(1);
        let cases = planned.len() / (targets * repeat as usize).max(1);
        outln!(
            "suite {}: {} call(s): {cases} case(s) x {targets} target(s) x {repeat} repetition(s); nothing called",
            suite.name,
            planned.len(),
        );
        return Ok(());
    }
    let report = run::start(&app.runner, &suite, opts, how, &progress_printer())
        .await
        .map_err(eval_failure)?;
    conclude(&report, outs, json, Some(&suite))
}

/// Progress on stderr: a bar that redraws itself on a terminal, one line per result otherwise.
fn progress_printer() -> impl Fn(&CaseResult, usize, usize) + Sync {
    let tty = std::io::stderr().is_terminal();
    move |r: &CaseResult, done: usize, total: usize| {
        let word = match (&r.error_code, r.pass) {
            (Some(code), _) => code.clone(),
            (None, true) => "pass".into(),
            (None, false) => "FAIL".into(),
        };
        if tty {
            const WIDTH: usize = 24;
            let filled = done * WIDTH / total.max(1);
            eprint!(
                "\r[{}{}] {done}/{total} {:>3.0}% {} {}#{} {word}\x1b[K",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                done as f64 * 100.0 / total.max(1) as f64,
                r.target,
                r.case_key,
                r.repeat
            );
            if done == total {
                eprintln!();
            }
        } else {
            eprintln!(
                "[{done}/{total}] {} {}#{} {word} score={:.3} {}ms",
                r.target, r.case_key, r.repeat, r.score, r.latency_ms
            );
        }
    }
}

/// Writes each `--out` file; promptfoo's format needs the suite the run ran (its prompts and
/// vars), which a stored run keeps.
fn write_reports(
    report: &Report,
    outs: &[std::path::PathBuf],
    suite: Option<&Suite>,
) -> Result<(), Failure> {
    for o in outs {
        let body = match (format_of(o)?, suite) {
            (Format::Json, _) => report::json(report),
            (Format::Junit, _) => report::junit(report),
            (Format::Html, _) => report::html(report),
            (Format::Promptfoo, Some(suite)) => {
                let doc = promptfoo::results_json(report, suite, ai_runner::model::now_ms());
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            }
            (Format::Promptfoo, None) => {
                return Err(Failure::usage(
                    Code::SuiteInvalid,
                    format!(
                        "--out {}: the run's suite no longer reads, so its prompts and vars are unknown",
                        o.display()
                    ),
                ));
            }
        };
        output::write_out(Some(o), &body)?;
        eprintln!("wrote {}", o.display());
    }
    Ok(())
}

/// The suite a stored run ran, from its snapshot.
async fn suite_of_run(cx: &Cx, run_key: &str) -> Result<Option<Suite>, Failure> {
    let Some(run) = cx.db()?.eval_run(run_key).await? else {
        return Ok(None);
    };
    Ok(read_suite(&run.suite_json, &run.suite, Path::new(".")).0)
}

/// Reports, the summary, and the gate's verdict as the exit code.
fn conclude(
    report: &Report,
    outs: &[std::path::PathBuf],
    json: bool,
    suite: Option<&Suite>,
) -> Result<(), Failure> {
    write_reports(report, outs, suite)?;
    if json {
        output::pretty(report);
    } else {
        summary(report);
    }
    if report.gate.passed {
        Ok(())
    } else {
        Err(Failure::new(
            Code::EvalGateFailed,
            report.gate.failures.join("; "),
        ))
    }
}

/// Findings on stdout, or on stderr when stdout carries `--json`'s document.
fn show(findings: &[catalog::Finding], json: bool) {
    if json {
        output::findings_on_stderr(findings);
    } else {
        output::findings(findings, false);
    }
}

fn invalid(findings: &[catalog::Finding]) -> Failure {
    let n = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Failure::usage(
        Code::SuiteInvalid,
        format!("{n} problem(s); nothing was called"),
    )
}

/// The run's summary table on stdout.
pub(crate) fn summary(r: &Report) {
    outln!(
        "suite {} · run {} · {} result(s) in {} ms",
        r.suite,
        r.run_id,
        r.results.len(),
        r.total_ms
    );
    outln!(
        "{:<32} {:>7} {:>6} {:>6} {:>6} {:>9} {:>10} {:>7} {:>7}",
        "target",
        "results",
        "pass",
        "fail",
        "error",
        "pass rate",
        "mean score",
        "p50 ms",
        "p95 ms"
    );
    for t in &r.targets {
        outln!(
            "{:<32} {:>7} {:>6} {:>6} {:>6} {:>9.3} {:>10.3} {:>7} {:>7}",
            t.target,
            t.results,
            t.passed,
            t.failed,
            t.errors,
            t.pass_rate,
            t.mean_score,
            t.latency_p50_ms,
            t.latency_p95_ms
        );
        for (m, v) in &t.metrics {
            outln!("    metric {m}: {v:.3}");
        }
        if !t.flaky.is_empty() {
            outln!("    flaky: {}", t.flaky.join(", "));
        }
    }
    outln!(
        "gate: {}",
        if r.gate.passed {
            "passed".to_owned()
        } else {
            format!("FAILED ({})", r.gate.failures.join("; "))
        }
    );
}
