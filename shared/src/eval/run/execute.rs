//! The calls of a run: each planned job as an ordinary audited call (media cases through the
//! upload pipeline's variables; a case's own prompt as the conversation after the target's;
//! the `echo` target answering with that prompt and calling nothing), graded by its assertions
//! (rubric items by [`super::judge`]); runs at most `concurrency` at a time until the early-stop
//! breaker trips.
//!
//! Invariants: a failed call is an error result with its code, never a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures_util::StreamExt;
use serde_json::Value;

use super::lifecycle::BATCH_MAX;
use super::{
    Breaker, CaseResult, Options, Progress, Report, Resolved, TargetSummary, gate, plan, summarise,
};
use crate::code::Code;
use crate::eval::assert::{Answer, CaseFields, case_score};
use crate::eval::suite::{Case, Suite, Target};
use crate::ports::{Provider, Store};
use crate::run::{Overlay, RunContext, RunResult, Runner, Trigger, new_trace_id};

/// Which planned calls one execution makes.
pub(crate) struct Jobs<'a> {
    pub(crate) run_key: &'a str,
    /// Results already stored (not called again).
    pub(crate) done: Vec<CaseResult>,
    /// (target, case, repetition) stored already whose results are not needed here.
    pub(crate) skip: BTreeSet<(String, String, u32)>,
    /// Only these plan positions (a fan-out chunk); all when `None`.
    pub(crate) range: Option<std::ops::Range<usize>>,
    pub(crate) resolved: &'a Resolved,
    pub(crate) breaker: &'a Breaker,
}

/// Calls every planned job (in the range) that has no result in `done` yet, `record`ing each as
/// it finishes, until the breaker trips; returns the results of the jobs (in the range) in plan
/// order, those of `done` included.
pub(crate) async fn execute<S, P, R, F>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
    jobs: Jobs<'_>,
    progress: Progress<'_>,
    record: R,
) -> Vec<CaseResult>
where
    S: Store,
    P: Provider,
    R: Fn(CaseResult) -> F,
    F: std::future::Future<Output = CaseResult>,
{
    let planned: Vec<(&Target, &Case, u32)> = plan(suite, opts)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| jobs.range.as_ref().is_none_or(|r| r.contains(i)))
        .map(|(_, j)| j)
        .collect();
    let total = planned.len();
    let concurrency = opts.concurrency.unwrap_or(suite.concurrency).max(1);
    let ctx = RunContext {
        request_id: Some(format!("eval:{}", jobs.run_key)),
        caller: opts.caller.clone(),
        ..RunContext::new(Trigger::Eval)
    };
    let mut have: BTreeMap<(String, String, u32), CaseResult> = jobs
        .done
        .into_iter()
        .map(|r| ((r.target.clone(), r.case_key.clone(), r.repeat), r))
        .collect();
    let todo: Vec<usize> = (0..planned.len())
        .filter(|i| {
            let (t, c, r) = planned[*i];
            let k = (t.label(), c.key.clone(), r);
            !have.contains_key(&k) && !jobs.skip.contains(&k)
        })
        .collect();
    let already = total - todo.len();
    let breaker = jobs.breaker;
    let resolved = jobs.resolved;
    let (ctx, record, planned_ref) = (&ctx, &record, &planned);
    // Positions, not references, go through the stream: closures over borrowed tuples trip the
    // compiler's higher-ranked `Send` inference for callers that need a `Send` future.
    let fresh: Vec<CaseResult> = futures_util::stream::iter(todo)
        .map(|i: usize| async move {
            let (target, case, repeat) = planned_ref[i];
            if breaker.tripped() {
                return None;
            }
            let r = one(runner, suite, target, case, repeat, ctx, resolved).await;
            if breaker.see(&r) {
                tracing::warn!(run = %ctx.request_id.as_deref().unwrap_or(""), reason = %breaker.reason(), "evaluation stopped early");
            }
            Some(r)
        })
        .buffer_unordered(concurrency)
        .filter_map(|r: Option<CaseResult>| std::future::ready(r))
        // Recording is a second stage: a call's slot is free as soon as its answer is graded,
        // while its result waits to be stored.
        .map(record)
        .buffer_unordered(concurrency.max(BATCH_MAX))
        .enumerate()
        .map(|(n, r)| {
            progress(&r, already + n + 1, total);
            r
        })
        .collect()
        .await;
    for r in fresh {
        have.insert((r.target.clone(), r.case_key.clone(), r.repeat), r);
    }
    planned
        .iter()
        .filter_map(|(t, c, r)| have.remove(&(t.label(), c.key.clone(), *r)))
        .collect()
}

pub(crate) fn finish(
    suite: &Suite,
    opts: &Options,
    run_key: String,
    started: Instant,
    results: Vec<CaseResult>,
    baseline: Option<&[TargetSummary]>,
    stopped: Option<String>,
) -> Report {
    let targets = summarise(&results);
    let mut gates = suite.gates.clone();
    if opts.gates.min_pass_rate.is_some() {
        gates.min_pass_rate = opts.gates.min_pass_rate;
    }
    gates.cutoffs.extend(opts.gates.cutoffs.iter().cloned());
    let mut gate = gate(&targets, &gates);
    if let (Some(max), Some(base)) = (opts.max_regression, baseline) {
        for t in &targets {
            if let Some(b) = base.iter().find(|b| b.target == t.target)
                && b.pass_rate - t.pass_rate > max + 1e-9
            {
                gate.failures.push(format!(
                    "{}: pass rate fell from {:.3} to {:.3}, more than {max}",
                    t.target, b.pass_rate, t.pass_rate
                ));
            }
        }
    }
    if let Some(why) = &stopped {
        gate.failures.push(format!("the run did not finish: {why}"));
    }
    gate.passed = gate.failures.is_empty();
    Report {
        run_id: run_key,
        suite: suite.name.clone(),
        total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        targets,
        gate,
        results,
        stopped,
    }
}

/// Calls one target with `vars`: the run result and its audit row ids (one per route member
/// tried).
pub(super) async fn call<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    target: &Target,
    vars: &crate::run::Variables,
    ctx: &RunContext,
    resolved: &Resolved,
) -> (RunResult, Vec<i64>) {
    match target {
        Target::Config { config_key } => {
            let r = match resolved.configs.get(config_key) {
                Some(cfg) => {
                    runner
                        .run_resolved(
                            cfg,
                            &Overlay::default(),
                            vars,
                            ctx,
                            new_trace_id(),
                            Instant::now(),
                        )
                        .await
                }
                None => runner.run_once(config_key, vars, ctx).await,
            };
            let ids = r.audit_id.into_iter().collect();
            (r, ids)
        }
        Target::Route { project, route_key } => {
            let r = runner.run_route(project, route_key, vars, ctx).await;
            let ids = r
                .member_attempts
                .iter()
                .filter_map(|a| a.audit_id)
                .collect();
            (r.result, ids)
        }
        // `one` answers an echo case itself, and a judge is never `echo` (the suite reader
        // refuses it): this arm is a failed call, never a crash.
        Target::Echo => (
            RunResult::failed_early(
                new_trace_id(),
                Instant::now(),
                "echo",
                crate::error::RunError::InvalidInput("the echo target makes no call".into()),
            ),
            Vec::new(),
        ),
    }
}

async fn one<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    target: &Target,
    case: &Case,
    repeat: u32,
    ctx: &RunContext,
    resolved: &Resolved,
) -> CaseResult {
    let mut vars = case.vars.clone();
    let mut case_ctx = ctx.clone();
    if let Some((bucket, key)) = &case.media
        && let Err((code, message)) =
            media_case(runner, bucket, key, &mut vars, &mut case_ctx).await
    {
        return CaseResult {
            error_code: Some(code.as_str().to_owned()),
            error_message: Some(message),
            ..unanswered(target, case, repeat)
        };
    }
    let (out, answer) = match target {
        Target::Echo => echo(target, case, repeat),
        _ => {
            if let Some(prompt) = &case.prompt {
                case_ctx.turn = Some(std::sync::Arc::new(crate::request::CallerTurn {
                    messages: prompt_messages(prompt),
                    ..Default::default()
                }));
            }
            let (result, audit_ids) = call(runner, target, &vars, &case_ctx, resolved).await;
            called(target, case, repeat, result, audit_ids)
        }
    };
    let Some(mut answer) = answer else {
        return out;
    };
    let mut out = out;
    let fields = CaseFields {
        vars: Some(&case.vars),
        expected: case.expected.as_ref(),
    };
    let all: Vec<&crate::eval::assert::Assertion> =
        suite.assertions.iter().chain(&case.assertions).collect();
    let mut items: Vec<String> = Vec::new();
    for i in all.iter().flat_map(|a| a.rubric_items(&fields)) {
        if !items.contains(&i) {
            items.push(i);
        }
    }
    let mut judge_audit = None;
    if let (false, Some(judge)) = (items.is_empty(), &suite.judge) {
        let (verdicts, ids) =
            super::judge::judge(runner, judge, &answer, case, &items, ctx, resolved).await;
        judge_audit = ids.first().copied();
        out.audit_ids.extend(ids);
        answer.rubric = Some(verdicts);
    }
    out.assertions = all
        .iter()
        .map(|a| {
            let mut g = a.grade(&answer, &fields);
            if a.is_rubric() {
                g.audit_id = judge_audit;
            }
            g
        })
        .collect();
    let (pass, score) = case_score(&out.assertions, case.threshold.or(suite.threshold));
    out.pass = pass;
    out.score = score;
    out
}

/// A case's own prompt as the conversation sent after the target's prompt: a JSON list of
/// `{role, content}` messages as written (promptfoo's chat prompts), else one user message.
fn prompt_messages(prompt: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(prompt.trim()) {
        Ok(Value::Array(list))
            if !list.is_empty()
                && list
                    .iter()
                    .all(|m| m.get("role").is_some_and(Value::is_string)) =>
        {
            list
        }
        _ => vec![serde_json::json!({"role": "user", "content": prompt})],
    }
}

/// A result with nothing in it yet: not passed, score 0, no output.
fn unanswered(target: &Target, case: &Case, repeat: u32) -> CaseResult {
    CaseResult {
        target: target.label(),
        case_key: case.key.clone(),
        repeat,
        pass: false,
        score: 0.0,
        output: None,
        parsed: None,
        assertions: Vec::new(),
        latency_ms: 0,
        error_code: None,
        error_message: None,
        trace_id: String::new(),
        audit_ids: Vec::new(),
    }
}

/// The `echo` target's result: the answer is the case's prompt, at no cost, with no call.
fn echo(target: &Target, case: &Case, repeat: u32) -> (CaseResult, Option<Answer>) {
    let text = case.prompt.clone().unwrap_or_default();
    let answer = Answer {
        parsed: serde_json::from_str(&text).ok(),
        text: Some(text),
        finish_reason: Some("stop".into()),
        cost_usd: Some(0.0),
        ..Answer::default()
    };
    let out = CaseResult {
        output: answer.text.clone(),
        parsed: answer.parsed.clone(),
        ..unanswered(target, case, repeat)
    };
    (out, Some(answer))
}

/// A called target's result, and the answer to grade when the call succeeded.
fn called(
    target: &Target,
    case: &Case,
    repeat: u32,
    result: RunResult,
    audit_ids: Vec<i64>,
) -> (CaseResult, Option<Answer>) {
    let out = CaseResult {
        output: result.content.clone(),
        parsed: result.parsed.clone(),
        latency_ms: result.total_ms,
        error_code: result.error.as_ref().map(|e| e.code.clone()),
        error_message: result.error.as_ref().map(|e| e.message.clone()),
        trace_id: result.trace_id.clone(),
        audit_ids,
        ..unanswered(target, case, repeat)
    };
    if !result.is_ok() {
        return (out, None);
    }
    let answer = Answer {
        finish_reason: result
            .response
            .as_ref()
            .and_then(|r| r.pointer("/choices/0/finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        // The target call's own cost (content retries included; the judge's is its own row).
        cost_usd: result.cost,
        latency_ms: result.total_ms,
        text: result.content,
        parsed: result.parsed,
        rubric: None,
    };
    (out, Some(answer))
}

/// Resolves a media case's object into its variables, as the upload pipeline does (presigned
/// `MEDIA_URL`, or `MEDIA_DATA` when the case's `MEDIA_MODE` is `inline`); the object must be
/// audio within the size limit.
async fn media_case<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    bucket: &str,
    key: &str,
    vars: &mut crate::run::Variables,
    ctx: &mut RunContext,
) -> Result<(), (Code, String)> {
    let Some(src) = runner.media() else {
        return Err((
            Code::ObjectOperationUnsupported,
            "this runner has no object store for media cases".into(),
        ));
    };
    let object_err = |e: crate::ports::ObjectError| (e.code(), e.to_string());
    // The case names a key: its current object is checked, and that version (or ETag) is read.
    let meta = src
        .store
        .head(bucket, key, crate::ports::ObjectPin::NONE)
        .await
        .map_err(object_err)?;
    let format = crate::media::check_media(
        key,
        meta.content_type.as_deref(),
        meta.size,
        src.settings.media_max_bytes,
    )?;
    let inline = vars
        .get("MEDIA_MODE")
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case("inline"));
    let obj = crate::model::media::ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: Some(meta.size),
        etag: meta.etag.clone(),
        version_id: meta.version_id.clone(),
    };
    let seconds = crate::media::media_vars(
        src.store.as_ref(),
        &src.settings,
        &obj,
        meta.size,
        format,
        inline,
        vars,
        &mut ctx.redact,
    )
    .await
    .map_err(object_err)?;
    ctx.media_seconds = seconds.or(meta.duration_seconds);
    ctx.media_bytes = Some(meta.size);
    Ok(())
}
