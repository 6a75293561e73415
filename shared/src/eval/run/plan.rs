//! What a run calls: the plan of (target, case, repetition) in order, each target resolved once
//! (config or route, with the configuration hash stored beside the run), and the preflight that
//! finds every unfillable placeholder and missing target before any call.
//!
//! Invariants: nothing here calls a provider; preflight reads fresh data (never the snapshot).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Options;
use crate::catalog::{Finding, Severity};
use crate::code::Code;
use crate::eval::assert::CaseFields;
use crate::eval::suite::{Case, Suite, Target, unfilled};
use crate::model::ResolvedConfig;
use crate::ports::{Provider, Store};
use crate::run::Runner;
use crate::template::{collect_strings, placeholders};

/// The planned calls: (target, case, repetition), after the options' narrowing.
pub fn plan<'a>(suite: &'a Suite, opts: &'a Options) -> Vec<(&'a Target, &'a Case, u32)> {
    // A target named twice is one target (results are unique per target, case and repetition).
    let mut targets: Vec<&Target> = Vec::new();
    for t in targets_of(suite, opts) {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let cases: Vec<&Case> = suite
        .cases
        .iter()
        .filter(|c| opts.tags.is_empty() || c.tags.iter().any(|t| opts.tags.contains(t)))
        .take(opts.limit.unwrap_or(usize::MAX))
        .collect();
    let repeat = opts.repeat.unwrap_or(suite.repeat).max(1);
    let mut out = Vec::new();
    for t in &targets {
        for c in &cases {
            for r in 0..repeat {
                out.push((*t, *c, r));
            }
        }
    }
    out
}

/// What a run's targets (and judge) resolved to, once per run: every case of a config target
/// measures the same configuration and costs no config query.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Each target config (and the judge) by key.
    pub(super) configs: BTreeMap<String, ResolvedConfig>,
    /// SHA-256 over the targets' resolved configuration ([`EvalRun::config_hash`]).
    pub hash: Option<String>,
}

/// Resolves every target and the judge, and checks what must hold before anything is called:
/// each resolves (an active config, or an active route with active members) and every case fills
/// the placeholders its targets' prompts leave open. Each problem names the target or the case.
pub async fn prepare<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> (Resolved, Vec<Finding>) {
    use sha2::Digest;
    let mut findings = Vec::new();
    let mut out = Resolved::default();
    let mut parts = Vec::new();
    let targets = targets_of(suite, opts);
    let judge = suite.judge.as_ref().filter(|j| !targets.contains(j));
    for (t, is_judge) in targets
        .iter()
        .map(|t| (*t, false))
        .chain(judge.map(|j| (j, true)))
    {
        let needed = match t {
            Target::Echo => {
                for (_, case, _) in plan(suite, opts)
                    .into_iter()
                    .filter(|(pt, c, r)| *pt == t && *r == 0 && c.prompt.is_none())
                {
                    findings.push(Finding {
                        severity: Severity::Error,
                        path: format!("case {}", case.key),
                        code: Code::MissingField,
                        message:
                            "the echo target answers with the case's prompt; this case has none"
                                .into(),
                    });
                }
                continue;
            }
            Target::Config { config_key } => {
                match runner.store().resolve_config(config_key).await {
                    Ok(cfg) => {
                        let needed = open_placeholders(&cfg, None);
                        if !is_judge {
                            parts.push(hash_config(&cfg));
                        }
                        out.configs.insert(config_key.clone(), cfg);
                        needed
                    }
                    Err(e) => {
                        findings.push(missing_target(t, &e.to_string()));
                        continue;
                    }
                }
            }
            Target::Route { project, route_key } => {
                match runner.store().resolve_route(project, route_key).await {
                    Ok(route) if route.members.is_empty() => {
                        findings.push(missing_target(t, "the route has no active member"));
                        continue;
                    }
                    Ok(route) => {
                        let failover =
                            crate::run::policy::Failover::from_config(route.policy_config.as_ref());
                        let mut all = Vec::new();
                        for m in &route.members {
                            let cfg =
                                crate::run::policy::effective_config(&route, &m.config, &failover);
                            all.extend(open_placeholders(&cfg, route.variables.as_ref()));
                        }
                        all.sort();
                        all.dedup();
                        if !is_judge {
                            parts.push(serde_json::json!({
                                "route": t.label(), "policy": route.policy, "policy_config": route.policy_config,
                                "variables": route.variables, "params": route.params, "response_format": route.response_format,
                                "prompt": route.prompt.as_ref().map(|p| (&p.name, &p.version, &p.messages)),
                                "members": route.members.iter().map(|m| serde_json::json!({
                                    "priority": m.priority, "weight": m.weight, "config": hash_config(&m.config)
                                })).collect::<Vec<_>>(),
                            }));
                        }
                        all
                    }
                    Err(e) => {
                        findings.push(missing_target(t, &e.to_string()));
                        continue;
                    }
                }
            }
        };
        if is_judge {
            for n in needed.iter().filter(|n| !JUDGE_VARS.contains(&n.as_str())) {
                findings.push(Finding {
                    severity: Severity::Error,
                    path: format!("judge {}", t.label()),
                    code: Code::UnfilledPlaceholder,
                    message: format!(
                        "the judge's prompt uses {{{{{n}}}}}; a judge is given only {}",
                        JUDGE_VARS.join(", ")
                    ),
                });
            }
            continue;
        }
        for (_, case, _) in plan(suite, opts)
            .into_iter()
            .filter(|(pt, _, r)| *pt == t && *r == 0)
        {
            for mut f in unfilled(case, &needed) {
                f.message = format!("{} (target {})", f.message, t.label());
                findings.push(f);
            }
        }
    }
    findings.extend(unresolved_references(suite));
    // A case's own llm-rubric needs the judge too (the suite reader checks the suite's).
    if suite.judge.is_none() {
        for case in suite
            .cases
            .iter()
            .filter(|c| c.assertions.iter().any(|a| a.needs_judge()))
        {
            findings.push(Finding {
                severity: Severity::Error,
                path: format!("case {}", case.key),
                code: Code::MissingField,
                message: "an llm-rubric assertion needs the suite's judge (project/route_key or config:KEY)".into(),
            });
        }
    }
    if findings.is_empty() {
        let digest = sha2::Sha256::digest(Value::Array(parts).to_string().as_bytes());
        out.hash = Some(crate::hex::encode(&digest));
    }
    (out, findings)
}

/// Every assertion reference a case cannot fill (`{{expected.nope}}`, `{{vars.NOPE}}`, a bare
/// `{{NOPE}}`), one finding per case and assertion: graded, it would compare against its literal
/// text and quietly fail.
fn unresolved_references(suite: &Suite) -> Vec<Finding> {
    let mut out = Vec::new();
    for case in &suite.cases {
        let fields = CaseFields {
            vars: Some(&case.vars),
            expected: case.expected.as_ref(),
        };
        let all = suite
            .assertions
            .iter()
            .enumerate()
            .map(|(i, a)| ("suite", i, a));
        let own = case
            .assertions
            .iter()
            .enumerate()
            .map(|(i, a)| ("case", i, a));
        for (whose, i, a) in all.chain(own) {
            let missing = a.unresolved(&fields);
            if missing.is_empty() {
                continue;
            }
            out.push(Finding {
                severity: Severity::Error,
                path: format!("case {} ({whose} assert[{i}], {})", case.key, a.label()),
                code: Code::UnfilledPlaceholder,
                message: format!(
                    "{} refer(s) to nothing in the case (its vars: {})",
                    missing
                        .iter()
                        .map(|n| format!("{{{{{n}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if case.vars.is_empty() {
                        "none".to_owned()
                    } else {
                        case.vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            });
        }
    }
    out
}

/// [`prepare`]'s findings only.
pub async fn preflight<S: Store, P: Provider>(
    runner: &Runner<S, P>,
    suite: &Suite,
    opts: &Options,
) -> Vec<Finding> {
    prepare(runner, suite, opts).await.1
}

/// The variables a judge's prompt is given: the answer (`OUTPUT`), the rubric items as a numbered
/// list (`RUBRIC`) and as a JSON array (`RUBRIC_JSON`), the case's variables and expected value
/// as JSON (`VARS`, `EXPECTED`).
pub const JUDGE_VARS: [&str; 5] = ["OUTPUT", "RUBRIC", "RUBRIC_JSON", "VARS", "EXPECTED"];

pub(crate) fn targets_of<'a>(suite: &'a Suite, opts: &'a Options) -> Vec<&'a Target> {
    if opts.targets.is_empty() {
        suite.targets.iter().collect()
    } else {
        opts.targets.iter().collect()
    }
}

fn missing_target(t: &Target, why: &str) -> Finding {
    Finding {
        severity: Severity::Error,
        path: format!("target {}", t.label()),
        code: Code::UnknownReference,
        message: why.to_owned(),
    }
}

/// What the configuration hash covers of a config: model, URL, prompt and params, never a key.
fn hash_config(c: &ResolvedConfig) -> Value {
    serde_json::json!({
        "config_key": c.config_key, "model": c.model, "url": c.connection.base_url,
        "prompt": c.prompt.as_ref().map(|p| serde_json::json!({
            "name": p.name, "version": p.version, "messages": p.messages,
            "response_format": p.response_format, "variables": p.variables})),
        "params": c.params,
    })
}

/// The placeholders of a config's prompt that its prompt variables, params and the route's
/// variables leave open (the caller must fill them).
fn open_placeholders(cfg: &ResolvedConfig, route_vars: Option<&Value>) -> Vec<String> {
    let Some(prompt) = &cfg.prompt else {
        return Vec::new();
    };
    let mut strings = Vec::new();
    collect_strings(&prompt.messages, &mut strings);
    let filled = |name: &str| {
        [prompt.variables.as_ref(), cfg.params.as_ref(), route_vars]
            .into_iter()
            .flatten()
            .any(|m| m.get(name).is_some())
    };
    let mut out: Vec<String> = strings
        .iter()
        .flat_map(|s| placeholders(s))
        .filter(|p| !filled(p))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_assertion_reference_no_case_fills_is_a_finding_before_any_call() {
        let doc = json!({
            "datasets": [{"name": "d", "cases": [
                {"key": "good", "vars": {"topic": "发布"}, "expected": {"x": "甲"}},
                {"key": "typo", "vars": {"topic": "发布"},
                 "assert": [{"type": "contains", "value": "{{expected.nope}}"}]}
            ]}],
            "suites": [{"name": "s", "dataset": "d", "targets": [{"config": "k"}],
                        "assert": [{"type": "contains", "value": "{{topic}} {{expected.x}}"}]}]
        });
        let (suite, f) = crate::eval::suite::read_suite(&doc, "s", std::path::Path::new("."));
        assert!(f.is_empty(), "{f:?}");
        let found = unresolved_references(&suite.unwrap());
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "case typo (suite assert[0], contains)",
                "case typo (case assert[0], contains)"
            ]
        );
        assert!(found[0].message.contains("{{expected.x}}"), "{found:?}");
        assert!(found[1].message.contains("{{expected.nope}}"), "{found:?}");
        assert!(found.iter().all(|f| f.code == Code::UnfilledPlaceholder));
    }
}
