//! The local web console behind `ai-runner dev` (feature `console`): the catalog, try-it (dry run
//! or an ordinary audited run with trigger `console`), the audit trail, uploads and evaluation
//! runs, plus the predecessor's `GET /routes` and `POST /invoke`. An edge: it reads through the
//! store and runs through the runner, and decides nothing the core decides.
//!
//! Invariants: every request passes [`guard`] first (the token, the host, the origin of a
//! state-changing request); every page is server-rendered HTML with every stored or typed value
//! escaped by [`crate::html::escape`] ([`page`]) and no script (the Content-Security-Policy
//! forbids scripts but the evaluation report's own one, by hash); no page or JSON answer carries a
//! key, a key blob or the pepper (dry runs show the masked `Authorization` header only).

mod compat;
mod guard;
mod page;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use rand::RngCore;

use crate::app::App;
use crate::code::Code;

/// Where and how the console listens.
#[derive(Clone)]
pub struct Options {
    /// Address to bind (default 127.0.0.1: only this machine).
    pub host: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
    /// A fixed token (scripts that start the console); a random one when `None`.
    pub token: Option<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A fixed token too short to protect anything.
    #[error("the console token must be at least 16 characters of [A-Za-z0-9_-]")]
    WeakToken,
}

impl ConsoleError {
    /// The stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Bind { .. } => Code::ConsoleBindFailed,
            Self::WeakToken => Code::InvalidInput,
        }
    }
}

/// What every request borrows: the application state and the console's own secrets.
struct Console {
    app: App,
    token: String,
    /// The cookie that admits the browser after the first visit (named per port).
    cookie: String,
    /// What the cookie carries: derived from the token, the port and a random value of this
    /// process ([`session_value`]), never the token itself (cookies ignore ports: every server
    /// on this host receives it).
    session: String,
    port: u16,
    /// The bound address as a `Host` names it (`127.0.0.2`, `[::1]`).
    bound: String,
    /// Bound to a loopback address: only `Host: localhost|127.0.0.1|[::1]:port` is served.
    loopback: bool,
}

/// The cookie's value for a console on `port` with `token`: SHA-256 over a random value of
/// this process, the port and the token (a server on another port that receives the cookie
/// learns neither the token nor a value that outlives this process).
fn session_value(token: &str, port: u16) -> String {
    use sha2::{Digest, Sha256};
    let mut salt = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    let mut h = Sha256::new();
    h.update(b"ai-runner-console-session\0");
    h.update(salt);
    h.update(port.to_be_bytes());
    h.update(token.as_bytes());
    crate::hex::encode(&h.finalize())
}

/// A bound console, not yet serving.
pub struct Listening {
    listener: tokio::net::TcpListener,
    state: Arc<Console>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Listening")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds the console's address; nothing is served until [`Listening::serve`].
pub async fn bind(app: App, options: Options) -> Result<Listening, ConsoleError> {
    let token = match options.token {
        Some(t) => {
            let ok = t.len() >= 16
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(ConsoleError::WeakToken);
            }
            t
        }
        None => {
            let mut b = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut b);
            crate::hex::encode(&b)
        }
    };
    let want = SocketAddr::new(options.host, options.port);
    let listener = tokio::net::TcpListener::bind(want)
        .await
        .map_err(|source| ConsoleError::Bind { addr: want, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ConsoleError::Bind { addr: want, source })?;
    Ok(Listening {
        listener,
        state: Arc::new(Console {
            app,
            cookie: format!("ai_runner_console_{}", addr.port()),
            session: session_value(&token, addr.port()),
            token,
            port: addr.port(),
            bound: host_name(addr.ip()),
            loopback: options.host.is_loopback(),
        }),
        addr,
    })
}

impl Listening {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether only this machine can reach it.
    pub fn is_loopback(&self) -> bool {
        self.state.loopback
    }

    /// The URL to open: it carries the token once; the browser keeps a cookie afterwards.
    pub fn url(&self) -> String {
        // Listening on every address (0.0.0.0, ::): this machine is one of them.
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1"
        } else {
            self.state.bound.as_str()
        };
        format!(
            "http://{host}:{}/?token={}",
            self.addr.port(),
            self.state.token
        )
    }

    /// Serves until `shutdown` completes, then closes the database pool.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = router(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        state.app.runner.store().close().await;
        served
    }
}

/// An address as a URL's host (`[::1]` for IPv6).
fn host_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    }
}

fn router(state: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(views::catalog))
        .route("/configs/{key}", get(views::config))
        .route("/routes/{project}/{route}", get(views::route))
        .route("/try", post(views::try_it))
        .route("/audit", get(views::trail))
        .route("/audit/{id}", get(views::detail))
        .route("/audit/{id}/body/{which}", get(views::spilled_body))
        .route("/trace/{trace}", get(views::trace))
        .route("/uploads", get(views::uploads))
        .route("/uploads/{id}/result", get(views::job_result))
        .route("/evals", get(views::evals))
        .route("/evals/{run}", get(views::eval_run))
        .route("/assets/console.css", get(page::stylesheet))
        .route("/routes", get(compat::routes))
        .route("/invoke", post(compat::invoke))
        .fallback(views::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::admit,
        ))
        .with_state(state)
}
