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
    assert!(
        !dry.contains("sk-demo-quickstart-flaky"),
        "the key is masked"
    );

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

mod cfg {
    use super::*;

    fn ok(out: &Output) -> String {
        assert!(
            out.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn db_env(dir: &Path, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("AI_PEPPER", "cfg-test-pepper".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("t.db").display()),
            ),
        ];
        v.extend(extra.iter().cloned());
        v
    }

    fn run(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ai_runner(dir, &pairs, args, None)
    }

    fn round_trip(dir: &Path, env: &[(&'static str, String)]) {
        ok(&run(dir, env, &["db", "init"]));
        ok(&run(
            dir,
            env,
            &["cfg", "sample", "--provider", "openai", "--out", "s.yaml"],
        ));
        ok(&run(dir, env, &["cfg", "verify", "-f", "s.yaml"]));
        let no_key = run(dir, env, &["cfg", "gen", "-f", "s.yaml"]);
        assert_eq!(no_key.status.code(), Some(1));
        assert!(
            text(&no_key.stderr).starts_with("KEY_UNRESOLVED: "),
            "{}",
            text(&no_key.stderr)
        );
        let mut with_key = env.to_vec();
        with_key.push(("OPENAI_API_KEY", "sk-cli-cfg-test-1".into()));
        let dry = ok(&run(
            dir,
            &with_key,
            &["cfg", "gen", "-f", "s.yaml", "--dry-run"],
        ));
        assert!(dry.lines().all(|l| l.starts_with("create")), "{dry}");
        let export_empty = ok(&run(dir, env, &["cfg", "export"]));
        assert!(
            !export_empty.contains("connections"),
            "the dry run wrote nothing: {export_empty}"
        );
        let applied = ok(&run(dir, &with_key, &["cfg", "gen", "-f", "s.yaml"]));
        assert_eq!(applied.lines().count(), dry.lines().count());
        let again = ok(&run(
            dir,
            &with_key,
            &["cfg", "gen", "-f", "s.yaml", "--json"],
        ));
        let items: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert!(
            items
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["action"] == "unchanged"),
            "{again}"
        );
        ok(&run(dir, env, &["cfg", "export", "--out", "e.yaml"]));
        let exported = std::fs::read_to_string(dir.join("e.yaml")).unwrap();
        assert!(!exported.contains("sk-cli-cfg-test-1"));
        ok(&run(dir, env, &["cfg", "verify", "-f", "e.yaml"]));
        let re = ok(&run(dir, env, &["cfg", "gen", "-f", "e.yaml"]));
        assert!(re.lines().all(|l| l.starts_with("unchanged")), "{re}");
        let keys = ok(&run(dir, env, &["keys", "check"]));
        assert!(
            keys.contains("ai_connection:openai-main v2") && !keys.contains("sk-cli"),
            "{keys}"
        );
    }

    #[test]
    fn sample_verify_gen_export_gen_is_a_fixed_point_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(dir.path(), &db_env(dir.path(), &[]));
    }

    #[test]
    fn sample_verify_gen_export_gen_is_a_fixed_point_on_mariadb() {
        let Ok(server) = std::env::var("AI_RUNNER_TEST_MYSQL_URL") else {
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let name = format!("ai_runner_t_cfg_{}", std::process::id());
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(&server).await.unwrap();
            sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
            ))
            .execute(&mut c)
            .await
            .unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        round_trip(
            dir.path(),
            &[
                ("AI_PEPPER", "cfg-test-pepper".into()),
                ("DATABASE_URL", url),
            ],
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
    fn verify_reports_every_problem_with_its_path_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "connections: [{name: c, provider: p, base_url: nope, api_key: x, extra: 1}]\nconfigs: [{config_key: k, model: ghost, prompt: nover}]\n",
        )
        .unwrap();
        let out = ai_runner(dir.path(), &[], &["cfg", "verify", "-f", "bad.yaml"], None);
        assert_eq!(out.status.code(), Some(1));
        let o = text(&out.stdout);
        for needle in [
            "connections[0].extra: UNKNOWN_KEY",
            "connections[0].base_url: BAD_URL",
            "configs[0].model: UNKNOWN_REFERENCE",
            "configs[0].prompt: BAD_PROMPT_REFERENCE",
        ] {
            assert!(o.contains(needle), "missing {needle} in {o}");
        }
        assert!(text(&out.stderr).starts_with("CATALOG_INVALID: "));
        let json = ai_runner(
            dir.path(),
            &[],
            &["cfg", "verify", "-f", "bad.yaml", "--json"],
            None,
        );
        let findings: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert!(findings.as_array().unwrap().len() >= 4);
        std::fs::write(
            dir.path().join("broken.yaml"),
            "connections: [\n  - {name: ",
        )
        .unwrap();
        let out = ai_runner(
            dir.path(),
            &[],
            &["cfg", "verify", "-f", "broken.yaml"],
            None,
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).starts_with("YAML_INVALID: line "),
            "{}",
            text(&out.stderr)
        );
    }

    #[test]
    fn route_pool_applies_the_predecessor_yaml_exclusively_unless_appending() {
        let dir = tempfile::tempdir().unwrap();
        let env = db_env(dir.path(), &[("OPENAI_API_KEY", "sk-pool-test".into())]);
        ok(&run(dir.path(), &env, &["db", "init"]));
        ok(&run(
            dir.path(),
            &env,
            &["cfg", "sample", "--provider", "openai", "--out", "s.yaml"],
        ));
        ok(&run(dir.path(), &env, &["cfg", "gen", "-f", "s.yaml"]));
        std::fs::write(dir.path().join("pool.yaml"), "project_name: demo_project\nroute_key: demo_route\npolicy: weighted\nmembers:\n  - {config_key: audio_summary, priority: 1, weight: 3}\n").unwrap();
        let dry = ok(&run(
            dir.path(),
            &env,
            &["cfg", "route-pool", "-f", "pool.yaml", "--dry-run"],
        ));
        assert!(
            dry.contains("update    member demo_project/demo_route:summary_json (deactivated)"),
            "{dry}"
        );
        let exported = ok(&run(dir.path(), &env, &["cfg", "export"]));
        assert!(
            !exported.contains("audio_summary\n    priority"),
            "dry run wrote nothing"
        );
        let appended = ok(&run(
            dir.path(),
            &env,
            &["cfg", "route-pool", "-f", "pool.yaml", "--append"],
        ));
        assert!(!appended.contains("deactivated"), "{appended}");
        assert!(
            appended.contains("create    member demo_project/demo_route:audio_summary"),
            "{appended}"
        );
        let exclusive = ok(&run(
            dir.path(),
            &env,
            &["cfg", "route-pool", "-f", "pool.yaml"],
        ));
        assert!(
            exclusive.contains("single_chat (deactivated)"),
            "{exclusive}"
        );
        let exported = ok(&run(dir.path(), &env, &["cfg", "export"]));
        assert!(exported.contains("policy: weighted"), "{exported}");
        assert_eq!(exported.matches("active: false").count(), 2, "{exported}");
        std::fs::write(
            dir.path().join("ghost.yaml"),
            "project_name: p\nroute_key: r\nmembers: [{config_key: ghost}]\n",
        )
        .unwrap();
        let ghost = run(dir.path(), &env, &["cfg", "route-pool", "-f", "ghost.yaml"]);
        assert_eq!(ghost.status.code(), Some(1));
        assert!(text(&ghost.stderr).starts_with("CONFIG_NOT_FOUND: "));
    }

    #[test]
    fn keys_rotate_moves_every_secret_to_the_current_pepper_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let old = db_env(dir.path(), &[("OPENAI_API_KEY", "sk-rotate-me-123".into())]);
        ok(&run(dir.path(), &old, &["db", "init"]));
        ok(&run(
            dir.path(),
            &old,
            &["cfg", "sample", "--provider", "openai", "--out", "s.yaml"],
        ));
        ok(&run(dir.path(), &old, &["cfg", "gen", "-f", "s.yaml"]));
        // A predecessor v1 row beside our v2 one.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let db = ai_runner::store::Db::new(ai_runner::config::DatabaseTarget::Sqlite(
                dir.path().join("t.db"),
            ));
            let blob = ai_runner::crypto::encrypt_v1(
                &Secret::new("cfg-test-pepper"),
                "sk-legacy-456",
                1000,
            )
            .unwrap();
            db.upsert_connection(&ai_runner::store::admin::NewConnection {
                name: "legacy",
                provider: "openrouter",
                base_url: "https://x/v1/chat/completions",
                key_blob: &blob,
            })
            .await
            .unwrap();
            db.close().await;
        });
        let new_only = vec![
            ("AI_PEPPER", "brand-new-pepper".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("t.db").display()),
            ),
        ];
        let fails = run(dir.path(), &new_only, &["keys", "rotate"]);
        assert_eq!(
            fails.status.code(),
            Some(2),
            "without the old pepper nothing can be rotated"
        );
        let mut rotating = new_only.clone();
        rotating.push(("AI_PEPPER_PREVIOUS", "cfg-test-pepper".into()));
        let dry = ok(&run(
            dir.path(),
            &rotating,
            &["keys", "rotate", "--dry-run"],
        ));
        assert!(dry.contains("would re-encrypt 2 of 2"), "{dry}");
        let check = run(dir.path(), &new_only, &["keys", "check"]);
        assert_eq!(check.status.code(), Some(1), "the dry run wrote nothing");
        assert!(
            ok(&run(dir.path(), &rotating, &["keys", "rotate"])).contains("re-encrypted 2 of 2")
        );
        let check = ok(&run(dir.path(), &new_only, &["keys", "check"]));
        assert_eq!(check.matches("(current)").count(), 2, "{check}");
        assert!(
            ok(&run(dir.path(), &new_only, &["keys", "rotate"])).contains("re-encrypted 0 of 2")
        );
    }

    #[test]
    fn doctor_passes_a_healthy_setup_and_names_each_broken_part() {
        let dir = tempfile::tempdir().unwrap();
        let env = db_env(dir.path(), &[]);
        ok(&run(dir.path(), &env, &["db", "init"]));
        let mut keyed = env.clone();
        keyed.push(("K", "sk-doctor-1".into()));
        std::fs::write(dir.path().join("c.yaml"), "connections: [{name: local, provider: custom, base_url: \"http://127.0.0.1:9/v1/chat/completions\", api_key: \"${K}\"}]\n").unwrap();
        ok(&run(dir.path(), &keyed, &["cfg", "gen", "-f", "c.yaml"]));
        let healthy = ok(&run(dir.path(), &env, &["doctor"]));
        assert!(healthy.lines().all(|l| l.starts_with("ok")), "{healthy}");
        let json: serde_json::Value =
            serde_json::from_slice(&run(dir.path(), &env, &["doctor", "--json"]).stdout).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 7);

        let mut wrong = env.clone();
        wrong[0].1 = "not-the-pepper".into();
        let out = run(dir.path(), &wrong, &["doctor", "--db-only"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stdout).contains("FAIL keys"),
            "{}",
            text(&out.stdout)
        );
        // The env files are read exactly as the runtime reads them.
        std::fs::write(dir.path().join("mysql.env"), "MYSQL_HOST=db.internal\n").unwrap();
        let out = ai_runner(dir.path(), &[], &["doctor", "--env-only"], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stdout).contains("FAIL settings  CONFIG_MISSING"),
            "{}",
            text(&out.stdout)
        );
        std::fs::remove_file(dir.path().join("mysql.env")).unwrap();
        let missing_pepper = ai_runner(dir.path(), &[], &["doctor", "--env-only"], None);
        assert!(
            text(&missing_pepper.stdout).contains("FAIL pepper"),
            "{}",
            text(&missing_pepper.stdout)
        );
    }

    #[test]
    fn dump_schema_exports_definitions_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let env = db_env(dir.path(), &[]);
        ok(&run(dir.path(), &env, &["db", "init"]));
        ok(&run(
            dir.path(),
            &env,
            &[
                "cfg",
                "dump-schema",
                "--prefix",
                "ai_call",
                "--out",
                "s.md",
                "--json",
                "s.json",
            ],
        ));
        let md = std::fs::read_to_string(dir.path().join("s.md")).unwrap();
        assert!(
            md.contains("## ai_call_logs") && md.contains("| trace_id |"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("s.json")).unwrap())
                .unwrap();
        assert_eq!(json.as_array().unwrap().len(), 1);
        assert!(
            json[0]["create_sql"]
                .as_str()
                .unwrap()
                .contains("CREATE TABLE")
        );
    }
}

mod doctor_more {
    use super::*;

    fn fails(dir: &Path, env: &[(&str, &str)], check: &str) -> String {
        let out = ai_runner(dir, env, &["doctor"], None);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        let o = text(&out.stdout);
        assert!(
            o.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(check)),
            "expected {check} to fail: {o}"
        );
        assert!(o.contains("hint: "), "{o}");
        o
    }

    #[test]
    fn doctor_names_an_unreachable_database_unresolvable_providers_and_unreachable_object_storage()
    {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let unreachable = format!("mysql://root@127.0.0.1:{port}/nope");
        fails(
            dir.path(),
            &[("AI_PEPPER", "p"), ("DATABASE_URL", &unreachable)],
            "database",
        );

        let db = format!("sqlite://{}", dir.path().join("d.db").display());
        let env = [
            ("AI_PEPPER", "p"),
            ("DATABASE_URL", db.as_str()),
            ("K", "sk-doctor-2"),
        ];
        assert!(
            ai_runner(dir.path(), &env, &["db", "init"], None)
                .status
                .success()
        );
        std::fs::write(dir.path().join("c.yaml"), "connections: [{name: far, provider: custom, base_url: \"https://no-such-host.invalid/v1/chat/completions\", api_key: \"${K}\"}]\n").unwrap();
        assert!(
            ai_runner(dir.path(), &env, &["cfg", "gen", "-f", "c.yaml"], None)
                .status
                .success()
        );
        fails(dir.path(), &env, "providers");

        let env = [
            ("AI_PEPPER", "p"),
            ("DATABASE_URL", db.as_str()),
            ("OSS_ENDPOINT", &*format!("http://127.0.0.1:{port}")),
            ("OSS_ACCESS_KEY_ID", "ak"),
            ("OSS_ACCESS_KEY_SECRET", "sk"),
            ("OSS_BUCKET", "b"),
            ("OSS_FORCE_PATH_STYLE", "true"),
        ];
        fails(dir.path(), &env, "objects");
    }

    #[test]
    fn doctor_reports_missing_migrations_on_the_predecessor_schema() {
        let Ok(server) = std::env::var("AI_RUNNER_TEST_MYSQL_URL") else {
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let name = format!("ai_runner_t_doc_{}", std::process::id());
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(&server).await.unwrap();
            sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
            ))
            .execute(&mut c)
            .await
            .unwrap();
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let seed = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/spec/seed-schema.mysql.sql"
            ))
            .unwrap();
            sqlx::raw_sql(&seed).execute(&mut c).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let env = [("AI_PEPPER", "p"), ("DATABASE_URL", url.as_str())];
        let o = fails(dir.path(), &env, "schema");
        assert!(o.contains("ai-runner db migrate"), "{o}");
        let dump = ai_runner(
            dir.path(),
            &env,
            &["cfg", "dump-schema", "--db", &name, "--prefix", "ai_route"],
            None,
        );
        assert!(dump.status.success(), "{}", text(&dump.stderr));
        let md = text(&dump.stdout);
        assert!(
            md.contains("## ai_route_member_v2") && md.contains("CREATE TABLE `ai_route_v2`"),
            "{md}"
        );
        assert!(md.contains("| Field |"), "SHOW FULL COLUMNS fields: {md}");
        assert!(
            ai_runner(dir.path(), &env, &["db", "migrate"], None)
                .status
                .success()
        );
        let healthy = ai_runner(dir.path(), &env, &["doctor", "--db-only"], None);
        assert!(healthy.status.success(), "{}", text(&healthy.stdout));
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(&server).await.unwrap();
            sqlx::raw_sql(&format!("DROP DATABASE {name}"))
                .execute(&mut c)
                .await
                .unwrap();
        });
    }
}
