//! Shared helpers for the integration tests of every crate: fixtures, throwaway databases on the
//! embedded SQLite and on a real MariaDB, config seeding through the library's one writer
//! (`Db::apply_catalog`, exactly what `cfg gen` runs), a real S3-protocol server, and the
//! environment a function process needs.
//!
//! MariaDB suites run when `AI_RUNNER_TEST_MYSQL_URL` is set (`.ci/run` always sets it); each
//! test gets its own database, created from the predecessor's seed schema and dropped afterwards.

// Tests read their own environment (the MariaDB URL, PATH) and drive servers with their own
// HTTP clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

pub mod bench;
pub mod fake;
pub mod function_url;
pub mod lambda_api;
pub mod sdk;

use std::path::PathBuf;

use ai_runner::catalog::{Catalog, Member, Route};
use ai_runner::config::DatabaseTarget;
use ai_runner::crypto::Keyring;
use ai_runner::provider::HttpProvider;
use ai_runner::store::{Db, Pool, migrate};
use ai_runner::{Runner, Secret, Settings};
use serde_json::{Value, json};
use sqlx::Connection;

/// The pepper every test uses unless it tests peppers.
pub const PEPPER: &str = "integration-test-pepper-7f3a9c";

/// Path of a fixture file.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A fixture's text.
pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap()
}

/// A fixture parsed as JSON.
pub fn fixture_json(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary embedded SQLite file with our schema.
    Sqlite,
    /// A fresh MariaDB database with the predecessor's seed schema, migrated.
    MariaDb,
    /// A fresh MariaDB database with the seed schema exactly as the predecessor left it.
    MariaDbUnmigrated,
    /// A fresh, empty MariaDB database: what `db init` and `quickstart --mode rds` start from.
    MariaDbEmpty,
}

/// A throwaway database.
pub struct TestDb {
    /// `DATABASE_URL` for it.
    pub url: String,
    /// Its target.
    pub target: DatabaseTarget,
    _dir: Option<tempfile::TempDir>,
    mysql: Option<(String, String)>,
}

/// The MariaDB server URL for tests, if configured.
pub fn mysql_url() -> Option<String> {
    std::env::var("AI_RUNNER_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

impl TestDb {
    /// Creates a database of this kind. MariaDB kinds need `AI_RUNNER_TEST_MYSQL_URL` and panic
    /// without it (their tests are `#[ignore]`d, so they only run when asked for).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("test.db");
                let target = DatabaseTarget::Sqlite(path.clone());
                let db = Db::creating(target.clone());
                migrate::init(&db).await.unwrap();
                db.close().await;
                Some(TestDb {
                    url: format!("sqlite://{}", path.display()),
                    target,
                    _dir: Some(dir),
                    mysql: None,
                })
            }
            Backend::MariaDb | Backend::MariaDbUnmigrated | Backend::MariaDbEmpty => {
                // MariaDB tests are #[ignore]d: run explicitly, they fail rather than pass
                // silently when no server is configured.
                let server = mysql_url().expect(
                    "AI_RUNNER_TEST_MYSQL_URL must name a MariaDB server for the MariaDB tests \
                     (bash .ci/run sets it and runs them with --include-ignored)",
                );
                let name = format!("ai_runner_t_{}", &ai_runner::run::new_trace_id()[..12]);
                let mut admin = sqlx::MySqlConnection::connect(&server).await.unwrap();
                sqlx::raw_sql(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let url = with_database(&server, &name);
                if backend != Backend::MariaDbEmpty {
                    let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql(&fixture("spec/seed-schema.mysql.sql"))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                    conn.close().await.unwrap();
                }
                let settings = Settings::builder().database_url(&url).build().unwrap();
                if backend == Backend::MariaDb {
                    let db = Db::new(settings.database.clone());
                    migrate::apply(&db).await.unwrap();
                    db.close().await;
                }
                Some(TestDb {
                    url,
                    target: settings.database,
                    _dir: None,
                    mysql: Some((server, name)),
                })
            }
        }
    }

    /// A fresh handle (its own pool).
    pub fn db(&self) -> Db {
        Db::new(self.target.clone())
    }

    /// Settings pointing here, with fast retries, plus `extra` variables.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        Settings::builder()
            .database_url(&self.url)
            .pepper(PEPPER)
            .var("AI_RETRY_BASE_MS", "1")
            .var("AI_RETRY_JITTER", "0")
            .var("AI_CONTENT_RETRY_DELAY_MS", "1")
            .var("AI_TIMEOUT", "5")
            .vars(extra.iter().copied())
            .build()
            .unwrap()
    }

    /// The MariaDB database's name (`None` on SQLite).
    pub fn mysql_name(&self) -> Option<&str> {
        self.mysql.as_ref().map(|(_, name)| name.as_str())
    }

    /// Drops a MariaDB database (SQLite files go with their temp dir).
    pub async fn cleanup(self) {
        if let Some((server, name)) = &self.mysql {
            let mut admin = sqlx::MySqlConnection::connect(server).await.unwrap();
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}

/// The database's clock in whole seconds (`UNIX_TIMESTAMP()` on MariaDB, `unixepoch()` on
/// SQLite): the clock the per-second rate window is counted on. Read before and after a call,
/// it brackets the second the database counted that call in.
pub async fn db_second(db: &Db) -> i64 {
    match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP() AS SIGNED)")
            .fetch_one(p)
            .await
            .unwrap(),
        Pool::Sqlite(p) => sqlx::query_scalar("SELECT unixepoch()")
            .fetch_one(p)
            .await
            .unwrap(),
    }
}

/// A production runner (SQL store + HTTP provider) for these settings.
pub fn runner(settings: &Settings) -> Runner<Db, HttpProvider> {
    Runner::new(
        Db::new(settings.database.clone()),
        HttpProvider::new(settings.http.clone()).unwrap(),
        settings,
    )
}

/// What a seeded config looks like.
pub struct Seed<'a> {
    /// config_key.
    pub key: &'a str,
    /// Provider URL.
    pub url: &'a str,
    /// Plain API key (stored encrypted under [`PEPPER`]).
    pub api_key: &'a str,
    /// messages_json.
    pub messages: Value,
    /// response_format_json.
    pub response_format: Option<Value>,
    /// params_json.
    pub params: Option<Value>,
    /// prompt variables_json.
    pub variables: Option<Value>,
}

impl<'a> Seed<'a> {
    /// A plain-text config with one user message.
    pub fn text(key: &'a str, url: &'a str) -> Self {
        Seed {
            key,
            url,
            api_key: "sk-test-provider-key-000",
            messages: serde_json::json!([{"role": "user", "content": "说一句话：{{TOPIC}}"}]),
            response_format: None,
            params: None,
            variables: Some(serde_json::json!({"TOPIC": "天气"})),
        }
    }
}

/// A price row for `model` (any provider): each `(rate, USD per unit)` given.
pub fn price(
    model: &str,
    rates: &[(ai_runner::model::cost::Rate, f64)],
) -> ai_runner::model::cost::Price {
    let mut r = ai_runner::model::cost::Rates::default();
    for (rate, usd) in rates {
        r.0[*rate as usize] = Some(ai_runner::model::cost::femto(*usd).unwrap());
    }
    ai_runner::model::cost::Price {
        id: 0,
        provider: String::new(),
        model: model.into(),
        rates: r,
        max_output_tokens: None,
        valid_from_ms: 0,
        valid_to_ms: None,
        source: "test".into(),
    }
}

/// The keyring every seeded key is encrypted under.
pub fn keyring() -> Keyring {
    Keyring::new(Some(Secret::new(PEPPER)), None)
}

/// Applies a catalog written as JSON (the YAML file's shape) with the library's one writer.
pub async fn apply(db: &Db, catalog: Value) {
    let cat: Catalog = serde_json::from_value(catalog).unwrap();
    db.apply_catalog(&cat, &keyring(), &|_| None).await.unwrap();
}

/// Writes a connection (key encrypted in our format), model, prompt, params and config.
pub async fn seed(db: &Db, s: &Seed<'_>) {
    let params = s
        .params
        .as_ref()
        .map(|p| json!([{"name": format!("params-{}", s.key), "params": p}]));
    apply(
        db,
        json!({
            "connections": [{"name": format!("conn-{}", s.key), "provider": "test",
                             "base_url": s.url, "api_key": s.api_key}],
            "models": [{"name": format!("model-{}", s.key), "connection": format!("conn-{}", s.key)}],
            "param_profiles": params.unwrap_or_else(|| json!([])),
            "prompts": [{"name": format!("prompt-{}", s.key), "version": "v1", "messages": s.messages,
                         "response_format": s.response_format, "variables": s.variables}],
            "configs": [{"config_key": s.key, "model": format!("model-{}", s.key),
                         "prompt": format!("prompt-{}@v1", s.key),
                         "param_profile": s.params.as_ref().map(|_| format!("params-{}", s.key))}]
        }),
    )
    .await;
}

/// One route member to seed: (config_key, priority, weight).
pub type MemberSpec<'a> = (&'a str, i64, i64);

/// A route's settings for [`seed_route`] (project, key and members are passed separately).
#[derive(Debug, Clone, Default)]
pub struct RouteSpec<'a> {
    /// `primary_backup` (default when empty), `round_robin` or `weighted`.
    pub policy: &'a str,
    /// `policy_config_json`.
    pub policy_config: Option<Value>,
    /// Route-level variables.
    pub variables: Option<Value>,
    /// Route-level prompt, `name@version`.
    pub prompt: Option<&'a str>,
    /// Route-level param profile name.
    pub param_profile: Option<&'a str>,
    /// Route-level response_format.
    pub response_format: Option<Value>,
}

/// Writes an active project and route with these members (configs must exist); returns the
/// route id.
pub async fn seed_route(
    db: &Db,
    project: &str,
    route_key: &str,
    route: &RouteSpec<'_>,
    members: &[MemberSpec<'_>],
) -> i64 {
    let policy = if route.policy.is_empty() {
        "primary_backup"
    } else {
        route.policy
    };
    apply(
        db,
        json!({"routes": [{
            "project": project, "route_key": route_key, "policy": policy,
            "policy_config": route.policy_config, "variables": route.variables,
            "prompt": route.prompt, "param_profile": route.param_profile,
            "response_format": route.response_format,
            "members": members.iter().map(|(k, p, w)| json!({"config_key": k, "priority": p, "weight": w})).collect::<Vec<_>>()
        }]}),
    )
    .await;
    route_id(db, project, route_key).await
}

/// Sets one member of an existing route active or not, keeping everything else of the route.
pub async fn set_member_active(
    db: &Db,
    project: &str,
    route_key: &str,
    config_key: &str,
    active: bool,
) {
    let snap = db.snapshot().await.unwrap();
    let mut route: Route = snap
        .routes
        .get(&(project.to_owned(), route_key.to_owned()))
        .cloned()
        .unwrap();
    route.members = route
        .members
        .into_iter()
        .map(|m| Member {
            active: if m.config_key == config_key {
                active
            } else {
                m.active
            },
            ..m
        })
        .collect();
    let cat = Catalog {
        routes: vec![route],
        ..Catalog::default()
    };
    db.apply_catalog(&cat, &keyring(), &|_| None).await.unwrap();
}

/// The id of a route.
pub async fn route_id(db: &Db, project: &str, route_key: &str) -> i64 {
    let sql = "SELECT CAST(r.id AS SIGNED) FROM ai_route_v2 r JOIN ai_project_v2 p ON p.id = r.project_id WHERE p.name = ? AND r.route_key = ?";
    match db.pool().await.unwrap() {
        Pool::MySql(p) => sqlx::query_scalar(sql)
            .bind(project)
            .bind(route_key)
            .fetch_one(p)
            .await
            .unwrap(),
        Pool::Sqlite(p) => sqlx::query_scalar(sql)
            .bind(project)
            .bind(route_key)
            .fetch_one(p)
            .await
            .unwrap(),
    }
}

/// The environment a function process needs to reach this database.
pub fn app_env(tdb: &TestDb) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), tdb.url.clone()),
        ("AI_PEPPER".into(), PEPPER.into()),
        ("AI_RETRY_BASE_MS".into(), "1".into()),
    ]
}

/// A real S3-protocol server on a loopback port: s3s-fs in process (signatures checked), or
/// moto's (`S3Server::moto`: versioned buckets, `If-Match`; its tests are `#[ignore]`d).
pub struct S3Server {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// The directory holding the buckets (s3s-fs; empty for moto).
    pub root: tempfile::TempDir,
    backing: S3Backing,
}

/// What serves an `S3Server`: the in-process s3s-fs task, or the moto process.
enum S3Backing {
    Fs(tokio::task::JoinHandle<()>),
    Moto(std::process::Child),
}

impl S3Server {
    /// Access key the server accepts.
    pub const ACCESS_KEY: &'static str = "AKIDAIRUNNERTEST";
    /// Its secret.
    pub const SECRET_KEY: &'static str = "ai-runner-test-secret-key-0123456789";

    /// Starts the server with these buckets.
    pub async fn start(buckets: &[&str]) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            Self::ACCESS_KEY,
            Self::SECRET_KEY,
        ));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint,
            root,
            backing: S3Backing::Fs(task),
        }
    }

    /// Starts moto's S3 with these buckets, versioning enabled on them when `versioned`.
    pub async fn moto(buckets: &[&str], versioned: bool) -> Self {
        let (endpoint, child) = start_moto().await;
        let server = Self {
            endpoint,
            root: tempfile::tempdir().unwrap(),
            backing: S3Backing::Moto(child),
        };
        let c = server.sdk_client();
        for b in buckets {
            // Listening is not answering: retry the first request until moto serves it.
            let mut made = false;
            for _ in 0..100 {
                if c.create_bucket().bucket(*b).send().await.is_ok() {
                    made = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(made, "moto did not create bucket {b}");
            if versioned {
                use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
                c.put_bucket_versioning()
                    .bucket(*b)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
        }
        server
    }

    /// The settings variables that point ai-runner at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OSS_ENDPOINT", self.endpoint.clone()),
            ("OSS_ACCESS_KEY_ID", Self::ACCESS_KEY.to_owned()),
            ("OSS_ACCESS_KEY_SECRET", Self::SECRET_KEY.to_owned()),
            ("OSS_FORCE_PATH_STYLE", "true".to_owned()),
            ("OSS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// A client of ours for this server.
    pub fn store(&self) -> ai_runner::objects::S3Store {
        ai_runner::objects::S3Store::new(
            Some(&self.endpoint),
            "us-east-1",
            Some(&(
                Self::ACCESS_KEY.to_owned(),
                Secret::new(Self::SECRET_KEY),
                None,
            )),
            true,
        )
    }
}

impl S3Server {
    /// The AWS SDK's own client for this server (what an uploader uses: user metadata, ...).
    pub fn sdk_client(&self) -> aws_sdk_s3::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                Self::ACCESS_KEY,
                Self::SECRET_KEY,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        match &mut self.backing {
            S3Backing::Fs(task) => task.abort(),
            S3Backing::Moto(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `moto_server` on a free loopback port and waits until it listens: its endpoint and
/// process.
async fn start_moto() -> (String, std::process::Child) {
    let port = lambda_api::free_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server must be installed for these tests: pip install 'moto[server]' (bash .ci/run does)");
    assert!(
        lambda_api::wait_listening(port, std::time::Duration::from_secs(30)).await,
        "moto_server did not start"
    );
    (format!("http://127.0.0.1:{port}"), child)
}

/// A real SQS-protocol server: moto's (`pip install 'moto[server]'`, which `.ci/run` does) on a
/// loopback port. Tests that use it are `#[ignore]`d: without moto they are reported as ignored,
/// and run with `--include-ignored` they fail rather than pass.
pub struct SqsServer {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    child: std::process::Child,
}

impl SqsServer {
    /// The credentials moto accepts (any).
    pub const ACCESS_KEY: &'static str = "testing";

    /// Starts moto's server and waits until it answers.
    pub async fn start() -> Self {
        let (endpoint, child) = start_moto().await;
        let server = Self { endpoint, child };
        // Listening is not answering: wait until it serves SQS.
        let client = server.client();
        for _ in 0..100 {
            if client.list_queues().send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        server
    }

    /// The variables that point ai-runner (and the AWS SDK) at this server.
    pub fn env(&self, queue_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("EVAL_QUEUE_URL", queue_url.to_owned()),
            ("AWS_ENDPOINT_URL_SQS", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::ACCESS_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// A plain SDK client of this server (the test's side: create, receive, delete).
    pub fn client(&self) -> aws_sdk_sqs::Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                Self::ACCESS_KEY,
                Self::ACCESS_KEY,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// Creates a queue; returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        let client = self.client();
        let mut last = String::new();
        for _ in 0..50 {
            match client.create_queue().queue_name(name).send().await {
                Ok(out) if out.queue_url().is_some() => {
                    return out.queue_url().unwrap_or_default().to_owned();
                }
                Ok(out) => last = format!("{out:?}"),
                Err(e) => last = format!("{e:?}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto did not create queue {name}: {last}")
    }

    /// Receives every message now in the queue (deleting them): (message id, body).
    pub async fn drain(&self, queue_url: &str) -> Vec<(String, String)> {
        let c = self.client();
        let mut out = Vec::new();
        loop {
            let got = c
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let msgs = got.messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                out.push((
                    m.message_id().unwrap_or_default().to_owned(),
                    m.body().unwrap_or_default().to_owned(),
                ));
                c.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
        out
    }

    /// Our queue client for this server.
    pub fn queue(&self, queue_url: &str) -> ai_runner::queue::SqsQueue {
        ai_runner::queue::SqsQueue::new(
            queue_url,
            Some(&self.endpoint),
            "us-east-1",
            Some(&(
                Self::ACCESS_KEY.to_owned(),
                Secret::new(Self::ACCESS_KEY),
                None,
            )),
        )
    }
}

/// An SQS event (the shape Lambda's event source mapping sends) carrying these messages.
pub fn sqs_event(messages: &[(String, String)]) -> Value {
    serde_json::json!({"Records": messages.iter().map(|(id, body)| serde_json::json!({
        "messageId": id,
        "receiptHandle": format!("rh-{id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1700000000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ai-runner-eval",
        "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

impl Drop for SqsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seeds a config `key` whose prompt asks for JSON about `{{TEXT}}`, answered by `server`.
pub async fn seed_sentiment_config(db: &Db, key: &str, server: &ai_runner::demo::ProviderServer) {
    let url = server.url();
    let mut s = Seed::text(key, &url);
    s.messages = json!([{"role": "user", "content": "判断情绪：{{TEXT}}"}]);
    s.variables = None;
    s.response_format = Some(json!({"type": "json_object"}));
    seed(db, &s).await;
}

/// Two configs on scripted servers: `good` always answers `{"情绪": "积极"}`, `bad` always
/// `{"情绪": "消极"}`.
pub async fn seed_good_and_bad(
    db: &Db,
) -> (
    ai_runner::demo::ProviderServer,
    ai_runner::demo::ProviderServer,
) {
    use ai_runner::demo::{ProviderServer, Reply};
    let good = ProviderServer::start(vec![Reply::content(r#"{"情绪": "积极"}"#)])
        .await
        .unwrap();
    let bad = ProviderServer::start(vec![Reply::content(r#"{"情绪": "消极"}"#)])
        .await
        .unwrap();
    seed_sentiment_config(db, "good", &good).await;
    seed_sentiment_config(db, "bad", &bad).await;
    (good, bad)
}

/// Applies suite `moods` to the evaluation catalog: 3 cases (2 positive, 1 negative) over the
/// targets `good` and `bad` (6 results: `good` passes 2, `bad` passes 1).
pub async fn apply_moods_suite(db: &Db) {
    let doc = json!({"evals": {
        "datasets": [{"name": "moods", "cases": [
            {"key": "happy", "vars": {"TEXT": "太好了"}, "expected": {"情绪": "积极"}},
            {"key": "sad", "vars": {"TEXT": "真糟糕"}, "expected": {"情绪": "消极"}},
            {"key": "fine", "vars": {"TEXT": "开心"}, "expected": {"情绪": "积极"}}
        ]}],
        "suites": [{"name": "moods", "dataset": "moods",
                    "targets": [{"config": "good"}, {"config": "bad"}],
                    "assert": [{"type": "json-path", "path": "$.情绪", "value": "{{expected.情绪}}"}]}]
    }});
    let known = db.snapshot().await.unwrap().known();
    let (evals, findings) = ai_runner::eval::suite::catalog_evals(
        &doc,
        std::path::Path::new("."),
        &Catalog::default(),
        &known,
        &Default::default(),
    );
    let evals = evals.unwrap_or_else(|| panic!("{findings:?}"));
    db.apply_evals(&evals.catalog()).await.unwrap();
}

/// A TCP proxy in front of a server (MariaDB) that a test can cut and restore: cutting closes
/// every open connection and refuses new ones, as an outage or a network partition would.
pub struct TcpProxy {
    /// The loopback port clients connect to.
    pub port: u16,
    up: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards a loopback port to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, _) = tokio::sync::watch::channel(true);
        let up = std::sync::Arc::new(tx);
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = state.subscribe();
                if !*watch.borrow() {
                    continue; // refused: dropped at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async { while watch.changed().await.is_ok() { if !*watch.borrow() { break; } } } => {}
                    }
                });
            }
        });
        Self { port, up, task }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// `url` with its `host:port` replaced by this proxy.
    pub fn url_through(&self, url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let host_start = rest.find('@').map_or(0, |i| i + 1);
        let host_end = rest[host_start..]
            .find('/')
            .map_or(rest.len(), |i| host_start + i);
        format!(
            "{}{}127.0.0.1:{}{}",
            &url[..scheme_end],
            &rest[..host_start],
            self.port,
            &rest[host_end..]
        )
    }

    /// The `host:port` a MySQL URL points at.
    pub fn target_of(url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let host_start = rest.find('@').map_or(0, |i| i + 1);
        let host_end = rest[host_start..]
            .find('/')
            .map_or(rest.len(), |i| host_start + i);
        let hp = &rest[host_start..host_end];
        if hp.contains(':') {
            hp.to_owned()
        } else {
            format!("{hp}:3306")
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request signed by the predecessor's own client helpers (`hmac_headers`, `hmac_sign`), run
/// with CPython from `tests/fixtures/predecessor/hmac_client.py`.
#[derive(Debug, Clone)]
pub struct PySigned {
    /// `hmac_headers(...)`: `X-AK`, `X-Nonce`, `X-Timestamp`, `X-Signature`.
    pub headers: Vec<(String, String)>,
    /// The body as `requests.post(json=payload)` sends it (spaces, `\u` escapes).
    pub body: String,
    /// The compact text v1 signs.
    pub compact: String,
    /// `hmac_sign(sk, method, path, ts, body)`: the raw-body signature.
    pub v2: String,
}

impl PySigned {
    /// The v1 headers with one replaced (tampering).
    pub fn with_header(&self, name: &str, value: &str) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case(name) {
                    (k.clone(), value.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    /// The raw-body scheme's headers: `X-AK`, `X-Timestamp`, `X-Signature-V2`.
    pub fn v2_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "X-AK" || k == "X-Timestamp")
            .cloned()
            .chain([("X-Signature-V2".to_owned(), self.v2.clone())])
            .collect()
    }
}

/// Signs `payload` with the predecessor's helpers under CPython (`ts` and `nonce` default to now
/// and a random nonce, as the helper does).
pub fn python_sign(
    ak: &str,
    sk: &str,
    payload: &Value,
    ts: Option<i64>,
    nonce: Option<&str>,
    path: &str,
) -> PySigned {
    let req = json!({"ak": ak, "sk": sk, "payload": payload, "ts": ts, "nonce": nonce,
                     "method": "POST", "path": path});
    let out = std::process::Command::new("python3")
        .arg(fixture_path("predecessor/hmac_client.py"))
        .arg(req.to_string())
        .output()
        .expect("python3 runs the predecessor's signing helper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    PySigned {
        headers: v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        body: v["body"].as_str().unwrap().to_owned(),
        compact: v["compact"].as_str().unwrap().to_owned(),
        v2: v["v2"].as_str().unwrap().to_owned(),
    }
}

/// An HTTP API (payload 2.0) event, from the captured fixture, for `POST <path>` with this body
/// and these headers, from `source_ip`.
pub fn api_event(path: &str, body: &str, headers: &[(String, String)], source_ip: &str) -> Value {
    let mut ev = fixture_json("aws/apigw/http-v2-post-json-body.json");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["path"] = json!(path);
    ev["requestContext"]["http"]["sourceIp"] = json!(source_ip);
    ev["body"] = json!(body);
    ev["isBase64Encoded"] = json!(false);
    for (k, v) in headers {
        ev["headers"][k.to_ascii_lowercase()] = json!(v);
    }
    ev
}

/// The console (`ai-runner dev`'s server) for `settings`, on a free loopback port with a fixed
/// token, until dropped.
pub struct ConsoleServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ConsoleServer {
    /// Binds and serves (the URL it would print ends with `/?token=<token>`).
    pub async fn start(settings: &Settings, token: &str) -> Self {
        let app = ai_runner::app::App::new(settings).unwrap();
        let l = ai_runner::console::bind(
            app,
            ai_runner::console::Options {
                host: "127.0.0.1".parse().unwrap(),
                port: 0,
                token: Some(token.into()),
            },
        )
        .await
        .unwrap();
        assert!(
            l.url().ends_with(&format!("/?token={token}")),
            "{}",
            l.url()
        );
        let base = format!("http://127.0.0.1:{}", l.addr().port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(l.serve(async {
            let _ = rx.await;
        }));
        Self {
            base,
            stop: Some(tx),
        }
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// `ai-runner serve`'s server for `settings`, on a free loopback port, until dropped.
pub struct ServeServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ServeServer {
    /// Binds and serves.
    pub async fn start(settings: &Settings) -> Self {
        let app = ai_runner::app::App::new(settings).unwrap();
        let l = ai_runner::server::bind(
            app,
            ai_runner::server::Options {
                host: "127.0.0.1".parse().unwrap(),
                port: 0,
            },
        )
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{}", l.addr().port());
        assert_eq!(l.base_url(), format!("{base}/v1"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(l.serve(async {
            let _ = rx.await;
        }));
        Self {
            base,
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// Asks it to stop (as SIGTERM does) and waits until it has: every call in flight finished.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await.unwrap().unwrap();
        }
    }
}

impl Drop for ServeServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
