//! `ai-runner serve` (feature `server`): a long-running HTTP server over the same [`App`] the
//! functions build, for containers, VMs, a sidecar or a laptop. It serves the OpenAI-compatible
//! API (`POST /v1/chat/completions`, streaming included, and `GET /v1/models`), the run-once and
//! run-route JSON API (`POST /run-once`, `POST /run-route`) and `GET /health`. An edge: it moves
//! bytes; parsing and rendering are [`crate::openai`]'s, admission [`crate::access`]'s, runs the
//! runner's.
//!
//! Invariants: every call but `/health` passes [`access::check`] before anything is resolved (on
//! loopback with `ACCESS_MODE=iam` there is no platform in front, and the check lets it through;
//! off loopback [`bind`] refuses to start unless the mode asks for access keys); each run is
//! spawned on its own task, so a caller that disconnects never cancels a run halfway: its audit
//! row is written all the same (a streaming caller's with `CLIENT_DISCONNECTED`); shutdown stops
//! accepting, then waits for every run in flight and its audit row; sockets set `TCP_NODELAY`.

mod chat;
mod json_api;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;

use crate::access::{self, Granted, HttpCall};
use crate::app::App;
use crate::code::Code;
use crate::model::access::Action;
use crate::openai::ApiError;

/// Where the server listens.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Address to bind (default 127.0.0.1: only this machine).
    pub host: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Off loopback, anyone who reaches the port could spend the provider keys.
    #[error(
        "serving on {0} (not loopback) needs access keys: set ACCESS_MODE to bearer (the OpenAI SDKs' keys), keys or hmac, or listen on 127.0.0.1"
    )]
    OpenWithoutKeys(IpAddr),
}

impl ServerError {
    /// The stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Bind { .. } => Code::ConsoleBindFailed,
            Self::OpenWithoutKeys(_) => Code::InvalidInput,
        }
    }
}

/// What every request borrows.
struct Server {
    app: App,
    /// Runs in flight (spawned tasks), and the signal that one ended.
    runs: AtomicUsize,
    ended: tokio::sync::Notify,
}

/// Counts a run in flight for as long as it lives.
struct InFlight(Arc<Server>);

impl InFlight {
    fn new(s: &Arc<Server>) -> Self {
        s.runs.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(s))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.runs.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

/// A bound server, not yet serving.
pub struct Listening {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    server: Arc<Server>,
}

/// Binds the address. Off loopback, refuses to start unless calls need access keys.
pub async fn bind(app: App, options: Options) -> Result<Listening, ServerError> {
    if !options.host.is_loopback() && !app.access().mode.needs_key() {
        return Err(ServerError::OpenWithoutKeys(options.host));
    }
    let addr = SocketAddr::new(options.host, options.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok(Listening {
        listener,
        addr,
        server: Arc::new(Server {
            app,
            runs: AtomicUsize::new(0),
            ended: tokio::sync::Notify::new(),
        }),
    })
}

impl Listening {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether only this machine can reach it.
    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// The base URL an OpenAI SDK takes (`http://host:port/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets open requests finish and
    /// waits for every run in flight (its audit row included).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let server = Arc::clone(&self.server);
        let routes = Router::new()
            .route("/health", get(health))
            .route("/v1/models", get(chat::models))
            .route("/v1/models/{*id}", get(chat::model))
            .route("/v1/chat/completions", post(chat::completions))
            .route("/run-once", post(json_api::run_once))
            .route("/run-route", post(json_api::run_route))
            .fallback(not_found)
            // Bodies are read (and limited) by the handlers, which answer in their own shape.
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&server));
        let listener = self.listener.tap_io(|tcp| {
            // Without it a small answer can wait ~40 ms for a delayed ACK.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        loop {
            let ended = server.ended.notified();
            if server.runs.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            ended.await;
        }
    }
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found() -> Response {
    error(&ApiError::new(
        Code::InvalidInput,
        "no such endpoint: this server serves /v1/chat/completions, /v1/models, /run-once, /run-route and /health",
    )
    .with_status(404))
}

/// An HTTP call as [`access::check`] reads it.
fn http_call(
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    peer: SocketAddr,
) -> HttpCall {
    HttpCall {
        method: method.to_owned(),
        paths: vec![path.to_owned()],
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
        source_ip: Some(peer.ip().to_canonical().to_string()),
        principal: None,
    }
}

/// Admits a call asking for `action` (`None`: a body that did not parse, which is authenticated
/// and counted before it is refused).
async fn admit(s: &Server, call: &HttpCall, action: Option<&Action>) -> Result<Granted, ApiError> {
    access::check(
        s.app.runner.store(),
        s.app.runner.keyring(),
        s.app.access(),
        call,
        action,
        crate::model::now_ms(),
    )
    .await
    .map_err(|d| {
        tracing::warn!(code = %d.code, access_key_id = d.access_key_id.as_deref().unwrap_or(""),
            source_ip = call.source_ip.as_deref().unwrap_or(""), "API call refused");
        ApiError::denied(&d)
    })
}

/// Reads the body up to the limit.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| crate::openai::too_large(limit))
}

/// An OpenAI error answer.
fn error(e: &ApiError) -> Response {
    rendered(crate::openai::render::error(e))
}

/// An answer the protocol module rendered.
fn rendered(a: crate::openai::render::Rendered) -> Response {
    let mut r = (status(a.status), a.body).into_response();
    add_headers(r.headers_mut(), a.headers);
    r
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn add_headers(h: &mut HeaderMap, extra: Vec<(&'static str, String)>) {
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            // `content-type` replaces axum's default; the others are ours, one value each.
            h.insert(HeaderName::from_static(name), v);
        }
    }
}
