//! `doctor` and the predecessor's `init`: read-only readiness checks, each failure with its
//! stable code and a hint. `init` prints the predecessor's summary lines first and, like it,
//! creates `./tmp`; neither writes anything else.

use std::time::Duration;

use ai_runner::Code;
use ai_runner::health::{self, Check, Scope};
use clap::Args;
use serde::Serialize;

use crate::context::Cx;
use crate::failure::{self, Failure};
use crate::output::{self, outln};

/// `init`.
#[derive(Args)]
pub struct InitArgs {
    /// Only the environment.
    #[arg(long, conflicts_with = "db_only")]
    pub env_only: bool,
    /// Only the database.
    #[arg(long)]
    pub db_only: bool,
    /// Accepted for the predecessor's scripts (its dev server port); not used by the check.
    #[arg(long)]
    pub dev_port: Option<u16>,
    /// Seconds to wait for each connection.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// `doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Only the environment.
    #[arg(long, conflicts_with = "db_only")]
    pub env_only: bool,
    /// Only the database (reachability, schema, keys).
    #[arg(long)]
    pub db_only: bool,
    /// Seconds to wait for each connection (database, provider host lookups).
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl DoctorArgs {
    /// Runs the checks and prints them.
    pub async fn run(self, _cx: &Cx) -> Result<(), Failure> {
        let checks = health::run(scope(self.env_only, self.db_only), timeout(self.timeout)?).await;
        if self.json {
            output::pretty(&checks.iter().map(Shown::from).collect::<Vec<_>>());
        } else {
            print_checks(&checks);
        }
        verdict(&checks)
    }
}

impl InitArgs {
    /// The predecessor's summary, then every check.
    pub async fn run(self, _cx: &Cx) -> Result<(), Failure> {
        let checks = health::run(scope(self.env_only, self.db_only), timeout(self.timeout)?).await;
        let tmp = std::fs::create_dir_all("tmp");
        outln!("=== ai-runner init summary ===");
        let group = |names: &[&str]| {
            let mut of = checks.iter().filter(|c| names.contains(&c.name)).peekable();
            of.peek()?;
            Some(match of.find(|c| !c.ok) {
                None => "OK".to_owned(),
                Some(c) => format!("FAIL ({} {})", c.code.map_or("", Code::as_str), c.detail),
            })
        };
        if let Some(s) = group(&["settings", "pepper"]) {
            outln!("config: {s}");
        }
        // The predecessor checked its Python packages here; one binary has none to miss.
        outln!("python_deps: OK (none needed)");
        outln!(
            "tmp: {}",
            match &tmp {
                Ok(()) => "OK".to_owned(),
                Err(e) => format!("FAIL ({e})"),
            }
        );
        if let Some(s) = group(&["database", "schema", "keys"]) {
            outln!("db: {s}");
        }
        outln!();
        print_checks(&checks);
        tmp.map_err(|e| Failure::found(Code::IoError, format!("cannot create ./tmp: {e}")))?;
        verdict(&checks)
    }
}

fn scope(env_only: bool, db_only: bool) -> Scope {
    match (env_only, db_only) {
        (true, _) => Scope::Env,
        (false, true) => Scope::Db,
        (false, false) => Scope::All,
    }
}

fn timeout(secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Failure::usage(
                Code::InvalidInput,
                format!("--timeout must be a positive number of seconds, not {secs}"),
            )
        })
}

/// A check as printed, with its hint.
#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    ok: bool,
    detail: &'a str,
    code: Option<Code>,
    hint: Option<&'static str>,
}

impl<'a> From<&'a Check> for Shown<'a> {
    fn from(c: &'a Check) -> Self {
        Self {
            name: c.name,
            ok: c.ok,
            detail: &c.detail,
            code: c.code,
            hint: c.code.and_then(failure::hint),
        }
    }
}

fn print_checks(checks: &[Check]) {
    for c in checks {
        match c.code {
            None => outln!("ok   {:9} {}", c.name, c.detail),
            Some(code) => {
                outln!("FAIL {:9} {code}: {}", c.name, c.detail);
                if let Some(h) = failure::hint(code) {
                    outln!("     hint: {h}");
                }
            }
        }
    }
}

fn verdict(checks: &[Check]) -> Result<(), Failure> {
    match checks.iter().filter(|c| !c.ok).count() {
        0 => Ok(()),
        n => Err(Failure::found(
            Code::DoctorFailed,
            format!("{n} check(s) failed"),
        )),
    }
}
