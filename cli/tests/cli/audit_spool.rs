//! The audit spool from the command line: doctor names what waits, `audit pending` counts it,
//! `audit replay` writes it once.

use super::*;

#[test]
fn spooled_rows_are_reported_by_doctor_and_written_once_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    let spool = dir
        .path()
        .join("ai-runner-objects/ai-runner/ai-runner/audit-spool");
    std::fs::create_dir_all(&spool).unwrap();
    let row = serde_json::json!({
        "config_key": "quickstart-demo", "http_status": 200, "duration_ms": 12,
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
        "response_id": null, "error_code": null, "error_message": null,
        "request_body_json": "{}", "response_body_json": "{}",
        "trace_id": "feedfacefeedfacefeedfacefeedface", "status": "ok", "attempts": 1,
        "provider_ms": 5, "ttft_ms": null, "trigger_source": "cli", "request_id": null,
        "model_name": "demo", "project_name": null, "route_key": null, "route_policy": null,
        "route_attempt": null, "handover_reason": null,
        "row_key": "feedfacefeedfacefeedfacefeedface-1"
    });
    std::fs::write(
        spool.join("0000000000001-feedfacefeedfacefeedfacefeedface-1.json"),
        row.to_string(),
    )
    .unwrap();
    let doctor = ai_runner(dir.path(), &[], &["doctor"], None);
    assert_eq!(doctor.status.code(), Some(1));
    let out = text(&doctor.stdout);
    assert!(
        out.contains("1 audit row(s) wait in ai-runner/ai-runner/audit-spool/"),
        "{out}"
    );
    let pending = ai_runner(dir.path(), &[], &["audit", "pending", "--json"], None);
    let p: serde_json::Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(p["rows"], 1);
    let replay = ai_runner(dir.path(), &[], &["audit", "replay"], None);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(text(&replay.stdout).contains("replayed 1 row(s); 0 still spooled"));
    // Written once, even if the same row is spooled again.
    std::fs::write(spool.join("0000000000002-again.json"), row.to_string()).unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["audit", "replay"], None)
            .status
            .success()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n: i64 = rt.block_on(async {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
                "sqlite://{}",
                dir.path().join("ai-runner.db").display()
            ))
            .await
            .unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM ai_call_logs WHERE row_key = 'feedfacefeedfacefeedfacefeedface-1'")
                .fetch_one(&mut c)
                .await
                .unwrap()
        });
    assert_eq!(n, 1);
    let doctor = ai_runner(dir.path(), &[], &["doctor"], None);
    assert!(
        text(&doctor.stdout).contains("audit spool") && doctor.status.success(),
        "{}{}",
        text(&doctor.stdout),
        text(&doctor.stderr)
    );
}
