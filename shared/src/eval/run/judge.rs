//! The judge of `llm-rubric` assertions: one call per case for its rubric items to a judge with
//! a prompt of its own (given `OUTPUT`, `RUBRIC`, `RUBRIC_JSON`, `VARS`, `EXPECTED`), or, for a
//! judge config without a prompt (a bare model, as promptfoo's graders are), one call per item
//! with promptfoo's default grading prompt and its contract (`{"reason", "pass", "score"}`).
//!
//! Invariants: a judge answer that does not read is a failed verdict saying why, never a pass;
//! every judge call is an ordinary audited call, its audit ids returned.

use serde_json::{Value, json};

use super::Resolved;
use super::execute::call;
use crate::eval::assert::{Answer, RubricVerdict};
use crate::eval::suite::{Case, Target};
use crate::ports::{Provider, Store};
use crate::run::{RunContext, Runner};

/// promptfoo's default grading prompt (its `DEFAULT_GRADING_PROMPT`), system part.
const GRADING_SYSTEM: &str = "You are grading output according to a user-specified rubric. If the statement in the rubric is true, then the output passes the test. You respond with a JSON object with this structure: {reason: string, pass: boolean, score: number}

Examples:

<Output>Hello world</Output>
<Rubric>Content contains a greeting</Rubric>
{\"reason\": \"the content contains the word 'Hello'\", \"pass\": true, \"score\": 1.0}

<Output>Avast ye swabs, repel the invaders!</Output>
<Rubric>Does not speak like a pirate</Rubric>
{\"reason\": \"'avast ye' is a common pirate term\", \"pass\": false, \"score\": 0.0}";

/// The verdicts on a case's rubric items and the judge calls' audit ids.
pub(super) async fn judge<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    judge: &Target,
    answer: &Answer,
    case: &Case,
    items: &[String],
    ctx: &RunContext,
    resolved: &Resolved,
) -> (Result<Vec<RubricVerdict>, String>, Vec<i64>) {
    let bare = match judge {
        Target::Config { config_key } => resolved
            .configs
            .get(config_key)
            .is_some_and(|c| c.prompt.is_none()),
        _ => false,
    };
    if !bare {
        return judge_call(runner, judge, answer, case, items, ctx, resolved).await;
    }
    let output = answer.text.clone().unwrap_or_default();
    let mut verdicts = Vec::new();
    let mut ids = Vec::new();
    for item in items {
        let mut item_ctx = ctx.clone();
        item_ctx.turn = Some(std::sync::Arc::new(crate::request::CallerTurn {
            messages: vec![
                json!({"role": "system", "content": GRADING_SYSTEM}),
                json!({"role": "user", "content": format!("<Output>\n{output}\n</Output>\n<Rubric>\n{item}\n</Rubric>")}),
            ],
            ..Default::default()
        }));
        let (r, mut call_ids) = call(
            runner,
            judge,
            &crate::run::Variables::new(),
            &item_ctx,
            resolved,
        )
        .await;
        let audit_id = call_ids.last().copied();
        ids.append(&mut call_ids);
        if let Some(e) = &r.error {
            return (Err(format!("the judge call failed: {}", e.code)), ids);
        }
        // promptfoo's graders may wrap the JSON in prose: the first object found is the verdict.
        let parsed = crate::eval::assert::parsed(&Answer {
            text: r.content.clone(),
            parsed: r.parsed.clone(),
            ..Answer::default()
        })
        .or_else(|| {
            r.content
                .as_deref()
                .and_then(crate::eval::assert::embedded_json)
        });
        match rubric_verdicts(parsed.as_ref(), std::slice::from_ref(item), audit_id) {
            Ok(mut v) => verdicts.append(&mut v),
            Err(why) => return (Err(why), ids),
        }
    }
    (Ok(verdicts), ids)
}

/// One judge call for every rubric item of a case: the judge answers
/// `{"results": [{"pass", "score", "reason"}, ...]}` (or the bare list), one entry per item in
/// order; anything else is a failed verdict saying why, never a pass.
async fn judge_call<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    judge: &Target,
    answer: &Answer,
    case: &Case,
    items: &[String],
    ctx: &RunContext,
    resolved: &Resolved,
) -> (Result<Vec<RubricVerdict>, String>, Vec<i64>) {
    let mut vars = crate::run::Variables::new();
    vars.insert(
        "OUTPUT".into(),
        Value::String(answer.text.clone().unwrap_or_default()),
    );
    let numbered: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}. {t}", i + 1))
        .collect();
    vars.insert("RUBRIC".into(), Value::String(numbered.join("\n")));
    vars.insert(
        "RUBRIC_JSON".into(),
        Value::String(Value::from(items.to_vec()).to_string()),
    );
    vars.insert(
        "VARS".into(),
        Value::String(Value::Object(case.vars.clone()).to_string()),
    );
    vars.insert(
        "EXPECTED".into(),
        Value::String(case.expected.clone().unwrap_or(Value::Null).to_string()),
    );
    let (r, ids) = call(runner, judge, &vars, ctx, resolved).await;
    if let Some(e) = &r.error {
        return (Err(format!("the judge call failed: {}", e.code)), ids);
    }
    let audit_id = ids.last().copied();
    let parsed = crate::eval::assert::parsed(&Answer {
        text: r.content.clone(),
        parsed: r.parsed.clone(),
        ..Answer::default()
    });
    (rubric_verdicts(parsed.as_ref(), items, audit_id), ids)
}

/// Validates a judge's answer against the items it was sent.
fn rubric_verdicts(
    answer: Option<&Value>,
    items: &[String],
    audit_id: Option<i64>,
) -> Result<Vec<RubricVerdict>, String> {
    let list = match answer {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(o)) if o.get("results").is_some_and(Value::is_array) => o
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Some(v @ Value::Object(o)) if o.contains_key("pass") => vec![v.clone()],
        Some(_) => return Err("the judge's answer is not {\"results\": [...]}".into()),
        None => return Err("the judge's answer is not JSON".into()),
    };
    if list.len() != items.len() {
        return Err(format!(
            "the judge gave {} verdict(s) for {} rubric item(s)",
            list.len(),
            items.len()
        ));
    }
    items
        .iter()
        .zip(list)
        .enumerate()
        .map(|(i, (item, v))| {
            let pass = v
                .get("pass")
                .and_then(Value::as_bool)
                .ok_or_else(|| format!("verdict {}: pass must be true or false", i + 1))?;
            let score = match v.get("score") {
                None | Some(Value::Null) => f64::from(u8::from(pass)),
                Some(s) => s
                    .as_f64()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| format!("verdict {}: score must be from 0 to 1", i + 1))?,
            };
            Ok(RubricVerdict {
                item: item.clone(),
                pass,
                score,
                reason: v
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                audit_id,
            })
        })
        .collect()
}
