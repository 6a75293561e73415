//! What calls cost, and the budgets that stop them: prices chosen per call from a short-lived
//! per-process cache, usage normalised per provider family (`usage`), charges and maximum costs
//! computed in integers (`book`), and budgets reserved before each provider call and settled
//! after it through the [`CostStore`] port, each reservation with an identity and an expiry past
//! the call's end, so one whose call never settles is reclaimed rather than held forever.
//!
//! Invariants: every provider call is priced (content retries, route members, judge calls,
//! failed streams); an unknown cost is `None` and said so once per model per process, never 0;
//! a call under a budget is made only after its maximum cost was reserved in every budget that
//! covers it, and every retry of an attempt the provider may have billed only after another
//! attempt's maximum was added (each answer of `n`, declared tools and predictions are in the
//! maximum; a provider-side tool makes it unknowable and is refused; an unknown duration billed
//! per second is its longest and settles there), so concurrent calls
//! overshoot a budget by at most what one attempt spends beyond its reservation; crossing 80% and 100% of a budget is logged once, by the call that crossed it.

pub mod book;
pub mod litellm;
pub mod report;
pub mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::model::ResolvedConfig;
use crate::model::cost::{
    Budget, BudgetError, BudgetScope, Charge, Claim, Hold, Price, Reserved, Settled, nano_usd,
};
use crate::ports::{CostStore, StoreError};
pub use book::Chosen;
pub use usage::Usage;

/// Who pays for a call: the budgets that can cover it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Payer<'a> {
    /// The project (a route's, or `PROJECT_NAME`).
    pub project: Option<&'a str>,
    /// The route key (route runs).
    pub route: Option<&'a str>,
    /// The access key that signed the call.
    pub key: Option<&'a str>,
}

impl Payer<'_> {
    fn covered_by(&self, b: &Budget) -> bool {
        match b.scope {
            BudgetScope::Project => self.project == Some(b.target.as_str()),
            BudgetScope::Route => match (self.project, self.route) {
                (Some(p), Some(r)) => b
                    .target
                    .split_once('/')
                    .is_some_and(|(bp, br)| bp == p && br == r),
                _ => false,
            },
            BudgetScope::Key => self.key == Some(b.target.as_str()),
        }
    }
}

/// What a call knows of the recording it sends, for per-second prices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recording {
    /// Its duration, when known (what the call is charged for).
    pub seconds: Option<f64>,
    /// Its size, when known (bounds the duration reserved when that is not known).
    pub bytes: Option<u64>,
}

/// A call's pricing, decided once before its first provider call.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The price used, if the model has one.
    pub chosen: Option<Chosen>,
    /// One claim per budget covering the call (empty: no budget applies).
    pub claims: Vec<Claim>,
    /// Input audio duration, for per-second prices.
    pub seconds: Option<f64>,
}

/// A reservation made for one provider call: its identity and what each claim holds. Settled
/// by [`Meter::settle`]; one that never is (its process died) is reclaimed after it expires.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Its identity and expiry.
    pub hold: Hold,
    /// The plan's claims, each with the amount it holds.
    pub claims: Vec<Claim>,
}

/// A cached value and when it was read.
type Cached<T> = (Instant, Arc<T>);

/// The process-wide price and budget cache, built once with the runner.
#[derive(Debug)]
pub struct Meter {
    ttl: Duration,
    unknown_media_seconds: f64,
    prices: Mutex<HashMap<String, Cached<Vec<Price>>>>,
    budgets: Mutex<Option<Cached<Vec<Budget>>>>,
    warned: Mutex<HashSet<String>>,
}

/// Locks a mutex, a poisoned one included (the caches hold plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Meter {
    /// A cache whose entries live `ttl` (a price or budget change reaches running processes
    /// within it); a per-second price whose recording's duration and size are both unknown
    /// reserves `unknown_media_seconds` (`COST_MEDIA_MAX_SECONDS`).
    pub fn new(ttl: Duration, unknown_media_seconds: f64) -> Self {
        Self {
            ttl,
            unknown_media_seconds,
            prices: Mutex::new(HashMap::new()),
            budgets: Mutex::new(None),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The price rows for `model`, from the cache or the store. A database behind our schema
    /// has no prices (every call unpriced); any other failure is the caller's.
    async fn rows<S: CostStore>(
        &self,
        store: &S,
        model: &str,
    ) -> Result<Arc<Vec<Price>>, StoreError> {
        if let Some((at, rows)) = lock(&self.prices).get(model)
            && at.elapsed() < self.ttl
        {
            return Ok(rows.clone());
        }
        let rows = match store.prices_for(model).await {
            Ok(r) => Arc::new(r),
            Err(StoreError::Outdated(t)) => {
                self.once(&format!("outdated:{t}"), || {
                    tracing::warn!(
                        table = t,
                        "no prices table: calls are unpriced (run `ai-runner db migrate`)"
                    )
                });
                Arc::new(Vec::new())
            }
            Err(e) => {
                // Keep serving the last rows known rather than calling a priced model unpriced.
                if let Some((_, rows)) = lock(&self.prices).get(model) {
                    tracing::warn!(code = %e.code(), "prices not reloaded; using the cached ones");
                    return Ok(rows.clone());
                }
                return Err(e);
            }
        };
        lock(&self.prices).insert(model.to_owned(), (Instant::now(), rows.clone()));
        Ok(rows)
    }

    async fn budgets<S: CostStore>(&self, store: &S) -> Result<Arc<Vec<Budget>>, StoreError> {
        if let Some((at, b)) = lock(&self.budgets).as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(b.clone());
        }
        let b = match store.active_budgets().await {
            Ok(b) => Arc::new(b),
            Err(StoreError::Outdated(_)) => Arc::new(Vec::new()),
            Err(e) => {
                // The last list known beats refusing every call while the database blinks.
                if let Some((_, b)) = lock(&self.budgets).as_ref() {
                    tracing::warn!(code = %e.code(), "budgets not reloaded; using the cached ones");
                    return Ok(b.clone());
                }
                return Err(e);
            }
        };
        *lock(&self.budgets) = Some((Instant::now(), b.clone()));
        Ok(b)
    }

    fn once(&self, what: &str, f: impl FnOnce()) {
        if lock(&self.warned).insert(what.to_owned()) {
            f();
        }
    }

    /// Prices the call and finds the budgets covering it, each claiming the call's maximum
    /// cost (a per-second price's unknown duration at its longest, [`book::reserved_seconds`]).
    /// Fails when a budget covers an unpriced model (nothing could be reserved).
    pub async fn plan<S: CostStore>(
        &self,
        store: &S,
        cfg: &ResolvedConfig,
        payer: Payer<'_>,
        body: &Map<String, Value>,
        recording: Recording,
        now_ms: i64,
    ) -> Result<Plan, PlanError> {
        let seconds = recording.seconds;
        // Budgets first: when they cannot be known, the call cannot be capped (fail closed).
        let budgets = self.budgets(store).await?;
        let covering: Vec<&Budget> = budgets.iter().filter(|b| payer.covered_by(b)).collect();
        let rows = match self.rows(store, &cfg.model).await {
            Ok(rows) => rows,
            // Nothing to cap: the call goes ahead, its cost unknown rather than the call lost.
            Err(e) if covering.is_empty() => {
                tracing::warn!(code = %e.code(), model = %cfg.model, "prices could not be read: this call is unpriced");
                Arc::new(Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
        let mut hints = vec![
            cfg.connection.provider.as_str(),
            cfg.connection.name.as_str(),
        ];
        hints.extend(book::provider_of(&cfg.connection.base_url));
        hints.retain(|h| !h.is_empty());
        let chosen = book::choose(&rows, &cfg.model, &hints, now_ms);
        if chosen.is_none() {
            self.once(&format!("unpriced:{}", cfg.model), || {
                tracing::warn!(model = %cfg.model, "model has no price: its calls are stored as unpriced (cost NULL); `ai-runner prices set` or `prices import`")
            });
        }
        if covering.is_empty() {
            return Ok(Plan {
                chosen,
                claims: Vec::new(),
                seconds,
            });
        }
        let Some(c) = &chosen else {
            return Err(PlanError::Budget(BudgetError::Unpriced(cfg.model.clone())));
        };
        // A duration nobody said is reserved at its longest, and the call settles there.
        let reserved = book::reserved_seconds(seconds, recording.bytes, self.unknown_media_seconds);
        let amount = book::max_cost(&c.price, body, Some(reserved))
            .map_err(|tool| PlanError::Budget(BudgetError::Uncapped(tool)))?;
        let mut claims: Vec<Claim> = covering
            .into_iter()
            .map(|b| Claim {
                budget: b.clone(),
                window: b.period.window(now_ms),
                amount,
            })
            .collect();
        // One lock order for every process: no deadlock between two reservations.
        claims.sort_by_key(|c| c.budget.id);
        Ok(Plan {
            chosen,
            claims,
            seconds,
        })
    }

    /// Reserves the plan's claims before a provider call, as a new reservation of the call
    /// `trace_id` that may be reclaimed once `lifetime` has passed (longer than the call can
    /// run); `None` when no budget covers the call.
    pub async fn reserve<S: CostStore>(
        &self,
        store: &S,
        plan: &Plan,
        trace_id: &str,
        lifetime: Duration,
    ) -> Result<Option<Reservation>, PlanError> {
        if plan.claims.is_empty() {
            return Ok(None);
        }
        let now = crate::model::now_ms();
        let hold = Hold {
            id: crate::hex::encode(&rand::random::<[u8; 16]>()),
            created_ms: now,
            expires_ms: now.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
            trace_id: trace_id.to_owned(),
        };
        match store.reserve(&hold, &plan.claims).await? {
            Reserved::Granted => Ok(Some(Reservation {
                hold,
                claims: plan.claims.clone(),
            })),
            Reserved::Refused { budget, spent } => {
                tracing::warn!(event = "budget.refused", scope = budget.scope.as_str(), target = %budget.target, period = budget.period.as_str(), limit_usd = nano_usd(budget.limit_nano), spent_usd = nano_usd(spent), "budget used up: call refused");
                Err(exceeded(budget, spent))
            }
        }
    }

    /// Grows a reservation by another attempt's maximum cost (each plan claim's amount again),
    /// before the provider retries an attempt it may have billed: every billed attempt is
    /// reserved before it is sent. Returns the grown reservation, or the refusal (nothing grown).
    pub async fn extend<S: CostStore>(
        &self,
        store: &S,
        held: &Reservation,
        plan: &Plan,
    ) -> Result<Reservation, PlanError> {
        match store.extend(&held.hold, &plan.claims).await? {
            Reserved::Granted => Ok(Reservation {
                hold: held.hold.clone(),
                claims: held
                    .claims
                    .iter()
                    .zip(&plan.claims)
                    .map(|(h, more)| Claim {
                        amount: h.amount.saturating_add(more.amount),
                        ..h.clone()
                    })
                    .collect(),
            }),
            Reserved::Refused { budget, spent } => {
                tracing::warn!(event = "budget.refused", scope = budget.scope.as_str(), target = %budget.target, period = budget.period.as_str(), limit_usd = nano_usd(budget.limit_nano), spent_usd = nano_usd(spent), reservation = %held.hold.id, "budget used up: retry refused");
                Err(exceeded(budget, spent))
            }
        }
    }

    /// Replaces a reservation with what the call cost (what it reserved when the cost is
    /// unknown: never less than could have been spent) and warns on crossing 80% and 100%.
    /// A failure is logged, not returned: the call happened and its answer stands.
    pub async fn settle<S: CostStore>(&self, store: &S, held: &Reservation, charge: Charge) {
        let Some(first) = held.claims.first() else {
            return;
        };
        let cost = charge.nano.unwrap_or(first.amount);
        match store.settle(&held.hold, &held.claims, cost).await {
            Ok(settled) => settled.iter().for_each(warn_thresholds),
            Err(e) => {
                tracing::error!(code = %e.code(), error = %crate::error::chain(&e), reservation = %held.hold.id, "budget not settled: its reservation stays until it expires or is released")
            }
        }
    }
}

/// The refusal of a budget with no room.
fn exceeded(budget: Budget, spent: i64) -> PlanError {
    PlanError::Budget(BudgetError::Exceeded {
        scope: budget.scope.as_str(),
        target: budget.target,
        period: budget.period.as_str(),
        limit_usd: nano_usd(budget.limit_nano),
        spent_usd: nano_usd(spent),
    })
}

/// Logs a warning event when this settlement crossed 80% or 100% of its budget.
fn warn_thresholds(s: &Settled) {
    let limit = i128::from(s.budget.limit_nano.max(1));
    let pct = |n: i64| i128::from(n) * 100 / limit;
    let (before, after) = (pct(s.used_after - s.added), pct(s.used_after));
    for mark in [80u32, 100] {
        if before < i128::from(mark) && after >= i128::from(mark) {
            tracing::warn!(
                event = "budget.threshold",
                percent = mark,
                scope = s.budget.scope.as_str(),
                target = %s.budget.target,
                period = s.budget.period.as_str(),
                window = %s.window,
                used_usd = nano_usd(s.used_after),
                limit_usd = nano_usd(s.budget.limit_nano),
                "budget {mark}% used"
            );
        }
    }
}

impl From<PlanError> for crate::error::RunError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Budget(b) => Self::Budget(b),
            PlanError::Store(s) => Self::Store(s),
        }
    }
}

/// Why a call's pricing stopped it.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A budget refused it.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// The prices or budgets could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cost::Period;

    fn budget(scope: BudgetScope, target: &str) -> Budget {
        Budget {
            id: 1,
            scope,
            target: target.into(),
            period: Period::Day,
            limit_nano: 100,
        }
    }

    #[test]
    fn budgets_cover_their_project_route_and_key_only() {
        let p = Payer {
            project: Some("p"),
            route: Some("r"),
            key: Some("AK1"),
        };
        assert!(p.covered_by(&budget(BudgetScope::Project, "p")));
        assert!(p.covered_by(&budget(BudgetScope::Route, "p/r")));
        assert!(p.covered_by(&budget(BudgetScope::Key, "AK1")));
        assert!(!p.covered_by(&budget(BudgetScope::Route, "q/r")));
        assert!(!p.covered_by(&budget(BudgetScope::Project, "q")));
        assert!(!Payer::default().covered_by(&budget(BudgetScope::Key, "AK1")));
    }
}
