//! The upload pipeline from the command line: jobs, mappings, processing on demand.

use super::*;

#[test]
fn media_commands_list_jobs_manage_mappings_and_reprocess_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let out = ai_runner(
        dir.path(),
        &[("AI_RETRY_BASE_MS", "1")],
        &["quickstart"],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("\"outcome\": \"succeeded\""),
        "the quickstart upload was processed: {stdout}"
    );
    let wav = std::fs::read_dir(
        dir.path()
            .join("ai-runner-objects/quickstart-media/uploads"),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap()
    .file_name()
    .into_string()
    .unwrap();
    let key = format!("uploads/{wav}");
    assert!(
        dir.path()
            .join(format!(
                "ai-runner-objects/quickstart-media/ai-runner/results/{key}.result.json"
            ))
            .is_file()
    );

    let jobs = text(&ai_runner(dir.path(), &[], &["media", "jobs"], None).stdout);
    assert!(
        jobs.contains(&format!("#1 succeeded s3://quickstart-media/{key}")),
        "{jobs}"
    );
    let maps = text(&ai_runner(dir.path(), &[], &["media", "map", "list"], None).stdout);
    assert!(
        maps.contains("bucket=quickstart-media prefix=\"uploads/\""),
        "{maps}"
    );

    let refused = ai_runner(
        dir.path(),
        &[],
        &["media", "map", "add", "--bucket", "b", "-p", "p", "-r", "r"],
        None,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).starts_with("CONFIG_INVALID: "),
        "{}",
        text(&refused.stderr)
    );
    let added = ai_runner(
        dir.path(),
        &[],
        &[
            "media",
            "map",
            "add",
            "--bucket",
            "b",
            "--prefix",
            "in/",
            "-p",
            "p",
            "-r",
            "r",
            "--var",
            "MEDIA_MODE=inline",
        ],
        None,
    );
    assert!(
        text(&added.stdout).contains("added mapping #2"),
        "{}",
        text(&added.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(
        &ai_runner(dir.path(), &[], &["media", "map", "list", "--json"], None).stdout,
    )
    .unwrap();
    assert_eq!(listed[1]["variables"]["MEDIA_MODE"], "inline");
    assert!(
        ai_runner(dir.path(), &[], &["media", "map", "remove", "2"], None)
            .status
            .success()
    );
    let gone = ai_runner(dir.path(), &[], &["media", "map", "remove", "2"], None);
    assert_eq!(gone.status.code(), Some(2));
    assert!(text(&gone.stderr).starts_with("MAPPING_NOT_FOUND: "));

    // Re-processing on demand: the provider refuses connections, so it fails and says so...
    break_connections(dir.path(), &["quickstart-audio"]);
    let env = [("AI_RETRY_BASE_MS", "1"), ("AI_MAX_RETRIES", "0")];
    let failed = ai_runner(
        dir.path(),
        &env,
        &["media", "process", "quickstart-media", &key],
        None,
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stdout));
    assert!(
        text(&failed.stderr).starts_with("NETWORK_ERROR: "),
        "{}",
        text(&failed.stderr)
    );

    // ...and once the provider is back it runs again on the same job.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(ai_runner::demo::ProviderServer::start(vec![
            ai_runner::demo::Reply::MediaProbe,
        ]))
        .unwrap();
    let pepper = std::fs::read_to_string(dir.path().join("ai.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("AI_PEPPER=").map(str::to_owned))
        .unwrap();
    rt.block_on(async {
        let db = ai_runner::store::Db::new(ai_runner::config::DatabaseTarget::Sqlite(
            dir.path().join("ai-runner.db"),
        ));
        let ring = Keyring::new(Some(Secret::new(pepper)), None);
        let blob = ring
            .encrypt(
                "sk-demo-audio-not-a-real-key",
                "ai_connection:quickstart-audio",
            )
            .unwrap();
        let cat = ai_runner::catalog::Catalog {
            connections: vec![ai_runner::catalog::Connection {
                name: "quickstart-audio".into(),
                provider: "demo".into(),
                base_url: server.url(),
                api_key: None,
                api_key_encrypted: Some(blob),
                active: true,
            }],
            ..Default::default()
        };
        db.apply_catalog(&cat, &ring, &|_| None).await.unwrap();
        db.close().await;
    });
    let ok = ai_runner(
        dir.path(),
        &env,
        &["media", "process", "quickstart-media", &key, "--json"],
        None,
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(rt.block_on(async { server.requests().len() }), 1);
    let jobs: serde_json::Value = serde_json::from_slice(
        &ai_runner(dir.path(), &[], &["media", "jobs", "--json"], None).stdout,
    )
    .unwrap();
    assert_eq!(jobs[0]["status"], "succeeded");
    assert_eq!(
        jobs[0]["attempts"], 3,
        "first run, the failed re-run, the successful re-run"
    );
}
