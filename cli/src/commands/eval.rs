//! `eval run`: a suite from a YAML file, run through its targets with the configured database and
//! providers, graded, reported (stdout table, `--out` JSON / JUnit / HTML) and gated.
//!
//! Exit codes: 0 the run passed its gates, 1 a gate failed, 2 bad input or setup (the suite does
//! not read, a target does not resolve, a case leaves a placeholder open: nothing is called).

use std::io::IsTerminal;
use std::path::Path;

use ai_runner::Code;
use ai_runner::catalog::{self, Severity};
use ai_runner::eval::report;
use ai_runner::eval::run::{self, CaseResult, Options, Report};
use ai_runner::eval::suite::{Target, read_suite};

use crate::args::{EvalArgs, EvalCommand};
use crate::context::Cx;
use crate::failure::Failure;
use crate::output;

impl EvalArgs {
    /// Runs the evaluation command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        match self.command {
            EvalCommand::Run {
                suite,
                file,
                targets,
                concurrency,
                repeat,
                limit,
                tags,
                outs,
                min_pass_rate,
                cutoffs,
                dry_run,
                json,
            } => {
                let mut opts = Options {
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
                opts.gates.min_pass_rate = match min_pass_rate {
                    Some(r) if !(0.0..=1.0).contains(&r) => {
                        return Err(Failure::usage(
                            Code::InvalidInput,
                            "--min-pass-rate is a fraction from 0 to 1",
                        ));
                    }
                    other => other,
                };
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
                run_suite(cx, &suite, &file, &opts, &outs, dry_run, json).await
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Junit,
    Html,
}

fn format_of(p: &Path) -> Result<Format, Failure> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("json") => Ok(Format::Json),
        Some("xml") => Ok(Format::Junit),
        Some("html" | "htm") => Ok(Format::Html),
        _ => Err(Failure::usage(
            Code::InvalidInput,
            format!(
                "--out {}: the extension picks the format: .json, .xml (JUnit) or .html",
                p.display()
            ),
        )),
    }
}

async fn run_suite(
    cx: &Cx,
    name: &str,
    file: &Path,
    opts: &Options,
    outs: &[std::path::PathBuf],
    dry_run: bool,
    json: bool,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::usage(
            Code::IoError,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let doc = catalog::parse_yaml(&text)
        .map_err(|f| Failure::usage(f.code, format!("{}: {}", f.path, f.message)))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let (suite, findings) = read_suite(&doc, name, dir);
    output::findings(&findings, false);
    let Some(suite) = suite else {
        return Err(invalid(&findings));
    };
    let app = cx.app()?;
    let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
    let problems = run::preflight(&app.runner, &suite, opts).await;
    output::findings(&problems, false);
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
        println!(
            "suite {}: {} call(s): {cases} case(s) x {targets} target(s) x {repeat} repetition(s); nothing called",
            suite.name,
            planned.len(),
        );
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    let progress = move |r: &CaseResult, done: usize, total: usize| {
        let word = match (&r.error_code, r.pass) {
            (Some(code), _) => code.clone(),
            (None, true) => "pass".into(),
            (None, false) => "FAIL".into(),
        };
        if tty {
            eprint!(
                "\r[{done}/{total}] {:>3.0}% {} {}#{} {word}\x1b[K",
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
    };
    let report = run::run(&app.runner, &suite, opts, &progress).await;
    for o in outs {
        let body = match format_of(o)? {
            Format::Json => report::json(&report),
            Format::Junit => report::junit(&report),
            Format::Html => report::html(&report),
        };
        output::write_out(Some(o), &body)?;
        eprintln!("wrote {}", o.display());
    }
    if json {
        output::pretty(&report);
    } else {
        summary(&report);
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

fn summary(r: &Report) {
    println!(
        "suite {} · run {} · {} result(s) in {} ms",
        r.suite,
        r.run_id,
        r.results.len(),
        r.total_ms
    );
    println!(
        "{:<32} {:>7} {:>6} {:>6} {:>6} {:>9} {:>10} {:>7} {:>7}",
        "target", "results", "pass", "fail", "error", "pass rate", "mean score", "p50 ms", "p95 ms"
    );
    for t in &r.targets {
        println!(
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
            println!("    metric {m}: {v:.3}");
        }
        if !t.flaky.is_empty() {
            println!("    flaky: {}", t.flaky.join(", "));
        }
    }
    println!(
        "gate: {}",
        if r.gate.passed {
            "passed".to_owned()
        } else {
            format!("FAILED ({})", r.gate.failures.join("; "))
        }
    );
}
