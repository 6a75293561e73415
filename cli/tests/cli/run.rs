//! `quickstart`, `run-once` and `route` as a user runs them: answers, failures with their code, exit
//! and hint, dry runs, and output that survives a reader closing the pipe.

use super::*;

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
        again_out.contains("\"id\": 14")
            && again_out.contains("\"answered_by\": \"quickstart-demo\""),
        "second run: its row follows the first run's thirteen (a call, a route's two attempts, an upload, and the evaluation's 3 config calls + 3 x 2 route attempts): {again_out}"
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
    // A provider that refuses connections: the run fails with its code, exit 1 and a hint.
    break_connections(dir.path(), &["quickstart"]);
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

    // Both providers refuse connections: every member fails, each is reported, exit code 1.
    break_connections(dir.path(), &["quickstart", "quickstart-flaky"]);
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

/// A reader that stops early (`| head -c 10`) ends the command quietly: no panic about a broken
/// pipe, nothing on stderr, the exit code the command would have had.
#[test]
fn a_reader_that_closes_stdout_early_ends_the_command_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // 600 prices print about 150 KiB as JSON: more than a pipe holds, so the command is still
    // writing when the reader goes away, whatever the scheduling.
    let prices: serde_json::Map<String, serde_json::Value> = (0..600)
        .map(|i| {
            (
                format!("model-{i:04}"),
                serde_json::json!({
                    "input_cost_per_token": 1e-6,
                    "output_cost_per_token": 2e-6,
                    "litellm_provider": "openai",
                }),
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("prices.json"),
        serde_json::Value::Object(prices).to_string(),
    )
    .unwrap();
    for args in [&["db", "init"][..], &["prices", "import", "prices.json"]] {
        let out = ai_runner(dir.path(), &[], args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ai-runner"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["prices", "list", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // The read end is closed here (dropped with the ChildStdout).
    let out = child.wait_with_output().unwrap();
    assert_eq!(&head[..1], b"[", "{}", text(&head));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "a closed pipe is not worth a word");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
