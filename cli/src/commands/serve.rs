//! `serve`: the OpenAI-compatible API and the JSON API as a long-running server
//! ([`ai_runner::server`]) until SIGTERM or Ctrl-C, which stop accepting and wait for the calls in
//! flight and their audit rows. Demo endpoints the stored configs point at (quickstart's) are
//! served as long as it runs.

use std::io::Write;

use ai_runner::Code;
use ai_runner::app::App;
use ai_runner::server::{self, Options};
use clap::Args;

use crate::context::Cx;
use crate::failure::Failure;

/// `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on: `127.0.0.1` (this machine only), `localhost`, or another address,
    /// which needs access keys (`ACCESS_MODE`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

impl ServeArgs {
    /// Binds, prints the base URL, serves until stopped.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let host = super::parse_host(&self.host)?;
        let app = App::new(cx.settings()?)?;
        let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
        let listening = server::bind(
            app,
            Options {
                host,
                port: self.port,
            },
        )
        .await
        .map_err(|e| Failure::usage(e.code(), e.to_string()))?;
        if !listening.is_loopback() {
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: ai-runner serve listens on {} and can be reached from other machines; every call needs an access key.",
                listening.addr()
            );
        }
        // A script may read the URL and close the pipe: nothing here panics on a failed write.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ai-runner serve: {} (OpenAI base URL), /run-once, /run-route, /health\n\
             SIGTERM or Ctrl-C stops it after the calls in flight.",
            listening.base_url()
        )
        .and_then(|()| out.flush());
        drop(out);
        listening
            .serve(stopped())
            .await
            .map_err(|e| Failure::new(Code::ConsoleBindFailed, format!("the server stopped: {e}")))
    }
}

/// Resolves on SIGTERM (containers, systemd) or Ctrl-C.
async fn stopped() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
