//! `keys encrypt` and the schema commands (`db init`, `db migrate`).

use super::*;

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

#[ignore = "needs MariaDB: AI_RUNNER_TEST_MYSQL_URL (bash .ci/run sets it and runs ignored tests)"]
#[test]
fn db_migrate_print_on_the_predecessor_schema_lists_alters_without_running_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tdb = rt
        .block_on(TestDb::new(Backend::MariaDbUnmigrated))
        .unwrap();
    let url = tdb.url.clone();
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
    rt.block_on(tdb.cleanup());
}
