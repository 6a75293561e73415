//! The quickstart's demo provider: a loopback endpoint whose stored URL's path picks a fixed
//! scenario, started again on demand by later CLI commands (`serve_stored`) so the configs
//! quickstart leaves behind keep answering. Only ever binds 127.0.0.1.

use axum::http::HeaderMap;
use axum::response::Response;

use super::scripted::{Reply, probe_media, render};

/// The config_key quickstart installs.
pub const QUICKSTART_CONFIG_KEY: &str = "quickstart-demo";

/// What the demo provider answers (Chinese JSON, so it passes the no-English check).
pub const DEMO_ANSWER: &str = r#"{"摘要": "发布顺利，测试全部通过。", "情绪": "积极"}"#;

/// The demo endpoint's default port (`AI_RUNNER_DEMO_PORT`; 0 picks a free one).
pub const DEFAULT_DEMO_PORT: u16 = 8898;

/// The `provider` label of every demo connection (how later commands find them).
pub const DEMO_PROVIDER: &str = "demo";

/// What a demo endpoint does, chosen by the path of the stored URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Answers [`DEMO_ANSWER`].
    Answer,
    /// Always answers 503 (the failover demo's first member).
    Outage,
    /// Looks at the audio it was sent and says how many bytes it got ([`Reply::MediaProbe`]).
    Media,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Answer, Scenario::Outage, Scenario::Media];

    fn segment(self) -> &'static str {
        match self {
            Scenario::Answer => "answer",
            Scenario::Outage => "outage",
            Scenario::Media => "media",
        }
    }

    fn reply(self) -> Reply {
        match self {
            Scenario::Answer => Reply::content(DEMO_ANSWER),
            Scenario::Outage => Reply::error(503, "demo outage: this member always fails"),
            Scenario::Media => Reply::MediaProbe,
        }
    }

    /// The full chat-completions URL of this scenario on a demo endpoint at `port`.
    pub fn url(self, port: u16) -> String {
        format!(
            "http://127.0.0.1:{port}/demo/{}/v1/chat/completions",
            self.segment()
        )
    }
}

/// What `/demo/ping` answers, so a command can tell a demo endpoint from anything else.
const PING: &str = "ai-runner demo provider";

/// A running demo endpoint (all scenarios) on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct DemoServer {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DemoServer {
    /// Serves the demo scenarios on `127.0.0.1:port` (0 = any free port), or fails if the port
    /// is taken.
    pub async fn bind(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        Ok(Self::serve(listener))
    }

    /// Like [`DemoServer::bind`], but when the port is taken by another ai-runner demo endpoint,
    /// that one is used instead (every demo endpoint answers the same way).
    pub async fn ensure(port: u16) -> std::io::Result<Self> {
        match Self::bind(port).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_demo(port).await => {
                Ok(Self { port, task: None })
            }
            other => other,
        }
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let port = listener.local_addr().map_or(0, |a| a.port());
        let mut app =
            axum::Router::new().route("/demo/ping", axum::routing::get(|| async { PING }));
        for sc in Scenario::ALL {
            app = app.route(
                &format!("/demo/{}/v1/chat/completions", sc.segment()),
                axum::routing::post(
                    move |headers: HeaderMap, body: axum::body::Bytes| async move {
                        answer(sc.reply(), &headers, &body).await
                    },
                ),
            );
        }
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            task: Some(task),
        }
    }

    /// The port it answers on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn is_demo(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/demo/ping");
    match crate::provider::plain_client().get(url).send().await {
        Ok(r) => r.text().await.is_ok_and(|t| t == PING),
        Err(_) => false,
    }
}

async fn answer(reply: Reply, headers: &HeaderMap, body: &[u8]) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reply = match reply {
        Reply::MediaProbe => probe_media(body).await,
        Reply::Lookup { answers, default } => {
            Reply::content(&super::scripted::lookup(body, &answers, &default))
        }
        other => other,
    };
    render(reply, auth)
}

/// The demo endpoints the stored configuration points at: the ports of active demo connections
/// on 127.0.0.1. A command serves these before it runs anything ([`serve_stored`]).
pub async fn stored_ports(db: &crate::store::Db) -> Result<Vec<u16>, crate::ports::StoreError> {
    // One query: every CLI command that runs configs asks this.
    let mut ports: Vec<u16> = db
        .active_connection_urls(DEMO_PROVIDER)
        .await?
        .iter()
        .filter_map(|u| demo_port(u))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

fn demo_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    let (port, path) = rest.split_once('/')?;
    path.starts_with("demo/").then(|| port.parse().ok())?
}

/// Serves every demo endpoint the stored configuration points at, for as long as the returned
/// servers live: so `run-once quickstart-demo` answers after quickstart has exited. A port taken
/// by something else is logged and skipped (the run then fails with a clear network error).
pub async fn serve_stored(db: &crate::store::Db) -> Vec<DemoServer> {
    let ports = match stored_ports(db).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(code = %e.code(), "no demo endpoints looked up");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for port in ports {
        match DemoServer::ensure(port).await {
            Ok(s) => out.push(s),
            Err(e) => tracing::warn!(port, error = %e, "cannot serve the demo endpoint"),
        }
    }
    out
}
