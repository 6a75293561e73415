//! `eval run` as a CI job runs it: exit codes, gates, reports.

use super::*;

const SUITE: &str = r#"
datasets:
  - name: moods
    cases:
      - {key: release, vars: {TEXT: 今天发布很顺利}, expected: {情绪: 积极}, tags: [smoke]}
      - {key: outage, vars: {TEXT: 服务宕机了}, expected: {情绪: 消极}}
suites:
  - name: moods
    dataset: moods
    targets: [{config: quickstart-demo}, {route: quickstart/demo-route}]
    assert:
      - {type: is-json}
      - {type: json-path, path: $.情绪, value: "{{expected.情绪}}", metric: sentiment}
    gates: {min_pass_rate: 1.0}
"#;

#[test]
fn a_suite_runs_reports_and_gates_with_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    std::fs::write(dir.path().join("evals.yaml"), SUITE).unwrap();

    let dry = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "moods", "--dry-run"],
        None,
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("4 call(s)"),
        "{}",
        text(&dry.stdout)
    );

    // The demo answers 积极 to everything: the outage case fails on both targets.
    let gated = ai_runner(
        dir.path(),
        &[],
        &[
            "eval", "run", "moods", "--out", "r.json", "--out", "r.xml", "--out", "r.html",
        ],
        None,
    );
    assert_eq!(gated.status.code(), Some(1), "{}", text(&gated.stderr));
    assert!(text(&gated.stderr).contains("EVAL_GATE_FAILED: "));
    let out = text(&gated.stdout);
    assert!(out.contains("gate: FAILED"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 4);
    assert_eq!(json["targets"][0]["passed"], 1);
    assert_eq!(json["targets"][0]["metrics"]["sentiment"], 0.5);
    let junit = junit_parser::from_reader(std::io::BufReader::new(
        std::fs::File::open(dir.path().join("r.xml")).unwrap(),
    ))
    .unwrap();
    assert_eq!(
        (junit.tests, junit.failures, junit.errors),
        (4, 2, 0),
        "{junit:?}"
    );
    let suites: Vec<(&str, u64, u64)> = junit
        .suites
        .iter()
        .map(|s| (s.name.as_str(), s.tests, s.failures))
        .collect();
    assert_eq!(
        suites,
        [("quickstart-demo", 2, 1), ("quickstart/demo-route", 2, 1)]
    );
    let outage = junit.suites[0]
        .cases
        .iter()
        .find(|c| c.original_name == "outage#0")
        .unwrap_or_else(|| panic!("{:?}", junit.suites[0].cases));
    assert!(outage.status.is_failure(), "{outage:?}");
    assert_eq!(outage.classname.as_deref(), Some("moods.quickstart-demo"));
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains("id=\"targets\"") && html.contains("quickstart/demo-route"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    let passing = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "moods",
            "--min-pass-rate",
            "0.5",
            "--tag",
            "smoke",
        ],
        None,
    );
    assert!(passing.status.success(), "{}", text(&passing.stderr));
    let progress = text(&passing.stderr);
    assert!(
        progress.contains("[2/2]"),
        "plain progress lines: {progress}"
    );

    let cutoff = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "moods",
            "--min-pass-rate",
            "0",
            "--cutoff",
            "sentiment=0.9",
        ],
        None,
    );
    assert_eq!(cutoff.status.code(), Some(1));

    // Every run is stored: listed, shown again, compared, and a baseline for the next.
    let list = ai_runner(
        dir.path(),
        &[],
        &["eval", "list", "--suite", "moods", "--json"],
        None,
    );
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|r| r["status"] == "finished"));
    let (newest, oldest) = (
        runs[0]["run_key"].as_str().unwrap(),
        runs[2]["run_key"].as_str().unwrap(),
    );
    let shown = ai_runner(
        dir.path(),
        &[],
        &["eval", "show", oldest, "--out", "again.json"],
        None,
    );
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("again.json")).unwrap())
            .unwrap();
    assert_eq!(
        again["targets"], json["targets"],
        "the stored run reads back the same"
    );
    let cmp = ai_runner(dir.path(), &[], &["eval", "compare", oldest, newest], None);
    assert!(cmp.status.success(), "{}", text(&cmp.stderr));
    assert!(
        text(&cmp.stdout).contains("quickstart-demo"),
        "{}",
        text(&cmp.stdout)
    );
    let base = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "moods",
            "--min-pass-rate",
            "0",
            "--baseline",
            "last",
            "--max-regression",
            "0",
        ],
        None,
    );
    assert!(
        base.status.success(),
        "no regression: {}",
        text(&base.stderr)
    );
    let unknown = ai_runner(dir.path(), &[], &["eval", "show", "nope"], None);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_run_killed_mid_way_resumes_without_redoing_finished_cases() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow = rt
        .block_on(ai_runner::demo::ProviderServer::start(vec![
            ai_runner::demo::Reply::Delayed(
                std::time::Duration::from_millis(400),
                Box::new(ai_runner::demo::Reply::content(r#"{"情绪": "积极"}"#)),
            ),
        ]))
        .unwrap();
    let catalog = format!(
        "connections: [{{name: slow, provider: custom, base_url: \"{}\", api_key: sk-slow-1}}]\n\
             models: [{{name: slow-model, connection: slow}}]\n\
             prompts: [{{name: mood, version: v1, messages: [{{role: user, content: \"{{{{TEXT}}}}\"}}], response_format: {{type: json_object}}}}]\n\
             configs: [{{config_key: slow, model: slow-model, prompt: mood@v1}}]\n",
        slow.url()
    );
    std::fs::write(dir.path().join("slow.yaml"), catalog).unwrap();
    let applied = ai_runner(dir.path(), &[], &["cfg", "gen", "-f", "slow.yaml"], None);
    assert!(
        applied.status.success(),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    let cases: Vec<String> = (0..6)
        .map(|i| {
            format!("      - {{key: c{i}, vars: {{TEXT: 第{i}条}}, expected: {{情绪: 积极}}}}")
        })
        .collect();
    std::fs::write(
            dir.path().join("evals.yaml"),
            format!(
                "datasets:\n  - name: d\n    cases:\n{}\nsuites:\n  - name: s\n    dataset: d\n    targets: [{{config: slow}}]\n    concurrency: 1\n    assert: [{{type: json-path, path: $.情绪, value: \"{{{{expected.情绪}}}}\"}}]\n",
                cases.join("\n")
            ),
        )
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ai-runner"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AI_RUNNER_DEMO_PORT", "0")
        .args(["eval", "run", "s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("[2/6]") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let list = ai_runner(dir.path(), &[], &["eval", "list", "--json"], None);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let run = runs[0]["run_key"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["status"], "running", "killed before it finished");
    let before = rt.block_on(async { slow.requests().len() });
    assert!((2..=3).contains(&before), "{before}");

    let resumed = ai_runner(dir.path(), &[], &["eval", "resume", &run, "--json"], None);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["run_id"], run.as_str());
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| r["pass"] == true));
    let keys: Vec<&str> = results
        .iter()
        .map(|r| r["case_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["c0", "c1", "c2", "c3", "c4", "c5"]);
    let after = rt.block_on(async { slow.requests().len() });
    assert!(
        (6..=7).contains(&after),
        "the finished cases were not called again: {before} then {after}"
    );
    let list = ai_runner(dir.path(), &[], &["eval", "list", "--json"], None);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs[0]["status"], "finished");
}

#[test]
fn a_bad_suite_names_each_problem_and_calls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    let bad = SUITE
        .replace("{type: is-json}", "{type: looks-right}")
        .replace("{config: quickstart-demo}", "{config: nope}");
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    let out = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "moods", "-f", "bad.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("SUITE_INVALID: "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("suites[0].assert[0].type: BAD_TYPE"),
        "{}",
        text(&out.stdout)
    );
    let unknown_target = SUITE.replace("{config: quickstart-demo}", "{config: nope}");
    std::fs::write(dir.path().join("t.yaml"), &unknown_target).unwrap();
    let out = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "moods", "-f", "t.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("target nope: UNKNOWN_REFERENCE"),
        "{}",
        text(&out.stdout)
    );
    let missing = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "other", "-f", "t.yaml"],
        None,
    );
    assert_eq!(missing.status.code(), Some(2));
    let jobs = ai_runner(dir.path(), &[], &["media", "jobs", "--json"], None);
    assert!(jobs.status.success());
}

#[test]
fn an_evals_section_applies_with_cfg_gen_exports_and_runs_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let qs = ai_runner(dir.path(), &[], &["quickstart"], None);
    assert!(qs.status.success(), "{}", text(&qs.stderr));
    let qs_out = text(&qs.stdout);
    assert!(
        qs_out.contains("== evaluation: suite quickstart") && qs_out.contains("gate: passed"),
        "{qs_out}"
    );
    let html = std::fs::read_to_string(dir.path().join("tmp/quickstart-eval.html")).unwrap();
    assert!(html.contains("quickstart/demo-route"));

    let catalog = format!("evals:\n{}", SUITE.replace('\n', "\n  "));
    std::fs::write(dir.path().join("catalog.yaml"), &catalog).unwrap();
    let verified = ai_runner(
        dir.path(),
        &[],
        &["cfg", "verify", "-f", "catalog.yaml", "--db-check"],
        None,
    );
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert!(
        text(&verified.stdout).contains("create    suite moods"),
        "{}",
        text(&verified.stdout)
    );
    let applied = ai_runner(dir.path(), &[], &["cfg", "gen", "-f", "catalog.yaml"], None);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(
        text(&applied.stderr).contains("applied 4 change(s)"),
        "dataset, 2 cases, suite: {}",
        text(&applied.stderr)
    );
    let again = ai_runner(dir.path(), &[], &["cfg", "gen", "-f", "catalog.yaml"], None);
    assert!(text(&again.stderr).contains("applied 0 change(s)"));

    // Exported and applied back: nothing changes.
    let export = ai_runner(
        dir.path(),
        &[],
        &["cfg", "export", "--out", "exported.yaml"],
        None,
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let exported = std::fs::read_to_string(dir.path().join("exported.yaml")).unwrap();
    assert!(exported.contains("\nevals:\n"), "{exported}");
    let back = ai_runner(
        dir.path(),
        &[],
        &["cfg", "gen", "-f", "exported.yaml"],
        None,
    );
    assert!(back.status.success(), "{}", text(&back.stderr));
    assert!(
        text(&back.stderr).contains("applied 0 change(s)"),
        "{}",
        text(&back.stderr)
    );

    // No file: the suite comes from the database. The gate (pass rate 1.0) fails: exit 1.
    let run = ai_runner(dir.path(), &[], &["eval", "run", "moods"], None);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let run = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "run",
            "moods",
            "--min-pass-rate",
            "0.5",
            "--stop-after-failures",
            "3",
        ],
        None,
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let none = ai_runner(dir.path(), &[], &["eval", "run", "absent"], None);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).starts_with("SUITE_INVALID: "));

    // Datasets from the audit trail (the evaluation's own calls are left out) and listed.
    let harvest = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "dataset",
            "add-from-audit",
            "harvested",
            "--config",
            "quickstart-demo",
        ],
        None,
    );
    assert!(harvest.status.success(), "{}", text(&harvest.stderr));
    assert!(
        text(&harvest.stderr).contains("dataset harvested: 2 case(s) added"),
        "the quickstart's call and its route's answer: {}",
        text(&harvest.stderr)
    );
    let twice = ai_runner(
        dir.path(),
        &[],
        &[
            "eval",
            "dataset",
            "add-from-audit",
            "harvested",
            "--config",
            "quickstart-demo",
        ],
        None,
    );
    assert!(text(&twice.stderr).contains("0 case(s) added, 2 already there"));
    let list = ai_runner(
        dir.path(),
        &[],
        &["eval", "dataset", "list", "--json"],
        None,
    );
    let sets: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["harvested", "moods", "quickstart"]);

    // A bad evals section: every problem by path, exit 1, nothing written.
    let bad = catalog
        .replace("dataset: moods", "dataset: nowhere")
        .replace("{type: is-json}", "{type: regex, value: \"(\"}");
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let out = ai_runner(dir.path(), &[], &["cfg", "gen", "-f", "bad.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    let found = text(&out.stdout);
    assert!(
        found.contains("evals.suites[0].dataset: UNKNOWN_REFERENCE"),
        "{found}"
    );
    assert!(
        found.contains("evals.suites[0].assert[0].value: BAD_TYPE"),
        "{found}"
    );
    let list = ai_runner(
        dir.path(),
        &[],
        &["eval", "dataset", "list", "--json"],
        None,
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap(),
        sets,
        "nothing written"
    );
}
