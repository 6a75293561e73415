//! `access create / list / disable / enable / rotate / usage`: the keys API calls use, signed or
//! bearer (the library's [`ai_runner::store::access`] stores them, [`ai_runner::access`] checks
//! calls).
//!
//! Invariants: a secret or a bearer token is printed once, to stdout, by `create` or `rotate`
//! (the note that it will not be shown again goes to stderr); `list` shows a key's form, never
//! its secret, token or digest.

use std::time::Duration;

use ai_runner::Code;
use ai_runner::model::access::{KeyForm, KeyOwner, Scope};
use ai_runner::ports::AccessStore;
use ai_runner::store::access::{KeyError, NewKey};
use clap::{Args, Subcommand};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `access ...`.
#[derive(Args)]
pub struct AccessArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// `access ...`.
#[derive(Subcommand)]
pub enum AccessCommand {
    /// Create a key and print its secret once (it is stored only encrypted), or with `--bearer`
    /// its token (stored only as a digest).
    Create(AccessCreate),
    /// List the keys (never a secret).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key (its calls get AUTH_KEY_DISABLED from now on).
    Disable {
        /// The access key id.
        access_key_id: String,
    },
    /// Enable a disabled key again.
    Enable {
        /// The access key id.
        access_key_id: String,
    },
    /// Give a key a new secret, or a bearer key a new token (printed once); the old one keeps
    /// working for the grace period.
    Rotate {
        /// The access key id.
        access_key_id: String,
        /// How long the old secret still works: `90s`, `30m`, `24h`, `7d`; `0` ends it now.
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Calls let through and refused per key and UTC day.
    Usage {
        /// Only this key.
        access_key_id: Option<String>,
        /// Days back from today (UTC), today included.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `access create`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["project", "user"])))]
pub struct AccessCreate {
    /// A project credential: only this project's routes.
    #[arg(long)]
    pub project: Option<String>,
    /// A user key, owned by this user (created if missing).
    #[arg(long)]
    pub user: Option<String>,
    /// Projects it may run routes of: `*`, `a,b` or `prefix*` (default `*`).
    #[arg(long)]
    pub projects: Option<String>,
    /// Routes it may run, as `project/route_key` patterns (default `*`).
    #[arg(long)]
    pub routes: Option<String>,
    /// Config keys it may run directly with run-once (default: `*` for user keys, none for
    /// project keys).
    #[arg(long)]
    pub configs: Option<String>,
    /// May ask for dry runs (they show prompts and the request, key masked).
    #[arg(long)]
    pub allow_dry_run: bool,
    /// May start evaluation runs.
    #[arg(long)]
    pub allow_eval: bool,
    /// Calls per UTC day (0 or absent: unlimited).
    #[arg(long)]
    pub daily_quota: Option<u32>,
    /// Requests per second (0 or absent: unlimited).
    #[arg(long)]
    pub rps: Option<u32>,
    /// An allowed caller address or network (repeatable; none: any address).
    #[arg(long = "allow-ip")]
    pub allow_ips: Vec<String>,
    /// Expires after this long: `30m`, `12h`, `90d`.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// A bearer key: its token (`air-<id>-<secret>`) is sent as `Authorization: Bearer ...`, as
    /// OpenAI SDKs do, instead of signing requests; printed once, stored only as a digest.
    #[arg(long)]
    pub bearer: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub(crate) fn parse_span(text: &str) -> Result<Duration, Failure> {
    let text = text.trim();
    let (num, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad_span(text))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad_span(text)),
    };
    Ok(Duration::from_secs(secs))
}

fn bad_span(text: &str) -> Failure {
    Failure::usage(
        Code::InvalidInput,
        format!("{text:?} is not a duration like 90s, 30m, 24h or 7d"),
    )
}

fn key_failure(e: KeyError) -> Failure {
    match e {
        KeyError::NotFound(m) => Failure::usage(Code::UnknownReference, m),
        KeyError::Invalid(m) => Failure::usage(Code::InvalidInput, m),
        KeyError::Crypto(c) => c.into(),
        KeyError::Store(s) => s.into(),
    }
}

fn ms_after(d: Duration) -> i64 {
    ai_runner::model::now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl AccessArgs {
    /// Runs the access command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        match self.command {
            AccessCommand::Create(c) => create(cx, c).await,
            AccessCommand::List { json } => {
                let keys = db.list_access_keys().await?;
                if json {
                    output::pretty(&keys);
                    return Ok(());
                }
                for k in &keys {
                    let owner = match &k.owner {
                        KeyOwner::Project(p) => format!("project {p}"),
                        KeyOwner::User(u) => format!("user {u}"),
                    };
                    outln!(
                        "{}  {}  {}  {}  routes {}  configs {}{}{}  quota {}/day  {} rps",
                        k.access_key_id,
                        k.form,
                        k.status,
                        owner,
                        k.scope.routes,
                        k.scope.configs,
                        if k.scope.dry_run { "  dry-run" } else { "" },
                        if k.scope.eval { "  eval" } else { "" },
                        k.daily_quota.map_or("∞".into(), |q| q.to_string()),
                        k.rps_limit.map_or("∞".into(), |q| q.to_string()),
                    );
                }
                if keys.is_empty() {
                    outln!("no access keys; `ai-runner access create --project P` makes one");
                }
                Ok(())
            }
            AccessCommand::Disable { access_key_id } => status(cx, &access_key_id, false).await,
            AccessCommand::Enable { access_key_id } => status(cx, &access_key_id, true).await,
            AccessCommand::Rotate {
                access_key_id,
                grace,
            } => {
                let until = ms_after(parse_span(&grace)?);
                let form = db.find_key(&access_key_id).await?.map(|k| k.form());
                let secret = db
                    .rotate_access_key(cx.keyring()?, &access_key_id, until)
                    .await
                    .map_err(key_failure)?;
                if form == Some(KeyForm::Bearer) {
                    outln!("{}", secret.expose());
                    eprintln!(
                        "access key {access_key_id} (bearer): the new token is above and is not shown again; the old token works until {grace} from now"
                    );
                    return Ok(());
                }
                outln!("access key: {access_key_id}");
                outln!("new secret: {}", secret.expose());
                outln!(
                    "the old secret works until {grace} from now; this secret is not shown again"
                );
                Ok(())
            }
            AccessCommand::Usage {
                access_key_id,
                days,
                json,
            } => {
                let since_ms =
                    ai_runner::model::now_ms() - i64::from(days.saturating_sub(1)) * 86_400_000;
                let since = utc_day(since_ms);
                let rows = db.access_usage(access_key_id.as_deref(), &since).await?;
                if json {
                    output::pretty(&rows);
                    return Ok(());
                }
                outln!(
                    "{:<12} {:<28} {:>10} {:>10}",
                    "day",
                    "access key",
                    "calls",
                    "refused"
                );
                for r in &rows {
                    outln!(
                        "{:<12} {:<28} {:>10} {:>10}",
                        r.day,
                        r.access_key_id,
                        r.granted,
                        r.refused
                    );
                }
                Ok(())
            }
        }
    }
}

async fn status(cx: &Cx, ak: &str, active: bool) -> Result<(), Failure> {
    if cx.db()?.set_access_key_status(ak, active).await? {
        outln!("{ak} {}", if active { "enabled" } else { "disabled" });
        Ok(())
    } else {
        Err(Failure::usage(
            Code::AuthKeyUnknown,
            format!("no access key {ak:?}"),
        ))
    }
}

async fn create(cx: &Cx, c: AccessCreate) -> Result<(), Failure> {
    let owner = match (c.project, c.user) {
        (Some(p), _) => KeyOwner::Project(p),
        (None, Some(u)) => KeyOwner::User(u),
        (None, None) => {
            return Err(Failure::usage(
                Code::InvalidInput,
                "say whose key it is: --project P or --user U",
            ));
        }
    };
    for ip in &c.allow_ips {
        if !ai_runner::access::is_ip_entry(ip) {
            return Err(Failure::usage(
                Code::InvalidInput,
                format!("--allow-ip {ip:?} is not an IP address or network (10.0.0.0/8)"),
            ));
        }
    }
    let expires_ms = c
        .expires_in
        .as_deref()
        .map(parse_span)
        .transpose()?
        .map(ms_after);
    let new = NewKey {
        scope: Scope::with(
            &owner,
            c.projects.as_deref(),
            c.routes.as_deref(),
            c.configs.as_deref(),
            c.allow_dry_run,
            c.allow_eval,
        ),
        owner,
        daily_quota: c.daily_quota.filter(|q| *q > 0),
        rps_limit: c.rps.filter(|r| *r > 0),
        allow_ips: c.allow_ips,
        expires_ms,
        form: if c.bearer {
            KeyForm::Bearer
        } else {
            KeyForm::Signed
        },
    };
    let (ak, secret) = cx
        .db()?
        .create_access_key(cx.keyring()?, &new)
        .await
        .map_err(key_failure)?;
    if new.form == KeyForm::Bearer {
        if c.json {
            output::pretty(&serde_json::json!({
                "access_key_id": ak, "form": new.form, "token": secret.expose(), "scope": new.scope,
                "daily_quota": new.daily_quota, "rps_limit": new.rps_limit,
                "allow_ips": new.allow_ips, "expires_ms": new.expires_ms,
            }));
        } else {
            outln!("{}", secret.expose());
        }
        eprintln!(
            "access key {ak} (bearer): keep the token now; it is stored only as a digest and not shown again"
        );
        return Ok(());
    }
    if c.json {
        output::pretty(&serde_json::json!({
            "access_key_id": ak, "form": new.form, "secret": secret.expose(), "scope": new.scope,
            "daily_quota": new.daily_quota, "rps_limit": new.rps_limit,
            "allow_ips": new.allow_ips, "expires_ms": new.expires_ms,
        }));
    } else {
        outln!("access key: {ak}");
        outln!("secret:     {}", secret.expose());
        outln!("keep the secret now: it is stored only encrypted and not shown again");
    }
    Ok(())
}

/// `YYYY-MM-DD` (UTC) of an epoch-ms instant.
pub(crate) fn utc_day(ms: i64) -> String {
    ai_runner::model::cost::Period::Day.window(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_days_parse() {
        assert_eq!(parse_span("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_span("90").unwrap(), Duration::from_secs(90));
        assert!(parse_span("1w").is_err() && parse_span("h").is_err());
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(1_764_547_200_000), "2025-12-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
    }
}
