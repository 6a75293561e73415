//! promptfoo configs run as written (`eval run promptfooconfig.yaml`): the suites in
//! `tests/fixtures/promptfoo` run by the real `promptfoo` (npm) and by ai-runner against the
//! same scripted OpenAI-protocol server must agree on every case's pass / fail and score; bad
//! input is refused with findings naming the file, row and column, and nothing is called.

use std::path::PathBuf;

use ai_runner::demo::{ProviderServer, Reply};
use serde_json::Value;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/promptfoo")
        .join(name)
}

/// The fixture's files copied into `to` (the CLI's database lives beside them).
fn copy_fixture(name: &str, to: &Path) {
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// What the scripted model answers, by what the last message holds: the grader's requests
/// (promptfoo's grading prompt, `<Output>...`) first, then the suites' prompts.
fn answers() -> Vec<(String, String)> {
    let grader = |output: &str, pass: bool, score: f64| {
        (
            format!("<Output>\n{output}"),
            format!(r#"{{"reason": "scripted", "pass": {pass}, "score": {score}}}"#),
        )
    };
    let mut a = vec![
        grader("Sorry, your refund", true, 0.9),
        grader("Refund? Sure.", true, 0.7),
        grader("{\"status\"", true, 1.0),
        grader("I understand your", false, 0.2),
        grader("Hello! How", true, 1.0),
    ];
    for (needle, answer) in [
        ("into French: Hello world", "Bonjour le monde"),
        (
            "\"Hello world\" in French",
            "Hello world, en français: bonjour",
        ),
        ("into French: I'm hungry", "J'ai faim"),
        ("\"I'm hungry\" in French", "Je suis affamé"),
        ("into Pirate: Hello world", "Ahoy matey, world!"),
        ("\"Hello world\" in Pirate", "Hello there"),
        ("into Pirate: I'm hungry", "Arr, I be wantin' grub"),
        ("\"I'm hungry\" in Pirate", "Arr, food!"),
        ("into German: Good night", "Gute Nacht"),
        ("\"Good night\" in German", "Gute Nacht!"),
        (
            "I want a refund. Reply as a bot",
            "Sorry, your refund is on its way.",
        ),
        ("I want a refund. Reply as a human", "Refund? Sure."),
        (
            "Where is my order? Reply as JSON",
            "{\"status\": \"shipped\"}",
        ),
        (
            "You are useless. Reply as a bot",
            "I understand your frustration.",
        ),
        ("Hi. Reply as a bot", "Hello! How can I help?"),
    ] {
        a.push((needle.to_owned(), answer.to_owned()));
    }
    a
}

/// The scripted model (on a runtime of its own, which must outlive the test's commands).
fn scripted() -> (tokio::runtime::Runtime, ProviderServer) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(ProviderServer::start(vec![Reply::Lookup {
            answers: answers(),
            default: "I cannot help with that.".into(),
        }]))
        .unwrap();
    (rt, server)
}

/// A quickstarted directory whose configs `answerer` and `grader` (no prompt: bare models,
/// as promptfoo's providers are) point at `server`.
fn ai_runner_dir(dir: &Path, server: &ProviderServer) {
    assert!(ai_runner(dir, &[], &["quickstart"], None).status.success());
    std::fs::write(
        dir.join("models.yaml"),
        format!(
            "connections: [{{name: scripted, provider: custom, base_url: \"{}\", api_key: sk-scripted-1}}]\n\
             models: [{{name: gpt-4o-mini, connection: scripted}}, {{name: grader, connection: scripted}}]\n\
             configs: [{{config_key: answerer, model: gpt-4o-mini}}, {{config_key: grader, model: grader}}]\n",
            server.url()
        ),
    )
    .unwrap();
    let out = ai_runner(dir, &[], &["cfg", "gen", "-f", "models.yaml"], None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

const MAPPING: [&str; 4] = [
    "--provider",
    "openai:chat:gpt-4o-mini=config:answerer",
    "--provider",
    "openai:chat:grader=config:grader",
];

/// ai-runner's results of a fixture: (rendered prompt, pass, score) per case.
fn run_ai_runner(dir: &Path, name: &str) -> Vec<(String, bool, f64)> {
    copy_fixture(name, dir);
    let mut args = vec!["eval", "run", "promptfooconfig.yaml", "--out", "r.json"];
    args.extend(MAPPING);
    let out = ai_runner(dir, &[], &args, None);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{name}: {}",
        text(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    // The join key, the rendered prompt, comes from the same translation the run used.
    let doc: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir.join("promptfooconfig.yaml")).unwrap(),
    )
    .unwrap();
    let map: Vec<_> = MAPPING
        .iter()
        .skip(1)
        .step_by(2)
        .map(|m| ai_runner::eval::promptfoo::parse_mapping(m).unwrap())
        .collect();
    let (evals, findings) = ai_runner::eval::promptfoo::translate(&doc, dir, name, &map, false);
    assert!(
        findings
            .iter()
            .all(|f| f.severity != ai_runner::catalog::Severity::Error)
    );
    let evals = evals.unwrap();
    let prompt_of = |key: &str| {
        evals["datasets"][0]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .and_then(|c| c["prompt"].as_str())
            .unwrap()
            .to_owned()
    };
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                prompt_of(r["case_key"].as_str().unwrap()),
                r["pass"].as_bool().unwrap(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// promptfoo's results of a fixture: (rendered prompt, success, score) per result.
fn run_promptfoo(dir: &Path, name: &str, base: &str) -> Vec<(String, bool, f64)> {
    copy_fixture(name, dir);
    let out = ai_runner_tests::sdk::promptfoo_eval(dir, base, "sk-scripted-1", 4)
        .output()
        .unwrap();
    let written = dir.join("out.json");
    assert!(
        written.is_file(),
        "{name}: promptfoo wrote no results ({:?})\n{}\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let results: Value = serde_json::from_str(&std::fs::read_to_string(written).unwrap()).unwrap();
    results["results"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["prompt"]["raw"].as_str().unwrap().to_owned(),
                r["success"].as_bool().unwrap(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The same rendered prompt: equal text, or for chat prompts equal JSON (promptfoo's results
/// show a chat prompt's raw form compactly; the prompt sent is indented).
fn same_prompt(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[test]
#[ignore = "needs promptfoo from npm in target/npm (.ci/run installs it)"]
fn promptfoo_and_ai_runner_agree_on_every_case_of_the_same_suites() {
    let (_rt, server) = scripted();
    let base = server
        .url()
        .trim_end_matches("/chat/completions")
        .to_owned();
    for (name, cases) in [("translate", 10), ("support", 5), ("echo-scenarios", 8)] {
        let ours_dir = tempfile::tempdir().unwrap();
        ai_runner_dir(ours_dir.path(), &server);
        let ours = run_ai_runner(ours_dir.path(), name);
        let theirs_dir = tempfile::tempdir().unwrap();
        let theirs = run_promptfoo(theirs_dir.path(), name, &base);
        assert_eq!(ours.len(), cases, "{name}: {ours:?}");
        assert_eq!(theirs.len(), cases, "{name}: {theirs:?}");
        // Each suite has passing and failing cases: agreement is not all-pass by accident.
        assert!(
            ours.iter().any(|c| c.1) && ours.iter().any(|c| !c.1),
            "{name}: {ours:?}"
        );
        for (prompt, pass, score) in &ours {
            let Some((_, their_pass, their_score)) =
                theirs.iter().find(|t| same_prompt(&t.0, prompt))
            else {
                panic!("{name}: promptfoo has no result for {prompt:?}: {theirs:?}");
            };
            assert_eq!(
                pass, their_pass,
                "{name}: {prompt:?} pass (ours {score}, promptfoo {their_score})"
            );
            assert!(
                (score - their_score).abs() < 1e-6,
                "{name}: {prompt:?} score: ours {score}, promptfoo {their_score}"
            );
        }
    }
}

#[test]
fn a_promptfoo_config_runs_as_written_and_gates_like_promptfoo() {
    let (_rt, server) = scripted();
    let dir = tempfile::tempdir().unwrap();
    ai_runner_dir(dir.path(), &server);
    // In a directory of its own, as promptfoo's examples are: the suite takes its name, and
    // the files it names are read beside it.
    std::fs::create_dir(dir.path().join("translate")).unwrap();
    copy_fixture("translate", &dir.path().join("translate"));
    let config = "translate/promptfooconfig.yaml";
    let dry = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "-c",
            config,
            "--dry-run",
            MAPPING[0],
            MAPPING[1],
        ],
        None,
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("suite translate: 10 call(s)"),
        "{}",
        text(&dry.stdout)
    );
    assert!(server.requests().is_empty(), "a dry run calls nothing");

    // Some cases fail: the gate (every case passes, as promptfoo's exit code says) fails.
    let run = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", config, MAPPING[0], MAPPING[1], "--json"],
        None,
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["suite"], "translate");
    assert_eq!(report["targets"][0]["target"], "answerer");
    assert_eq!(report["results"].as_array().unwrap().len(), 10);
    assert_eq!(server.requests().len(), 10, "one call per case");
    // "Translate into French: Hello world" -> "Bonjour le monde": both assertions pass.
    let first = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["case_key"] == "p1.t1")
        .unwrap();
    assert_eq!(first["pass"], true, "{first}");
    assert_eq!(first["output"], "Bonjour le monde");

    // A provider without a mapping: refused with the flag that maps it, nothing called.
    let unmapped = ai_runner(dir.path(), &[], &["eval", "run", config], None);
    assert_eq!(unmapped.status.code(), Some(2));
    let out = text(&unmapped.stdout) + &text(&unmapped.stderr);
    assert!(out.contains("providers[0]: UNSUPPORTED_FEATURE"), "{out}");
    assert!(
        out.contains("--provider 'openai:chat:gpt-4o-mini=config:KEY'"),
        "{out}"
    );
    assert_eq!(server.requests().len(), 10, "nothing more was called");
}

#[test]
fn bad_promptfoo_input_is_refused_naming_file_row_and_column_with_nothing_called() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(ProviderServer::start(vec![Reply::content("x")]))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ai_runner_dir(dir.path(), &server);
    std::fs::write(
        dir.path().join("promptfooconfig.yaml"),
        "prompts: [\"Hello {{name}}\", \"file://missing.txt\"]\n\
         providers: [openai:chat:gpt-4o-mini]\n\
         tests:\n\
         \x20 - file://cases.csv\n\
         \x20 - vars: {name: Ada}\n\
         \x20   assert:\n\
         \x20     - {type: sounds-right}\n\
         \x20     - {type: regex, value: \"(\"}\n\
         \x20     - {type: javascript, value: output.length > 1}\n\
         \x20     - {type: contains, value: \"{{nope}}\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("cases.csv"), "name,__expectd\nBob,x\n").unwrap();
    let out = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "promptfooconfig.yaml",
            MAPPING[0],
            MAPPING[1],
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    for needle in [
        "prompts[1]: IO_ERROR",
        "cases.csv:1:__expectd: UNKNOWN_KEY",
        "tests[1].assert[0].type: BAD_TYPE",
        "tests[1].assert[1].value: BAD_TYPE",
        "tests[1].assert[2].type: UNSUPPORTED_FEATURE",
        "tests[1].assert[3].value: UNFILLED_PLACEHOLDER",
        "SUITE_INVALID",
    ] {
        assert!(all.contains(needle), "{needle} in {all}");
    }
    assert!(server.requests().is_empty(), "nothing was called");
}

/// `node promptfoo ARGS` in `dir`.
fn promptfoo(dir: &Path, args: &[&str]) -> Output {
    ai_runner_tests::sdk::promptfoo(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs promptfoo from npm in target/npm (.ci/run installs it)"]
fn promptfoo_imports_a_run_written_in_its_format_and_exports_the_same_verdicts() {
    let (_rt, server) = scripted();
    let dir = tempfile::tempdir().unwrap();
    ai_runner_dir(dir.path(), &server);
    copy_fixture("support", dir.path());
    let mut args = vec![
        "eval",
        "run",
        "promptfooconfig.yaml",
        "--out",
        "r.promptfoo.json",
        "--json",
    ];
    args.extend(MAPPING);
    let out = ai_runner(dir.path(), &[], &args, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("r.promptfoo.json")).unwrap(),
    )
    .unwrap();
    let id = written["evalId"].as_str().unwrap().to_owned();

    let imported = promptfoo(dir.path(), &["import", "r.promptfoo.json"]);
    assert!(
        imported.status.success(),
        "{}{}",
        text(&imported.stdout),
        text(&imported.stderr)
    );
    let exported = promptfoo(dir.path(), &["export", "eval", &id, "-o", "back.json"]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let back: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("back.json")).unwrap())
            .unwrap();
    let theirs = back["results"]["results"].as_array().unwrap();
    let ours = report["results"].as_array().unwrap();
    assert_eq!(theirs.len(), ours.len());
    for r in ours {
        let key = r["case_key"].as_str().unwrap();
        let t = theirs
            .iter()
            .find(|t| t["metadata"]["ai_runner"]["case_key"] == key)
            .unwrap_or_else(|| panic!("{key} is not in promptfoo's export: {back}"));
        assert_eq!(t["success"], r["pass"], "{key}");
        assert!((t["score"].as_f64().unwrap() - r["score"].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(t["response"]["output"], r["output"], "{key}");
    }
}

#[test]
fn an_imported_promptfoo_suite_runs_from_the_database_and_exports_back_unchanged() {
    let (_rt, server) = scripted();
    let dir = tempfile::tempdir().unwrap();
    ai_runner_dir(dir.path(), &server);
    std::fs::create_dir(dir.path().join("translate")).unwrap();
    copy_fixture("translate", &dir.path().join("translate"));
    let config = "translate/promptfooconfig.yaml";
    let import = |extra: &[&str]| {
        let mut args = vec!["eval", "import", config, MAPPING[0], MAPPING[1]];
        args.extend(extra);
        let out = ai_runner(dir.path(), &[], &args, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let dry = import(&["--dry-run"]);
    assert!(dry.contains("create    dataset translate"), "{dry}");
    assert!(dry.contains("create    suite translate"), "{dry}");
    assert!(
        dry.contains("suite translate: 10 case(s); nothing written"),
        "{dry}"
    );
    let applied = import(&[]);
    assert_eq!(applied.matches("create ").count(), 12, "{applied}");

    // The stored suite runs without the file: the same cases, prompts and verdicts.
    let from_file = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", config, MAPPING[0], MAPPING[1], "--json"],
        None,
    );
    let from_db = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "translate", "--json"],
        None,
    );
    assert_eq!(from_db.status.code(), Some(1), "{}", text(&from_db.stderr));
    let verdicts = |o: &Output| {
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut v: Vec<(String, bool, String)> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["case_key"].as_str().unwrap().to_owned(),
                    c["pass"].as_bool().unwrap(),
                    c["score"].to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(verdicts(&from_db), verdicts(&from_file));
    assert_eq!(verdicts(&from_db).len(), 10);

    // Import, export, import: nothing changes.
    let again = import(&[]);
    assert!(
        again
            .lines()
            .filter(|l| !l.starts_with("suite "))
            .all(|l| l.starts_with("unchanged")),
        "{again}"
    );
    let out = ai_runner(dir.path(), &[], &["cfg", "export", "--out", "e.yaml"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = std::fs::read_to_string(dir.path().join("e.yaml")).unwrap();
    assert!(
        exported.contains("Translate into French: Hello world"),
        "the prompts are kept"
    );
    let regen = ai_runner(
        dir.path(),
        &[],
        &["cfg", "gen", "-f", "e.yaml", "--dry-run"],
        None,
    );
    let regen = text(&regen.stdout);
    assert!(
        regen
            .lines()
            .filter(|l| l.contains(" case ") || l.contains(" suite "))
            .all(|l| l.starts_with("unchanged")),
        "{regen}"
    );
    assert!(regen.contains("unchanged case translate:p1.t1"), "{regen}");

    // The file is edited (its last row goes): re-importing retires that row's cases.
    let csv = dir.path().join("translate/tests.csv");
    let rows = std::fs::read_to_string(&csv).unwrap();
    let kept: Vec<&str> = rows.lines().collect();
    std::fs::write(&csv, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let edited = import(&[]);
    assert!(
        edited.contains("update    case translate:p1.t5"),
        "{edited}"
    );
    assert!(
        edited.contains("update    case translate:p2.t5"),
        "{edited}"
    );
    assert!(edited.contains("suite translate: 8 case(s)"), "{edited}");
    let rerun = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "translate", "--json"],
        None,
    );
    assert_eq!(verdicts(&rerun).len(), 8, "retired cases leave the runs");
}

#[test]
fn with_skip_unsupported_what_cannot_be_honoured_is_reported_not_evaluated_never_passed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    std::fs::write(
        dir.path().join("promptfooconfig.yaml"),
        "prompts: [\"Hello {{name}}\"]\n\
         providers: [echo]\n\
         tests:\n\
         \x20 - vars: {name: Ada}\n\
         \x20   assert:\n\
         \x20     - {type: javascript, value: output.length > 1}\n\
         \x20     - {type: contains, value: Ada}\n\
         \x20 - vars: {name: Bob}\n\
         \x20   assert:\n\
         \x20     - {type: similar, value: Hi Bob}\n",
    )
    .unwrap();
    let refused = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "promptfooconfig.yaml"],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let run = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "promptfooconfig.yaml",
            "--skip-unsupported",
            "--json",
        ],
        None,
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let all = text(&run.stdout) + &text(&run.stderr);
    assert!(
        all.contains("tests[0].assert[0]: UNSUPPORTED_FEATURE"),
        "{all}"
    );
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    let ada = results.iter().find(|r| r["case_key"] == "t1").unwrap();
    assert_eq!(ada["pass"], true, "graded on what can be checked: {ada}");
    assert_eq!(ada["assertions"][0]["type"], "javascript");
    assert_eq!(ada["assertions"][0]["verdict"], "not_evaluated");
    let bob = results.iter().find(|r| r["case_key"] == "t2").unwrap();
    assert_eq!(bob["pass"], false, "nothing checked is never a pass: {bob}");
    assert_eq!(bob["assertions"][0]["type"], "similar");
    assert_eq!(bob["assertions"][0]["verdict"], "not_evaluated");
}
