//! `ai-runner dev`: the console process as a user starts it.

use super::*;
use std::io::{BufRead, BufReader, Read};

struct Console {
    child: std::process::Child,
    port: u16,
    token: String,
    /// Kept open, as a terminal would be.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, args: &[&str]) -> Console {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ai-runner"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AI_RUNNER_DEMO_PORT", "0")
        .arg("dev")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ai-runner console: ")
        .unwrap_or_else(|| panic!("{line}"));
    let (addr, token) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once("/?token=")
        .unwrap();
    Console {
        child,
        port: addr.rsplit(':').next().unwrap().parse().unwrap(),
        token: token.to_owned(),
        _stdout: stdout,
    }
}

/// One HTTP/1.1 exchange over a plain socket: (status, body).
fn http(port: u16, request_line: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(&format!("{h}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn dev_prints_a_url_with_its_token_and_answers_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    let c = start(dir.path(), &["--port", "0"]);
    assert_eq!(c.token.len(), 48, "a random 24-byte token");
    let auth = vec![format!("Authorization: token {}", c.token)];
    let (status, body) = http(c.port, "GET /routes?project=quickstart", &[], "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("CONSOLE_TOKEN_INVALID"));
    let (status, body) = http(c.port, "GET /routes?project=quickstart", &auth, "");
    assert_eq!(status, 200);
    let routes: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route_key"] == "demo-route"),
        "{routes}"
    );
    let mut json = auth.clone();
    json.push("Content-Type: application/json".into());
    let (status, body) = http(
        c.port,
        "POST /invoke",
        &json,
        r#"{"project_name": "quickstart", "route_key": "demo-route", "dry_run": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let dry: serde_json::Value = serde_json::from_str(&body).unwrap();
    let masked = dry["headers"]["Authorization"].as_str().unwrap();
    assert!(
        masked.starts_with("Bearer ") && masked.contains("***"),
        "{masked}"
    );
    let (status, page) = http(c.port, "GET /", &auth, "");
    assert_eq!(status, 200);
    assert!(page.contains("demo-route") && page.contains("quickstart-demo"));
}

#[test]
fn dev_warns_on_an_open_address_and_names_a_taken_port_or_a_bad_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), &["--host", "0.0.0.0", "--port", "0"]);
    let _ = c.child.kill();
    let mut err = String::new();
    c.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("WARNING") && err.contains("token"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = ai_runner(dir.path(), &[], &["dev", "--port", &port], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("CONSOLE_BIND_FAILED"),
        "{}",
        text(&out.stderr)
    );
    let out = ai_runner(dir.path(), &[], &["dev", "--host", "example.com"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("INVALID_INPUT"));
}
