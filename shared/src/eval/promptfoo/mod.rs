//! promptfoo configs (`promptfooconfig.yaml`) read as written and translated into an evals
//! document (one dataset, one suite) that [`crate::eval::suite::read_suite`] reads like any
//! other, so a promptfoo suite is stored, resumed, fanned out and reported as ai-runner's are.
//!
//! The translation: every prompt x test (x scenario config) x var combination is a case whose
//! `prompt` is the prompt rendered with the test's vars (the conversation sent after the
//! target's stored prompt; what `echo` answers); `defaultTest` is merged into every test;
//! assertions are translated by [`assert`]; `providers` become targets through ai-runner ids
//! (`ai-runner:config:KEY`, `ai-runner:route:PROJECT/ROUTE`, `echo`) or the caller's mapping
//! (`--provider ID=TARGET`); `defaultTest.options.provider` (or the mapping's `grader`) grades
//! `llm-rubric`. The suite's gate is promptfoo's: every case must pass. [`results_json`] writes
//! a run back in promptfoo's output format.
//!
//! Invariants: nothing is called here; every problem of the whole file is reported at once
//! with its path (`tests[3].assert[1].type`, `cases.csv:4:__expected1`); what cannot be
//! honoured is an error finding (with `skip_unsupported`, an assertion kept as not evaluated and
//! a warning), so a run never grades it as passed; options that only shape promptfoo's own run
//! or output are warnings.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::catalog::Finding;
use crate::catalog::fields::Ctx;
use crate::code::Code;
use crate::eval::suite::Target;

mod assert;
mod expected;
mod files;
mod output;
mod prompts;
mod providers;
mod template;
mod testcases;

pub use output::results_json;
use prompts::Prompt;
use providers::{grader, providers, target_doc};
use testcases::Test;

/// What translating a test's parts needs besides the test: the template environment, the
/// config's directory, and whether what cannot be honoured is kept as not evaluated.
pub(super) struct Reader<'a> {
    pub(super) env: minijinja::Environment<'static>,
    pub(super) dir: &'a Path,
    pub(super) skip_unsupported: bool,
}

/// What a promptfoo provider id (or label) runs as, from the command line: `ID=TARGET`, with
/// `grader` naming the judge.
pub type ProviderMap = Vec<(String, Target)>;

/// The keys that make a promptfoo suite.
const SUITE_KEYS: [&str; 6] = [
    "prompts",
    "providers",
    "targets",
    "tests",
    "defaultTest",
    "scenarios",
];

/// True when `doc` is a promptfoo config rather than an evals document.
pub fn is_promptfoo(doc: &Value) -> bool {
    let Some(o) = doc.as_object() else {
        return false;
    };
    // An ai-runner catalog or evals document has sections of its own (a catalog's `prompts`
    // are its prompt versions).
    let ours = [
        "datasets",
        "suites",
        "evals",
        "configs",
        "connections",
        "routes",
        "models",
    ];
    !ours.iter().any(|k| o.contains_key(*k)) && SUITE_KEYS.iter().any(|k| o.contains_key(*k))
}

/// Reads `ID=TARGET` (`TARGET`: `config:KEY`, `route:P/R`, `P/R`, `KEY` or `echo`).
pub fn parse_mapping(s: &str) -> Option<(String, Target)> {
    let (id, target) = s.split_once('=')?;
    let id = id.trim();
    if id.is_empty() {
        return None;
    }
    let target = match target.trim() {
        "echo" => Target::Echo,
        t => Target::parse(t)?,
    };
    Some((id.to_owned(), target))
}

/// The evals document (dataset and suite both named `name`) for the promptfoo config `doc`
/// read from `dir`, or every finding. With `skip_unsupported`, assertions ai-runner cannot
/// honour are kept as not evaluated (warnings) instead of stopping the run.
pub fn translate(
    doc: &Value,
    dir: &Path,
    name: &str,
    map: &ProviderMap,
    skip_unsupported: bool,
) -> (Option<Value>, Vec<Finding>) {
    let mut cx = Ctx::default();
    let Some(o) = doc.as_object() else {
        cx.err("", Code::BadType, "a promptfoo config is a mapping");
        return (None, cx.findings);
    };
    let mut suite = Map::new();
    top_level(o, &mut suite, &mut cx);
    let prompts = prompts::prompts(o.get("prompts"), dir, &mut cx);
    let targets = providers(
        o.get("providers").or_else(|| o.get("targets")),
        map,
        &mut cx,
    );
    let default = match o.get("defaultTest") {
        None | Some(Value::Null) => Test::default(),
        Some(Value::Object(d)) => testcases::test(d, "defaultTest", dir, &mut cx),
        Some(Value::String(s)) => {
            let file = s.strip_prefix("file://").unwrap_or(s);
            let read = files::read(dir, file).and_then(|text| {
                serde_yaml_ng::from_str::<Value>(&text).map_err(|e| format!("{file}: {e}"))
            });
            match read {
                Ok(Value::Object(d)) => testcases::test(&d, "defaultTest", dir, &mut cx),
                Ok(_) => {
                    cx.err(
                        "defaultTest",
                        Code::BadType,
                        format!("{file} does not hold one test mapping"),
                    );
                    Test::default()
                }
                Err(why) => {
                    cx.err("defaultTest", Code::IoError, why);
                    Test::default()
                }
            }
        }
        Some(_) => {
            cx.err("defaultTest", Code::BadType, "expected a mapping");
            Test::default()
        }
    };
    let mut all: Vec<Test> = testcases::tests(o.get("tests"), "tests", dir, &mut cx);
    all.extend(scenarios(o.get("scenarios"), dir, &mut cx));
    if all.is_empty() {
        // promptfoo runs every prompt once without vars when there are no tests.
        all.push(Test {
            at: "tests".into(),
            ..Test::default()
        });
    }
    let rd = Reader {
        env: template::environment(),
        dir,
        skip_unsupported,
    };
    let mut cases = Vec::new();
    let mut rubric = false;
    for (pi, p) in prompts.iter().enumerate() {
        for (ti, t) in all.iter().enumerate() {
            // `options.disableDefaultAsserts`: the test keeps defaultTest's vars and options only.
            let merged = if t
                .options
                .get("disableDefaultAsserts")
                .and_then(Value::as_bool)
                == Some(true)
            {
                let vars_only = Test {
                    assert: Vec::new(),
                    ..default.clone()
                };
                merge(&vars_only, t)
            } else {
                merge(&default, t)
            };
            let combos = expand(&merged);
            for (ei, vars) in combos.iter().enumerate() {
                let mut key = format!("t{}", ti + 1);
                if combos.len() > 1 {
                    key = format!("{key}.{}", ei + 1);
                }
                if prompts.len() > 1 {
                    key = format!("p{}.{key}", pi + 1);
                }
                // Inside an assert-set too.
                rubric |= merged
                    .assert
                    .iter()
                    .any(|(_, a)| a.to_string().contains("llm-rubric\""));
                if let Some(case) = case(&key, p, &merged, vars, &rd, &mut cx) {
                    cases.push(case);
                }
            }
        }
    }
    if let Some(judge) = grader(&default, map, rubric, &mut cx) {
        suite.insert("judge".into(), Value::String(judge));
    }
    // A test's finding recurs for each prompt and var combination: reported once.
    let mut seen = std::collections::BTreeSet::new();
    cx.findings
        .retain(|f| seen.insert((f.path.clone(), f.code, f.message.clone())));
    if cx
        .findings
        .iter()
        .any(|f| f.severity == crate::catalog::Severity::Error)
    {
        return (None, cx.findings);
    }
    suite.insert("name".into(), Value::String(name.to_owned()));
    suite.insert("dataset".into(), Value::String(name.to_owned()));
    suite.insert(
        "targets".into(),
        Value::Array(targets.iter().map(target_doc).collect()),
    );
    suite.insert("gates".into(), json!({"min_pass_rate": 1.0}));
    let mut dataset = Map::new();
    dataset.insert("name".into(), Value::String(name.to_owned()));
    if let Some(d) = o.get("description").and_then(Value::as_str) {
        dataset.insert("description".into(), Value::String(d.to_owned()));
    }
    dataset.insert("cases".into(), Value::Array(cases));
    let doc = json!({"datasets": [Value::Object(dataset)], "suites": [Value::Object(suite)]});
    (Some(doc), cx.findings)
}

/// Top-level keys: what shapes the run is taken (`evaluateOptions.maxConcurrency`, `repeat`),
/// what only shapes promptfoo's own output is a warning, what changes grading is an error.
fn top_level(o: &Map<String, Value>, suite: &mut Map<String, Value>, cx: &mut Ctx) {
    const IGNORED: [&str; 8] = [
        "outputPath",
        "sharing",
        "env",
        "writeLatestResults",
        "commandLineOptions",
        "tags",
        "metadata",
        "tracing",
    ];
    for k in o.keys() {
        let k = k.as_str();
        if SUITE_KEYS.contains(&k) || k == "description" || k == "evaluateOptions" {
            continue;
        }
        if IGNORED.contains(&k) {
            cx.warn(
                k,
                Code::UnsupportedFeature,
                format!("{k} shapes promptfoo's own run and output; not used"),
            );
        } else if ["nunjucksFilters", "extensions", "derivedMetrics", "redteam"].contains(&k) {
            cx.err(
                k,
                Code::UnsupportedFeature,
                format!("{k} runs code or generates tests; ai-runner runs neither"),
            );
        } else {
            cx.err(
                k,
                Code::UnknownKey,
                format!("promptfoo does not know the key {k:?}"),
            );
        }
    }
    if let Some(e) = o.get("evaluateOptions").and_then(Value::as_object) {
        for (k, v) in e {
            match (k.as_str(), v.as_u64()) {
                ("maxConcurrency", Some(n)) if n >= 1 => {
                    suite.insert("concurrency".into(), Value::from(n.min(64)));
                }
                ("repeat", Some(n)) if n >= 1 => {
                    suite.insert("repeat".into(), Value::from(n));
                }
                _ => cx.warn(
                    format!("evaluateOptions.{k}"),
                    Code::UnsupportedFeature,
                    "not used",
                ),
            }
        }
    }
}

/// Scenarios: every config entry x every test of the scenario, the entry's vars under the
/// test's, its assertions before the test's.
fn scenarios(v: Option<&Value>, dir: &Path, cx: &mut Ctx) -> Vec<Test> {
    let mut out = Vec::new();
    let list = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Array(a)) => a,
        Some(_) => {
            cx.err("scenarios", Code::BadType, "expected a list of scenarios");
            return out;
        }
    };
    for (si, s) in list.iter().enumerate() {
        let at = format!("scenarios[{si}]");
        let Some(s) = s.as_object() else {
            cx.err(
                &at,
                Code::BadType,
                "a scenario is {description, config, tests}",
            );
            continue;
        };
        for k in s
            .keys()
            .filter(|k| !["description", "config", "tests"].contains(&k.as_str()))
        {
            cx.err(
                format!("{at}.{k}"),
                Code::UnknownKey,
                format!("unknown key {k:?} (known: description, config, tests)"),
            );
        }
        let configs: Vec<Test> = match s.get("config") {
            Some(Value::Array(c)) => c
                .iter()
                .enumerate()
                .filter_map(|(ci, c)| match c.as_object() {
                    Some(o) => Some(testcases::test(o, &format!("{at}.config[{ci}]"), dir, cx)),
                    None => {
                        cx.err(
                            format!("{at}.config[{ci}]"),
                            Code::BadType,
                            "expected a mapping",
                        );
                        None
                    }
                })
                .collect(),
            None | Some(Value::Null) => vec![Test::default()],
            Some(_) => {
                cx.err(format!("{at}.config"), Code::BadType, "expected a list");
                Vec::new()
            }
        };
        let mut own = testcases::tests(s.get("tests"), &format!("{at}.tests"), dir, cx);
        if s.get("tests").is_none_or(Value::is_null) {
            // promptfoo runs a scenario without tests once per config entry.
            own.push(Test {
                at: format!("{at}.tests"),
                ..Test::default()
            });
        }
        let description = s.get("description").and_then(Value::as_str);
        for c in &configs {
            for t in &own {
                let mut m = merge(c, t);
                let words: Vec<&str> = [
                    description,
                    c.description.as_deref(),
                    t.description.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect();
                m.description = (!words.is_empty()).then(|| words.join(" "));
                out.push(m);
            }
        }
    }
    out
}

/// `over` on top of `base`: vars, options and metadata merged (over wins), assertions of
/// `base` first, threshold and description of `over` unless it has none.
fn merge(base: &Test, over: &Test) -> Test {
    let mut vars = base.vars.clone();
    vars.extend(over.vars.clone());
    let mut options = base.options.clone();
    options.extend(over.options.clone());
    let mut metadata = base.metadata.clone();
    metadata.extend(over.metadata.clone());
    Test {
        at: over.at.clone(),
        description: over
            .description
            .clone()
            .or_else(|| base.description.clone()),
        vars,
        assert: base.assert.iter().chain(&over.assert).cloned().collect(),
        threshold: over.threshold.or(base.threshold),
        metadata,
        options,
    }
}

/// Every combination of a test's list-valued vars, the first var varying slowest (promptfoo's
/// order); a list whose first item is not a string is one value, as in promptfoo; one
/// combination when none is a list or `options.disableVarExpansion` is set.
fn expand(t: &Test) -> Vec<Map<String, Value>> {
    let no_expansion = t
        .options
        .get("disableVarExpansion")
        .and_then(Value::as_bool)
        == Some(true);
    let mut combos = vec![Map::new()];
    for (k, v) in &t.vars {
        let values: Vec<Value> = match v {
            Value::Array(a) if !no_expansion && a.first().is_some_and(Value::is_string) => {
                a.clone()
            }
            other => vec![other.clone()],
        };
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(k.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    combos
}

/// One case: the prompt rendered (with `options.prefix` / `suffix`), the assertions
/// translated; `None` when something could not be (its findings recorded).
fn case(
    key: &str,
    p: &Prompt,
    t: &Test,
    vars: &Map<String, Value>,
    rd: &Reader<'_>,
    cx: &mut Ctx,
) -> Option<Value> {
    let before = cx.findings.len();
    for (k, v) in &t.options {
        match k.as_str() {
            "prefix"
            | "suffix"
            | "disableVarExpansion"
            | "disableDefaultAsserts"
            | "provider"
            | "runSerially"
            | "disableConversationVar" => {}
            "transform" | "postprocess" | "rubricPrompt" | "storeOutputAs" | "transformVars" => {
                cx.err(
                    format!("{}.options.{k}", t.at),
                    Code::UnsupportedFeature,
                    format!("options.{k} is not supported"),
                );
            }
            _ if v.is_null() => {}
            _ => cx.warn(
                format!("{}.options.{k}", t.at),
                Code::UnsupportedFeature,
                format!("options.{k} is not used"),
            ),
        }
    }
    // promptfoo puts the prefix and suffix around the template, before rendering.
    let text = |k: &str| t.options.get(k).and_then(Value::as_str).unwrap_or("");
    let template = format!("{}{}{}", text("prefix"), p.text, text("suffix"));
    // A chat prompt (JSON) is rendered string by string and written back with two-space
    // indents, as promptfoo does: a var holding a quote or a newline cannot break the JSON.
    let rendered = match serde_json::from_str::<Value>(&template) {
        Ok(chat @ (Value::Array(_) | Value::Object(_))) => {
            template::render_value(&rd.env, &chat, vars)
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        _ => template::render(&rd.env, &template, vars),
    };
    let prompt = rendered
        .map_err(|why| {
            cx.err(
                format!("{} (prompt {:?})", t.at, p.label),
                Code::UnfilledPlaceholder,
                why,
            );
        })
        .unwrap_or_default();
    let asserts: Vec<Value> = t
        .assert
        .iter()
        .filter_map(|(at, a)| assert::translate(a, vars, rd, at, cx))
        .collect();
    if cx.findings[before..]
        .iter()
        .any(|f| f.severity == crate::catalog::Severity::Error)
    {
        return None;
    }
    let mut c = Map::new();
    c.insert("key".into(), Value::String(key.to_owned()));
    if let Some(d) = &t.description {
        c.insert("description".into(), Value::String(d.clone()));
    }
    c.insert("vars".into(), Value::Object(vars.clone()));
    c.insert("prompt".into(), Value::String(prompt));
    if !asserts.is_empty() {
        c.insert("assert".into(), Value::Array(asserts));
    }
    if let Some(th) = t.threshold {
        c.insert("threshold".into(), Value::from(th));
    }
    let mut metadata = t.metadata.clone();
    metadata.insert("prompt".into(), Value::String(p.label.clone()));
    metadata.insert("source".into(), Value::String(t.at.clone()));
    c.insert("metadata".into(), Value::Object(metadata));
    Some(Value::Object(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::suite::read_suite;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn a_promptfoo_config_becomes_a_suite_of_prompts_by_tests_by_var_combinations() {
        let doc = yaml(
            r#"
description: translations
prompts:
  - "Translate to {{language}}: {{input}}"
  - id: 'file://chat.json'
    label: chat
providers:
  - ai-runner:config:small
  - id: openai:gpt-4o-mini
    label: mini
defaultTest:
  vars: {language: French}
  assert:
    - type: not-icontains
      value: sorry
tests:
  - description: greeting
    vars:
      input: [Hello, Goodbye]
    assert:
      - type: contains-any
        value: "{{input}}, Bonjour"
  - vars: {input: Thanks, language: German}
    threshold: 0.5
"#,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("chat.json"),
            r#"[{"role": "user", "content": "{{input}} -> {{language}}"}]"#,
        )
        .unwrap();
        let map = vec![parse_mapping("mini=config:mini").unwrap()];
        let (doc, f) = translate(&doc, dir.path(), "tr", &map, false);
        assert!(f.is_empty(), "{f:?}");
        let (suite, f) = read_suite(&doc.unwrap(), "tr", dir.path());
        assert!(f.is_empty(), "{f:?}");
        let suite = suite.unwrap();
        let keys: Vec<&str> = suite.cases.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            ["p1.t1.1", "p1.t1.2", "p1.t2", "p2.t1.1", "p2.t1.2", "p2.t2"]
        );
        assert_eq!(
            suite.cases[1].prompt.as_deref(),
            Some("Translate to French: Goodbye")
        );
        let chat: Value = serde_json::from_str(suite.cases[5].prompt.as_deref().unwrap()).unwrap();
        assert_eq!(
            chat,
            json!([{"role": "user", "content": "Thanks -> German"}])
        );
        assert_eq!(
            suite.cases[0].assertions.len(),
            2,
            "defaultTest's, then the test's"
        );
        assert_eq!(suite.cases[2].threshold, Some(0.5));
        assert_eq!(
            suite.targets,
            [
                Target::Config {
                    config_key: "small".into()
                },
                Target::Config {
                    config_key: "mini".into()
                }
            ]
        );
        assert_eq!(suite.gates.min_pass_rate, Some(1.0));
    }

    #[test]
    fn a_chat_prompt_stays_json_whatever_its_vars_hold() {
        let doc = yaml(
            "prompts: ['[{\"role\": \"user\", \"content\": \"Say {{q}}\"}]']\nproviders: [echo]\ntests: [{vars: {q: \"\\\"hi\\\"\\nthere\"}}]\n",
        );
        let (doc, f) = translate(&doc, Path::new("."), "s", &Vec::new(), false);
        assert!(f.is_empty(), "{f:?}");
        let prompt = doc.unwrap()["datasets"][0]["cases"][0]["prompt"].clone();
        let chat: Value = serde_json::from_str(prompt.as_str().unwrap()).unwrap();
        assert_eq!(chat[0]["content"], "Say \"hi\"\nthere");
    }

    #[test]
    fn scenarios_run_every_config_entry_with_every_test() {
        let doc = yaml(
            r#"
prompts: ["{{q}} in {{lang}}"]
providers: [echo]
scenarios:
  - description: langs
    config:
      - vars: {lang: en}
      - vars: {lang: fr}
    tests:
      - vars: {q: hi}
        assert: [{type: contains, value: "{{lang}}"}]
"#,
        );
        let (doc, f) = translate(&doc, Path::new("."), "s", &Vec::new(), false);
        assert!(f.is_empty(), "{f:?}");
        let suite = read_suite(&doc.unwrap(), "s", Path::new(".")).0.unwrap();
        let prompts: Vec<&str> = suite
            .cases
            .iter()
            .filter_map(|c| c.prompt.as_deref())
            .collect();
        assert_eq!(prompts, ["hi in en", "hi in fr"]);
        assert_eq!(suite.targets, [Target::Echo]);
        assert_eq!(suite.cases[1].assertions[0].value, Some(Value::from("fr")));
    }

    #[test]
    fn every_problem_of_the_file_is_reported_at_once() {
        let doc = yaml(
            r#"
prompts: ["Hi {{name}}", "file://gen.py:make"]
providers: [openai:gpt-4o, echo]
nunjucksFilters: {x: f.js}
tests:
  - vars: {}
    assert:
      - type: javascript
        value: output.length > 2
      - type: llm-rubric
        value: polite
"#,
        );
        let (doc, f) = translate(&doc, Path::new("."), "s", &Vec::new(), false);
        assert!(doc.is_none());
        let got: Vec<(&str, Code)> = f.iter().map(|f| (f.path.as_str(), f.code)).collect();
        for want in [
            ("nunjucksFilters", Code::UnsupportedFeature),
            ("prompts[1]", Code::UnsupportedFeature),
            ("providers[0]", Code::UnsupportedFeature),
            (
                "tests[0] (prompt \"Hi {{name}}\")",
                Code::UnfilledPlaceholder,
            ),
            ("defaultTest.options.provider", Code::MissingField),
        ] {
            assert!(got.contains(&want), "{want:?} in {got:?}");
        }
        let doc = yaml(
            "prompts: [x]\nproviders: [echo]\ntests: [{assert: [{type: python, value: x}]}]\n",
        );
        let (_, f) = translate(&doc, Path::new("."), "s", &Vec::new(), false);
        assert_eq!(f[0].path, "tests[0].assert[0].type");
        assert_eq!(f[0].code, Code::UnsupportedFeature);
    }

    #[test]
    fn the_grader_comes_from_default_test_or_the_mapping() {
        let base =
            "prompts: [x]\nproviders: [echo]\ntests: [{assert: [{type: llm-rubric, value: ok}]}]\n";
        let with = format!("{base}defaultTest: {{options: {{provider: openai:gpt-4o}}}}\n");
        let map = vec![parse_mapping("openai:gpt-4o=config:judge").unwrap()];
        let (doc, f) = translate(&yaml(&with), Path::new("."), "s", &map, false);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(doc.unwrap()["suites"][0]["judge"], "config:judge");
        let map = vec![parse_mapping("grader=grading/strict").unwrap()];
        let (doc, _) = translate(&yaml(base), Path::new("."), "s", &map, false);
        assert_eq!(doc.unwrap()["suites"][0]["judge"], "grading/strict");
        // A not-llm-rubric (or one inside an assert-set) needs the grader as much.
        for a in [
            "{type: not-llm-rubric, value: rude}",
            "{type: assert-set, assert: [{type: llm-rubric, value: ok}]}",
        ] {
            let doc = format!("prompts: [x]\nproviders: [echo]\ntests: [{{assert: [{a}]}}]\n");
            let (doc, f) = translate(&yaml(&doc), Path::new("."), "s", &Vec::new(), false);
            assert!(doc.is_none(), "{a}");
            assert_eq!(f[0].path, "defaultTest.options.provider", "{a}: {f:?}");
        }
    }

    #[test]
    fn only_promptfoo_shaped_documents_are_read_as_promptfoo() {
        assert!(is_promptfoo(
            &serde_json::json!({"prompts": [], "providers": []})
        ));
        assert!(!is_promptfoo(
            &serde_json::json!({"datasets": [], "suites": []})
        ));
        assert!(!is_promptfoo(&serde_json::json!({"evals": {}})));
        assert_eq!(parse_mapping("x=echo"), Some(("x".into(), Target::Echo)));
        assert_eq!(parse_mapping("=config:k"), None);
    }
}
