//! The `ai-runner` binary as a user runs it: fresh directories, a clean environment, real
//! stdin/stdout/stderr and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ai_runner::Secret;
use ai_runner::crypto::Keyring;

fn ai_runner(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ai-runner"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn quickstart_on_a_fresh_directory_runs_an_audited_call_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = ai_runner(dir.path(), &[], &["quickstart"], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("DEMO provider on loopback"), "{stdout}");
    assert!(stdout.contains("发布顺利"), "{stdout}");
    assert!(
        stdout.contains("\"config_key\": \"quickstart-demo\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"http_status\": 200"), "{stdout}");
    assert!(dir.path().join("ai-runner.db").is_file());
    let env_file = std::fs::read_to_string(dir.path().join("ai.env")).unwrap();
    assert!(env_file.contains("AI_PEPPER="));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ai.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "ai.env must be private");
    }
    assert!(
        stdout.contains("member 1 quickstart-flaky: HTTP_5XX_SERVER_ERROR -> handed over"),
        "{stdout}"
    );
    assert!(
        stdout.contains("member 2 quickstart-demo: answered"),
        "{stdout}"
    );
    assert!(stdout.contains("config_key=\"quickstart-flaky\" http_status=503 error_code=\"HTTP_5XX_SERVER_ERROR\" route_attempt=1 handover_reason=\"HTTP_5XX_SERVER_ERROR\""), "{stdout}");
    assert!(
        stdout.contains(
            "config_key=\"quickstart-demo\" http_status=200 error_code=null route_attempt=2"
        ),
        "{stdout}"
    );
    let pepper = env_file
        .lines()
        .find_map(|l| l.strip_prefix("AI_PEPPER="))
        .unwrap();
    assert!(!stdout.contains(pepper), "the pepper is never printed");

    let again = ai_runner(dir.path(), &[], &["quickstart", "--json"], None);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again_out = text(&again.stdout);
    assert!(again_out.contains("\"status\": \"ok\""), "{again_out}");
    assert!(
        again_out.contains("\"id\": 5")
            && again_out.contains("\"answered_by\": \"quickstart-demo\""),
        "second run: its row follows the first run's four: {again_out}"
    );
}

#[test]
fn run_once_failures_exit_non_zero_with_code_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    // The demo provider is gone once quickstart exits: the stored URL now refuses connections.
    let out = ai_runner(
        dir.path(),
        &[("AI_RETRY_BASE_MS", "1")],
        &["run-once", "quickstart-demo"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("NETWORK_ERROR: "), "{err}");
    assert!(err.contains("hint: "), "{err}");

    let out = ai_runner(
        dir.path(),
        &[],
        &["run-once", "no-such-config", "--json"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("CONFIG_NOT_FOUND: "));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["code"], "CONFIG_NOT_FOUND");

    let out = ai_runner(
        dir.path(),
        &[],
        &["run-once", "x", "--var", "NOEQUALS"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("INVALID_INPUT: "));
}

#[test]
fn run_once_without_an_initialised_database_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = ai_runner(dir.path(), &[], &["run-once", "k"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("DB_NOT_INITIALIZED: "), "{err}");
    assert!(err.contains("ai-runner db init"), "{err}");
    assert!(
        !dir.path().join("ai-runner.db").exists(),
        "run-once never creates a database"
    );
}

#[test]
fn partial_mysql_settings_name_every_missing_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mysql.env"),
        "MYSQL_HOST=db.internal\nMYSQL_USER=app\n",
    )
    .unwrap();
    let out = ai_runner(dir.path(), &[], &["run-once", "k"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("CONFIG_MISSING: "), "{err}");
    assert!(
        err.contains("MYSQL_PASSWORD") && err.contains("MYSQL_AI_DATABASE"),
        "{err}"
    );
}

#[test]
fn keys_encrypt_reads_stdin_and_the_blob_decrypts_for_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AI_PEPPER", "cli-test-pepper")];
    let out = ai_runner(
        dir.path(),
        &env,
        &["keys", "encrypt", "--connection", "openai-main"],
        Some("sk-from-stdin-123\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let blob = text(&out.stdout);
    assert!(!blob.contains("sk-from-stdin"));
    let ring = Keyring::new(Some(Secret::new("cli-test-pepper")), None);
    assert_eq!(
        ring.decrypt(blob.trim(), "ai_connection:openai-main")
            .unwrap()
            .expose(),
        "sk-from-stdin-123"
    );
    assert!(ring.decrypt(blob.trim(), "ai_connection:other").is_err());

    let out = ai_runner(
        dir.path(),
        &[],
        &["keys", "encrypt", "--connection", "c"],
        Some("sk-x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("PEPPER_MISSING: "));
}

#[test]
fn db_init_is_idempotent_and_migrate_print_shows_nothing_left_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let first = ai_runner(dir.path(), &[], &["db", "init"], None);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = ai_runner(dir.path(), &[], &["db", "init"], None);
    assert!(
        text(&second.stdout).contains("(0 migration statements run)"),
        "{}",
        text(&second.stdout)
    );
    let print = ai_runner(dir.path(), &[], &["db", "migrate", "--print"], None);
    assert!(text(&print.stdout).contains("is up to date"));
    let schema = ai_runner(dir.path(), &[], &["db", "init", "--print"], None);
    assert!(text(&schema.stdout).contains("CREATE TABLE IF NOT EXISTS ai_call_logs"));
}

#[test]
fn db_migrate_print_on_the_predecessor_schema_lists_alters_without_running_them() {
    let Ok(server) = std::env::var("AI_RUNNER_TEST_MYSQL_URL") else {
        eprintln!("AI_RUNNER_TEST_MYSQL_URL is not set: skipping");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = format!("ai_runner_t_cli_{}", std::process::id());
    let url = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&server).await.unwrap();
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let seed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/spec/seed-schema.mysql.sql"
        ))
        .unwrap();
        sqlx::raw_sql(&seed).execute(&mut c).await.unwrap();
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", url.as_str())];
    let print = ai_runner(dir.path(), &env, &["db", "migrate", "--print"], None);
    assert!(print.status.success(), "{}", text(&print.stderr));
    let printed = text(&print.stdout);
    assert!(
        printed.contains("ALTER TABLE ai_call_logs ADD COLUMN trace_id VARCHAR(64) NULL;"),
        "{printed}"
    );
    let again = ai_runner(dir.path(), &env, &["db", "migrate", "--print"], None);
    assert_eq!(text(&again.stdout), printed, "--print changed nothing");
    assert!(
        ai_runner(dir.path(), &env, &["db", "migrate"], None)
            .status
            .success()
    );
    let done = ai_runner(dir.path(), &env, &["db", "migrate", "--print"], None);
    assert!(
        text(&done.stdout).contains("is up to date"),
        "{}",
        text(&done.stdout)
    );
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&server).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
    });
}

#[test]
fn route_dry_run_prints_the_request_with_a_masked_key_and_a_route_run_reports_each_member() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(
            dir.path(),
            &[("AI_RETRY_BASE_MS", "1")],
            &["quickstart"],
            None
        )
        .status
        .success()
    );
    let out = ai_runner(
        dir.path(),
        &[],
        &["route", "-p", "quickstart", "-r", "demo-route", "--dry-run"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dry = text(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&dry).unwrap();
    assert_eq!(
        v["order"],
        serde_json::json!(["quickstart-flaky", "quickstart-demo"])
    );
    assert_eq!(v["request"]["headers"]["Authorization"], "Bearer ***-key");
    assert!(!dry.contains("sk-demo-flaky-not-a-real-key"));

    // Both demo endpoints are gone now: every member fails, each is reported, exit code 1.
    let out = ai_runner(
        dir.path(),
        &[("AI_RETRY_BASE_MS", "1")],
        &["route", "-p", "quickstart", "-r", "demo-route"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("member 1 quickstart-flaky: failed with NETWORK_ERROR, handed over"),
        "{err}"
    );
    assert!(
        err.contains("member 2 quickstart-demo: failed with NETWORK_ERROR (audit row"),
        "{err}"
    );
    assert!(err.contains("NETWORK_ERROR: "), "{err}");

    let out = ai_runner(
        dir.path(),
        &[],
        &["route", "-p", "quickstart", "-r", "nope"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("ROUTE_NOT_FOUND: "));
}

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

    // Re-processing on demand: the demo provider is gone, so it fails and says so...
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
        let url = server.url();
        db.upsert_connection(&ai_runner::store::admin::NewConnection {
            name: "quickstart-audio",
            provider: "demo",
            base_url: &url,
            key_blob: &blob,
        })
        .await
        .unwrap();
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
