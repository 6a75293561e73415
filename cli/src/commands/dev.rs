//! `dev`: the local web console ([`ai_runner::console`]), served until Ctrl-C. Demo endpoints the
//! stored configs point at (quickstart's) are served as long as it runs.

use std::io::Write;

use ai_runner::Code;
use ai_runner::app::App;
use ai_runner::console::{self, Options};
use clap::Args;

use crate::context::Cx;
use crate::failure::Failure;

/// `dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Address to listen on: `127.0.0.1` (this machine only), `localhost`, or another address,
    /// which exposes the console (behind its token) to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8899)]
    pub port: u16,
    /// Open the console in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Use this token instead of a random one (at least 16 of A-Z a-z 0-9 _ -).
    #[arg(long, env = "AI_RUNNER_DEV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl DevArgs {
    /// Binds, prints the URL with its token, serves.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let host = super::parse_host(&self.host)?;
        let app = App::new(cx.settings()?)?;
        let _demo = ai_runner::demo::serve_stored(app.runner.store()).await;
        let listening = console::bind(
            app,
            Options {
                host,
                port: self.port,
                token: self.token,
            },
        )
        .await
        .map_err(|e| Failure::usage(e.code(), e.to_string()))?;
        let url = listening.url();
        if !listening.is_loopback() {
            let _ = writeln!(
                std::io::stderr(),
                "WARNING: the console listens on {} and can be reached from other machines.\n\
                 Anyone with its token can spend money with your provider keys and read the audit trail.\n\
                 Keep the token secret, or use --host 127.0.0.1 (with an SSH tunnel for remote use).",
                listening.addr()
            );
        }
        // Whoever started us may stop reading stdout (a script that took the URL): a closed
        // pipe must not stop the console, so nothing here panics on a failed write.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ai-runner console: {url}\n\
             The token in that URL is required on every request; the browser keeps it in a cookie after the first visit.\n\
             Ctrl-C stops it."
        )
        .and_then(|()| out.flush());
        drop(out);
        let opened = if self.open { open(&url) } else { None };
        let served = listening
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| {
                Failure::new(Code::ConsoleBindFailed, format!("the console stopped: {e}"))
            });
        if let Some(page) = opened {
            let _ = std::fs::remove_file(page);
        }
        served
    }
}

/// Writes the redirect page under `dir`: a name nobody can guess (16 random bytes), created only
/// if it does not exist, readable by this user only (0600), so another local user can neither
/// pre-create it nor read the token in it.
fn private_page(dir: &std::path::Path, url: &str) -> std::io::Result<std::path::PathBuf> {
    let mut name = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut name);
    let page = dir.join(format!(
        "ai-runner-console-{}.html",
        ai_runner::hex::encode(&name)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&page)?;
    write!(
        f,
        "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={url}\"><a href=\"{url}\">ai-runner console</a>"
    )?;
    Ok(page)
}

/// Opens the console in the default browser through a private (0600) page that redirects to the
/// URL, as Jupyter does: the token never appears on a command line other users can list.
fn open(url: &str) -> Option<std::path::PathBuf> {
    let written = private_page(&std::env::temp_dir(), url);
    let page = match &written {
        Ok(p) => p.clone(),
        Err(e) => {
            eprintln!("could not write the page that opens the console ({e}); open the URL above");
            return None;
        }
    };
    let written = written.map(drop);
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = written.and_then(|()| {
        std::process::Command::new(opener)
            .arg(&page)
            .spawn()
            .map(drop)
    }) {
        eprintln!("could not open a browser ({opener}: {e}); open the URL above");
    }
    Some(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_page_has_a_name_no_one_can_guess_and_only_its_owner_can_read() {
        let dir = tempfile::tempdir().unwrap();
        // The old, predictable name, pre-created by someone else, is never the one written.
        let planted = dir.path().join("ai-runner-console-8899.html");
        std::fs::write(&planted, "planted").unwrap();
        let a = private_page(dir.path(), "http://127.0.0.1:8899/?token=t").unwrap();
        let b = private_page(dir.path(), "http://127.0.0.1:8899/?token=t").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, planted);
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "planted");
        assert!(std::fs::read_to_string(&a).unwrap().contains("token=t"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
