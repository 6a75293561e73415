//! Access keys from the command line: created, listed, disabled, rotated; a secret shown once.

use super::*;

#[test]
fn access_keys_are_created_listed_disabled_rotated_and_their_secrets_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AI_PEPPER", "cli-access-pepper")];
    assert!(
        ai_runner(dir.path(), &env, &["db", "init"], None)
            .status
            .success()
    );
    let created = ai_runner(
        dir.path(),
        &env,
        &[
            "access",
            "create",
            "--user",
            "ana",
            "--routes",
            "shop/*",
            "--daily-quota",
            "5",
            "--rps",
            "2",
            "--allow-ip",
            "10.0.0.0/8",
            "--expires-in",
            "30d",
            "--json",
        ],
        None,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let ak = key["access_key_id"].as_str().unwrap().to_owned();
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(ak.starts_with("ak_") && secret.starts_with("sk_"));

    let list = ai_runner(dir.path(), &env, &["access", "list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["access_key_id"], ak.as_str());
    assert_eq!(listed[0]["owner"], "ana");
    assert_eq!(listed[0]["daily_quota"], 5);
    assert_eq!(listed[0]["scope"]["routes"], serde_json::json!(["shop/*"]));
    assert!(
        !text(&list.stdout).contains(&secret),
        "list never shows a secret"
    );

    let rotated = ai_runner(
        dir.path(),
        &env,
        &["access", "rotate", &ak, "--grace", "1h"],
        None,
    );
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    assert!(!text(&rotated.stdout).contains(&secret));
    let disabled = ai_runner(dir.path(), &env, &["access", "disable", &ak], None);
    assert!(disabled.status.success());
    let list = ai_runner(dir.path(), &env, &["access", "list"], None);
    assert!(
        text(&list.stdout).contains("disabled"),
        "{}",
        text(&list.stdout)
    );

    let unknown = ai_runner(dir.path(), &env, &["access", "disable", "ak_nope"], None);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("AUTH_KEY_UNKNOWN"));
    let no_project = ai_runner(
        dir.path(),
        &env,
        &["access", "create", "--project", "none"],
        None,
    );
    assert_eq!(no_project.status.code(), Some(2));
    assert!(text(&no_project.stderr).contains("UNKNOWN_REFERENCE"));
    let bad_ip = ai_runner(
        dir.path(),
        &env,
        &["access", "create", "--user", "bo", "--allow-ip", "nope"],
        None,
    );
    assert_eq!(bad_ip.status.code(), Some(2));
    let usage = ai_runner(dir.path(), &env, &["access", "usage", "--json"], None);
    assert!(usage.status.success(), "{}", text(&usage.stderr));
    assert_eq!(text(&usage.stdout).trim(), "[]", "no call was made");
}

#[test]
fn a_bearer_key_prints_its_token_once_on_stdout_and_is_listed_by_its_form() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AI_PEPPER", "cli-access-pepper")];
    assert!(
        ai_runner(dir.path(), &env, &["db", "init"], None)
            .status
            .success()
    );
    let created = ai_runner(
        dir.path(),
        &env,
        &[
            "access", "create", "--user", "ana", "--bearer", "--rps", "3",
        ],
        None,
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "the token alone: {stdout}");
    let (id, secret) = token
        .strip_prefix("air-")
        .and_then(|t| t.rsplit_once('-'))
        .unwrap();
    assert!(id.starts_with("ak_"), "{token}");
    assert!(
        secret.len() == 64
            && secret
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{token}"
    );
    let note = text(&created.stderr);
    assert!(
        note.contains("not shown again") && note.contains(id) && !note.contains(secret),
        "{note}"
    );

    let list = ai_runner(dir.path(), &env, &["access", "list", "--json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["access_key_id"], id);
    assert_eq!(listed[0]["form"], "bearer");
    let plain = ai_runner(dir.path(), &env, &["access", "list"], None);
    let shown = text(&plain.stdout);
    assert!(shown.contains(id) && shown.contains("bearer"), "{shown}");
    for out in [&list, &plain] {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            !all.contains(secret) && !all.contains("sha256"),
            "never the token or its digest: {all}"
        );
    }

    // --json names it a token; a rotation prints a new one the same way.
    let json = ai_runner(
        dir.path(),
        &env,
        &["access", "create", "--user", "bo", "--bearer", "--json"],
        None,
    );
    let key: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(key["form"], "bearer");
    assert!(key["token"].as_str().unwrap().starts_with("air-ak_"));
    assert!(key.get("secret").is_none());
    let rotated = ai_runner(
        dir.path(),
        &env,
        &["access", "rotate", id, "--grace", "0"],
        None,
    );
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let new_token = text(&rotated.stdout);
    assert!(
        new_token.trim().starts_with(&format!("air-{id}-")) && !new_token.contains(secret),
        "{new_token}"
    );
    // A pepper check lists the digest as needing no pepper.
    let checked = ai_runner(dir.path(), &env, &["keys", "check"], None);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(
        text(&checked.stdout).contains("bearer (sha256)"),
        "{}",
        text(&checked.stdout)
    );
}
