//! The evaluation catalog: an `evals:` section verified, applied, exported and run from the
//! database on SQLite and MariaDB; bad input named by its YAML path with nothing written;
//! datasets grown from the audit trail and from stored audio; media cases resolved like uploads.

use std::sync::Arc;

use ai_runner::Code;
use ai_runner::catalog::{Action, Catalog, Severity};
use ai_runner::eval::harvest;
use ai_runner::eval::run::{self, Options, Start};
use ai_runner::eval::suite::{catalog_evals, read_evals, read_suite};
use ai_runner::ports::{EvalStore, ObjectStore};
use ai_runner::run::{MediaSource, RunContext};
use ai_runner_tests::{Backend, S3Server, Seed, TestDb, runner, seed};
use serde_json::{Value, json};

use super::eval::providers;

/// The cases of the first dataset of `doc`, read like a file's, as the catalog stores them.
fn stored_cases(doc: &Value) -> Vec<ai_runner::model::eval::StoredCase> {
    read_evals(doc, std::path::Path::new("."), &Default::default())
        .0
        .unwrap()
        .datasets
        .remove(0)
        .cases
        .iter()
        .map(|c| c.stored())
        .collect()
}

fn evals_doc() -> Value {
    json!({"evals": {
        "datasets": [{"name": "moods", "description": "情绪", "cases": [
            {"key": "happy", "vars": {"TEXT": "太好了"}, "expected": {"情绪": "积极"}, "tags": ["smoke"]},
            {"key": "sad", "vars": {"TEXT": "真糟糕"}, "expected": {"情绪": "消极"}, "threshold": 0.5},
            {"key": "old", "vars": {"TEXT": "旧"}, "active": false}
        ], "cases_file": "more.jsonl"}],
        "suites": [{"name": "moods", "dataset": "moods",
                    "targets": [{"config": "good"}, {"config": "bad"}],
                    "assert": [{"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}"}],
                    "gates": {"min_pass_rate": 0.5}}]
    }})
}

async fn catalog_round_trip(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let _servers = providers(&tdb).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("more.jsonl"),
        "{\"key\": \"calm\", \"vars\": {\"TEXT\": \"还行\"}, \"expected\": {\"情绪\": \"中性\"}}\n",
    )
    .unwrap();
    let db = tdb.db();
    let known = db.snapshot().await.unwrap().known();
    let (evals, findings) = catalog_evals(
        &evals_doc(),
        dir.path(),
        &Catalog::default(),
        &known,
        &db.dataset_names().await.unwrap(),
    );
    assert!(findings.is_empty(), "{findings:?}");
    let evals = evals.unwrap();
    let first = db.apply_evals(&evals.catalog()).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|i| (i.kind.as_str(), i.name.as_str(), i.action))
            .collect::<Vec<_>>(),
        [
            ("dataset", "moods", Action::Create),
            ("case", "moods:happy", Action::Create),
            ("case", "moods:sad", Action::Create),
            ("case", "moods:old", Action::Create),
            ("case", "moods:calm", Action::Create),
            ("suite", "moods", Action::Create),
        ]
    );
    assert!(
        db.apply_evals(&evals.catalog())
            .await
            .unwrap()
            .iter()
            .all(|i| i.action == Action::Unchanged),
        "applying twice changes nothing"
    );

    // Export: the stored catalog reads back into the same datasets and suites, and applying
    // what was exported changes nothing.
    let exported = db.evals_document(None).await.unwrap().unwrap();
    let (back, f) = read_evals(&exported, dir.path(), &Default::default());
    assert!(f.is_empty(), "{f:?}");
    let back = back.unwrap();
    assert_eq!(back.to_document(), exported);
    assert_eq!(back.datasets[0].cases.len(), 4, "the inactive case is kept");
    assert_eq!(back.datasets[0].description.as_deref(), Some("情绪"));
    assert!(
        db.apply_evals(&back.catalog())
            .await
            .unwrap()
            .iter()
            .all(|i| i.action == Action::Unchanged)
    );
    let yaml = serde_yaml_ng::to_string(&exported).unwrap();
    let reparsed = ai_runner::catalog::parse_yaml(&yaml).unwrap();
    assert_eq!(reparsed, exported, "the YAML export round-trips");

    // A suite runs from the database, with no file.
    let doc = db.suite_document("moods").await.unwrap().unwrap();
    let suite = read_suite(&doc, "moods", std::path::Path::new("."))
        .0
        .unwrap();
    assert_eq!(suite.cases.len(), 3, "active cases only");
    let r = runner(&tdb.settings(&[]));
    let how = Start {
        trigger: ai_runner::Trigger::Cli,
        baseline: None,
    };
    let report = run::start(&r, &suite, &Options::default(), &how, &|_, _, _| {})
        .await
        .unwrap();
    assert_eq!(report.results.len(), 6);
    let good = &report.targets[0];
    assert_eq!((good.target.as_str(), good.passed), ("good", 1));
    assert!(db.suite_document("nope").await.unwrap().is_none());
    r.store().close().await;
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn an_evals_section_applies_exports_and_runs_from_the_database_on_sqlite() {
    catalog_round_trip(Backend::Sqlite).await;
}

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[tokio::test]
async fn an_evals_section_applies_exports_and_runs_from_the_database_on_mariadb() {
    catalog_round_trip(Backend::MariaDb).await;
}

#[tokio::test]
async fn bad_evals_are_named_by_their_yaml_path_and_nothing_is_written() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _servers = providers(&tdb).await;
    let db = tdb.db();
    let known = db.snapshot().await.unwrap().known();
    let bad = json!({"evals": {
        "datasets": [{"name": "d", "cases": [
            {"key": "a", "vars": {"TEXT": "x"}, "assert": [{"type": "sounds-right"}]},
            {"key": "b", "assert": [{"type": "regex", "value": "(unclosed"}]}
        ]}],
        "suites": [
            {"name": "s1", "dataset": "missing", "targets": [{"config": "good"}]},
            {"name": "s2", "dataset": "d", "targets": [{"config": "no-such"}, {"route": "eval/none"}]}
        ]
    }});
    let (evals, findings) = catalog_evals(
        &bad,
        std::path::Path::new("."),
        &Catalog::default(),
        &known,
        &Default::default(),
    );
    assert!(evals.is_none());
    let found: Vec<(&str, Code)> = findings.iter().map(|f| (f.path.as_str(), f.code)).collect();
    for expected in [
        ("evals.datasets[0].cases[0].assert[0].type", Code::BadType),
        ("evals.datasets[0].cases[1].assert[0].value", Code::BadType),
        ("evals.suites[0].dataset", Code::UnknownReference),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    // The targets are checked once the rest reads.
    let targets_only = json!({"evals": {
        "datasets": [{"name": "d", "cases": [{"key": "a", "vars": {"TEXT": "x"}}]}],
        "suites": [{"name": "s2", "dataset": "d", "targets": [{"config": "no-such"}, {"route": "eval/none"}, {"config": "good"}]}]
    }});
    let (evals, findings) = catalog_evals(
        &targets_only,
        std::path::Path::new("."),
        &Catalog::default(),
        &known,
        &Default::default(),
    );
    assert!(evals.is_none());
    let found: Vec<(&str, Code, Severity)> = findings
        .iter()
        .map(|f| (f.path.as_str(), f.code, f.severity))
        .collect();
    assert_eq!(
        found,
        [
            (
                "evals.suites[0].targets[0]",
                Code::UnknownReference,
                Severity::Error
            ),
            (
                "evals.suites[0].targets[1]",
                Code::UnknownReference,
                Severity::Error
            ),
        ]
    );
    // Without the database's names the same targets are warnings (checked at run time).
    let (evals, findings) = catalog_evals(
        &targets_only,
        std::path::Path::new("."),
        &Catalog::default(),
        &Default::default(),
        &Default::default(),
    );
    assert!(evals.is_some());
    assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    for table in ["ai_eval_dataset", "ai_eval_case", "ai_eval_suite"] {
        assert_eq!(db.count(table).await.unwrap(), 0, "{table}");
    }
    db.close().await;
}

#[tokio::test]
async fn audit_rows_and_stored_audio_become_dataset_cases_once() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let _servers = providers(&tdb).await;
    let r = runner(&tdb.settings(&[]));
    let ctx = RunContext {
        trigger: ai_runner::Trigger::Cli,
        ..RunContext::default()
    };
    for text in ["早上好", "下雨了", "{\"嵌套\": 1}"] {
        let mut vars = serde_json::Map::new();
        vars.insert("TEXT".into(), json!(text));
        assert!(r.run_once("good", &vars, &ctx).await.is_ok());
    }
    // An evaluation's own calls are not harvested.
    let eval_ctx = RunContext {
        trigger: ai_runner::Trigger::Eval,
        ..RunContext::default()
    };
    let mut vars = serde_json::Map::new();
    vars.insert("TEXT".into(), json!("评测"));
    assert!(r.run_once("good", &vars, &eval_ctx).await.is_ok());

    let db = r.store();
    let rows = db.recent_answers(Some("good"), None, 50).await.unwrap();
    assert_eq!(rows.len(), 3);
    let cfg = ai_runner::ports::Store::resolve_config(db, "good")
        .await
        .unwrap();
    let prompt = cfg.prompt.unwrap();
    let mut prompts = std::collections::BTreeMap::new();
    prompts.insert("good".to_owned(), (prompt.messages.clone(), None));
    let h = harvest::from_audit_rows(&rows, &prompts);
    assert_eq!(h.skipped, 0);
    let texts: Vec<&str> = h
        .cases
        .iter()
        .map(|c| c["vars"]["TEXT"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["{\"嵌套\": 1}", "下雨了", "早上好"], "newest first");
    assert_eq!(h.cases[0]["expected"], json!({"情绪": "积极"}));
    let doc = json!({"datasets": [{"name": "harvested", "cases": h.cases}]});
    let cases = stored_cases(&doc);
    assert_eq!(db.add_cases("harvested", &cases, "audit").await.unwrap(), 3);
    assert_eq!(
        db.add_cases("harvested", &cases, "audit").await.unwrap(),
        0,
        "the same rows add nothing"
    );

    // Stored audio under a prefix: each audio object is a media case.
    let objects = tempfile::tempdir().unwrap();
    let store = ai_runner::objects::LocalStore::new(objects.path());
    for key in [
        "calls/a.wav",
        "calls/sub/b.mp3",
        "calls/notes.txt",
        "other/c.wav",
    ] {
        store
            .put("bucket", key, b"RIFF".to_vec(), "audio/wav")
            .await
            .unwrap();
    }
    let keys = store.list("bucket", "calls/", 100).await.unwrap();
    assert_eq!(keys, ["calls/a.wav", "calls/notes.txt", "calls/sub/b.mp3"]);
    let media = harvest::from_objects("bucket", &keys);
    let doc = json!({"datasets": [{"name": "calls", "cases": media}]});
    let cases = stored_cases(&doc);
    assert_eq!(cases.len(), 2);
    assert_eq!(
        cases[1].media,
        Some(("bucket".to_owned(), "calls/sub/b.mp3".to_owned()))
    );
    assert_eq!(cases[1].tags, ["from-objects"]);
    assert_eq!(db.add_cases("calls", &cases, "objects").await.unwrap(), 2);
    let stored = db.evals_document(None).await.unwrap().unwrap();
    assert_eq!(stored["datasets"][0]["name"], "calls");
    assert_eq!(
        stored["datasets"][0]["cases"][0]["media"],
        json!({"bucket": "bucket", "key": "calls/a.wav"})
    );
    db.close().await;
}

#[tokio::test]
async fn a_media_case_is_called_with_a_presigned_url_whose_signature_is_never_stored() {
    use ai_runner::demo::{ProviderServer, Reply};
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let s3 = S3Server::start(&["calls"]).await;
    let audio = ai_runner::demo::wav_tone(200, 440.0);
    s3.store()
        .put("calls", "in/hello.wav", audio, "audio/wav")
        .await
        .unwrap();
    let server = ProviderServer::start(vec![Reply::content("听到了")])
        .await
        .unwrap();
    let url = server.url();
    let mut s = Seed::text("listen", &url);
    s.messages = json!([{"role": "user", "content": "转写 {{MEDIA_FORMAT}} 音频: {{MEDIA_URL}}"}]);
    s.variables = None;
    seed(&tdb.db(), &s).await;
    let settings = tdb.settings(&[]);
    let r = runner(&settings).with_media(Some(MediaSource {
        store: Arc::new(s3.store()),
        settings: settings.objects.clone(),
    }));
    let doc = json!({
        "datasets": [{"name": "calls", "cases": [
            {"key": "hello", "media": {"bucket": "calls", "key": "in/hello.wav"}},
            {"key": "gone", "media": {"bucket": "calls", "key": "in/missing.wav"}}
        ]}],
        "suites": [{"name": "s", "dataset": "calls", "targets": [{"config": "listen"}],
                    "assert": [{"type": "contains", "value": "听到"}]}]
    });
    let suite = read_suite(&doc, "s", std::path::Path::new(".")).0.unwrap();
    let report = run::run(&r, &suite, &Options::default(), &|_, _, _| {}).await;
    let hello = &report.results[0];
    assert!(hello.pass, "{hello:?}");
    let sent = server.requests();
    assert_eq!(sent.len(), 1, "the missing object is never sent");
    let prompt = sent[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.starts_with("转写 wav 音频: http"), "{prompt}");
    assert!(prompt.contains("X-Amz-Signature="), "{prompt}");
    let row = r
        .store()
        .audit_row(hello.audit_ids[0])
        .await
        .unwrap()
        .unwrap();
    let stored = row["request_body_json"].as_str().unwrap();
    assert!(!stored.contains("X-Amz-Signature"), "{stored}");
    assert!(stored.contains("[redacted]"), "{stored}");
    let gone = &report.results[1];
    assert_eq!(gone.error_code.as_deref(), Some("OBJECT_NOT_FOUND"));
    assert!(gone.audit_ids.is_empty());
    r.store().close().await;
}
