//! `budget set / list / remove / release`: the limits calls are reserved against, and the
//! reservations of calls that died.

use ai_runner::Code;
use ai_runner::model::cost::{BudgetScope, BudgetUse, Held, Period, nano_usd, usd_nano};
use ai_runner::model::now_ms;
use ai_runner::ports::CostStore;
use clap::{Args, Subcommand, ValueEnum};

use super::{invalid, utc_datetime};
use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// `budget ...`.
#[derive(Args)]
pub struct BudgetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BudgetCommand,
}

/// What a budget caps: exactly one.
#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["project", "route", "key"])))]
pub struct BudgetTarget {
    /// Every call of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// One route, `project/route_key`.
    #[arg(long)]
    pub route: Option<String>,
    /// Every call signed by this access key.
    #[arg(long)]
    pub key: Option<String>,
}

/// `budget ...`.
#[derive(Subcommand)]
pub enum BudgetCommand {
    /// Set a limit in USD per UTC day and/or per UTC month.
    Set {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// USD per UTC day.
        #[arg(long)]
        daily: Option<f64>,
        /// USD per UTC calendar month.
        #[arg(long)]
        monthly: Option<f64>,
    },
    /// Every budget with its use in the current window and the reservations held in it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Free reservations whose calls will never settle (a process killed mid-call).
    Release(BudgetRelease),
    /// Remove a budget.
    Remove {
        /// What it caps.
        #[command(flatten)]
        target: BudgetTarget,
        /// Which window.
        #[arg(long, value_enum)]
        period: PeriodArg,
    },
}

/// `budget release`: frees reservations by hand. An expired reservation is reclaimed anyway by
/// the next call that finds its budget full; this frees one sooner, or what has no identity.
/// Release only reservations of calls that are gone: a released call still running spends
/// past its budget's room (its settlement still counts its cost).
#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["ids", "expired", "untracked"])))]
pub struct BudgetRelease {
    /// Reservation ids, as `budget list` shows them (every budget's share of each).
    pub ids: Vec<String>,
    /// Every reservation past its expiry.
    #[arg(long)]
    pub expired: bool,
    /// What the current windows hold reserved beyond their reservations: amounts reserved
    /// without an identity, before `db migrate` added reservations or by a process started
    /// before it. Only once every such process has stopped.
    #[arg(long)]
    pub untracked: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl BudgetRelease {
    /// Runs `budget release`.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        let now = now_ms();
        let budgets = db.active_budgets().await?;
        let name = |id: i64| {
            budgets.iter().find(|b| b.id == id).map_or_else(
                || format!("budget #{id}"),
                |b| format!("{} {} {}", b.scope.as_str(), b.target, b.period.as_str()),
            )
        };
        let mut freed = Vec::new();
        if !self.ids.is_empty() {
            freed.extend(db.release_reservations(&self.ids, None).await?);
        }
        if self.expired {
            freed.extend(db.release_reservations(&[], Some(now)).await?);
        }
        let untracked = if self.untracked {
            db.release_untracked(now).await?
        } else {
            Vec::new()
        };
        if self.json {
            output::pretty(&serde_json::json!({
                "released": freed.iter().map(|h| held_json(h, now)).collect::<Vec<_>>(),
                "untracked": untracked.iter().map(|(b, window, nano)| serde_json::json!({
                    "scope": b.scope.as_str(),
                    "target": b.target,
                    "period": b.period.as_str(),
                    "window": window,
                    "released_nano": nano,
                    "released_usd": nano_usd(*nano),
                })).collect::<Vec<_>>(),
            }));
        } else {
            for h in &freed {
                outln!(
                    "released {} ({:.9} USD of {} {})",
                    h.id,
                    nano_usd(h.amount_nano),
                    name(h.budget_id),
                    h.window
                );
            }
            for (b, window, nano) in &untracked {
                outln!(
                    "released {:.9} USD reserved without an identity in {} {} {} {window}",
                    nano_usd(*nano),
                    b.scope.as_str(),
                    b.target,
                    b.period.as_str()
                );
            }
            if freed.is_empty() && untracked.is_empty() {
                outln!("nothing to release");
            }
        }
        let missing: Vec<String> = self
            .ids
            .iter()
            .filter(|id| !freed.iter().any(|h| &h.id == *id))
            .map(|id| format!("{id:?}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Failure::usage(
                Code::UnknownReference,
                format!(
                    "no reservation {} is held (settled, reclaimed or released already)",
                    missing.join(", ")
                ),
            ))
        }
    }
}

/// A reservation row as `budget list --json` and `budget release --json` show it.
fn held_json(h: &Held, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": h.id,
        "budget_id": h.budget_id,
        "window": h.window,
        "amount_usd": nano_usd(h.amount_nano),
        "amount_nano": h.amount_nano,
        "created_ms": h.created_ms,
        "expires_ms": h.expires_ms,
        "expired": h.expires_ms < now,
        "trace_id": h.trace_id,
    })
}

/// `--period`.
#[derive(Clone, Copy, ValueEnum)]
pub enum PeriodArg {
    /// The daily budget.
    Day,
    /// The monthly budget.
    Month,
}

/// A budget's scope and target. A budget names one project (or one project's route) exactly:
/// a project name holding `/` or `*` is refused, as `cfg verify` refuses it, so a route target
/// splits into its project and route key at its first `/`, as calls are matched.
fn scope_of(t: &BudgetTarget) -> Result<(BudgetScope, String), Failure> {
    let bad_project = |p: &str| p.is_empty() || p.contains(['/', '*']);
    match (&t.project, &t.route, &t.key) {
        (Some(p), None, None) if bad_project(p) => Err(Failure::usage(
            Code::InvalidInput,
            format!("--project {p:?}: a project name may not be empty or contain '/' or '*'"),
        )),
        (Some(p), None, None) => Ok((BudgetScope::Project, p.clone())),
        (None, Some(r), None) => match r.split_once('/') {
            Some((p, k)) if !bad_project(p) && !k.is_empty() => Ok((BudgetScope::Route, r.clone())),
            _ => Err(Failure::usage(
                Code::InvalidInput,
                format!("--route {r:?}: write it as project/route_key"),
            )),
        },
        (None, None, Some(k)) => Ok((BudgetScope::Key, k.clone())),
        _ => Err(Failure::usage(
            Code::InvalidInput,
            "give exactly one of --project, --route, --key",
        )),
    }
}

impl BudgetArgs {
    /// Runs the budget command.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let db = cx.db()?;
        match self.command {
            BudgetCommand::Set {
                target,
                daily,
                monthly,
            } => {
                let (scope, name) = scope_of(&target)?;
                if daily.is_none() && monthly.is_none() {
                    return Err(invalid("give --daily USD and/or --monthly USD"));
                }
                for (period, usd) in [(Period::Day, daily), (Period::Month, monthly)] {
                    let Some(usd) = usd else { continue };
                    let nano = usd_nano(usd).map_err(invalid)?;
                    db.set_budget(scope, &name, period, nano).await?;
                    outln!(
                        "{} {name}: {usd} USD per UTC {}",
                        scope.as_str(),
                        period.as_str()
                    );
                }
                outln!(
                    "running functions apply it within COST_CACHE_SECS (default 60 s); calls need a priced model to be budgeted"
                );
                Ok(())
            }
            BudgetCommand::List { json } => {
                let now = now_ms();
                let uses = db.budget_uses(now).await?;
                if json {
                    let rows: Vec<serde_json::Value> = uses
                        .iter()
                        .map(|u| {
                            serde_json::json!({
                                "scope": u.budget.scope.as_str(),
                                "target": u.budget.target,
                                "period": u.budget.period.as_str(),
                                "window": u.window,
                                "limit_usd": nano_usd(u.budget.limit_nano),
                                "used_usd": nano_usd(u.used_nano),
                                "reserved_usd": nano_usd(u.reserved_nano),
                                "limit_nano": u.budget.limit_nano,
                                "used_nano": u.used_nano,
                                "reserved_nano": u.reserved_nano,
                                "untracked_nano": untracked(u),
                                "calls": u.calls,
                                "refused": u.refused,
                                "reservations": u.reservations.iter().map(|h| held_json(h, now)).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    output::pretty(&rows);
                    return Ok(());
                }
                if uses.is_empty() {
                    outln!("no budgets; `ai-runner budget set --project P --daily 5` makes one");
                }
                for u in &uses {
                    let pct = if u.budget.limit_nano > 0 {
                        u.used_nano as f64 * 100.0 / u.budget.limit_nano as f64
                    } else {
                        100.0
                    };
                    outln!(
                        "{:<8} {:<32} {:<6} {:<11} used {:>12.6} of {:>10.4} USD ({pct:>5.1}%)  reserved {:.6}  calls {}  refused {}",
                        u.budget.scope.as_str(),
                        u.budget.target,
                        u.budget.period.as_str(),
                        u.window,
                        nano_usd(u.used_nano),
                        nano_usd(u.budget.limit_nano),
                        nano_usd(u.reserved_nano),
                        u.calls,
                        u.refused,
                    );
                    for h in &u.reservations {
                        outln!(
                            "  reservation {} {:.9} USD  since {}  {}  trace {}",
                            h.id,
                            nano_usd(h.amount_nano),
                            utc_datetime(h.created_ms),
                            if h.expires_ms < now {
                                format!("expired {} (reclaimable)", utc_datetime(h.expires_ms))
                            } else {
                                format!("expires {}", utc_datetime(h.expires_ms))
                            },
                            h.trace_id.as_deref().unwrap_or("-"),
                        );
                    }
                    let rest = untracked(u);
                    if rest > 0 {
                        outln!(
                            "  {:.9} USD reserved without an identity (before `db migrate`, or by a process started before it): `budget release --untracked` once no such process runs",
                            nano_usd(rest)
                        );
                    }
                }
                Ok(())
            }
            BudgetCommand::Release(r) => r.run(cx).await,
            BudgetCommand::Remove { target, period } => {
                let (scope, name) = scope_of(&target)?;
                let period = match period {
                    PeriodArg::Day => Period::Day,
                    PeriodArg::Month => Period::Month,
                };
                if db.remove_budget(scope, &name, period).await? {
                    outln!("removed the {} budget of {name}", period.as_str());
                    Ok(())
                } else {
                    Err(Failure::usage(
                        Code::UnknownReference,
                        format!(
                            "no {} budget for {} {name}",
                            period.as_str(),
                            scope.as_str()
                        ),
                    ))
                }
            }
        }
    }
}

/// What a window holds reserved beyond its reservation rows (0 on a database without them).
fn untracked(u: &BudgetUse) -> i64 {
    (u.reserved_nano - u.reservations.iter().map(|h| h.amount_nano).sum::<i64>()).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_names_one_project_or_route_exactly() {
        let target = |project: Option<&str>, route: Option<&str>| BudgetTarget {
            project: project.map(str::to_owned),
            route: route.map(str::to_owned),
            key: None,
        };
        assert_eq!(
            scope_of(&target(None, Some("lab/r/x"))).unwrap(),
            (BudgetScope::Route, "lab/r/x".to_owned())
        );
        assert_eq!(
            scope_of(&target(Some("shop"), None)).unwrap(),
            (BudgetScope::Project, "shop".to_owned())
        );
        for refused in [
            target(Some("lab/secret"), None),
            target(Some("lab*"), None),
            target(None, Some("lab*/r")),
            target(None, Some("/r")),
            target(None, Some("lab/")),
            target(None, Some("lab")),
        ] {
            assert_eq!(scope_of(&refused).unwrap_err().code, Code::InvalidInput);
        }
    }
}
