//! Circuit breakers shared in SQL: per connection (one provider endpoint and key), every
//! instance counting into the same row through the [`BreakerStore`] port, so a dead provider is
//! skipped by every instance at once instead of being retried by each on every call.
//!
//! Policy (settings `AI_BREAKER_*`, per-connection overrides in the row, see
//! [`crate::model::breaker`] for the transitions):
//! - what counts is [`is_outage`], the one classification of "the provider is down" that the
//!   evaluations' early stop uses too: connection errors, timeouts, 5xx, 429 after retries (and a
//!   deadline that ran out on the provider). A 4xx, a content validation failure, a call that
//!   never reached the provider count as nothing, or (if the provider answered) as up;
//! - 5 consecutive counted failures (by any instance) within 60 s open it for 30 s; then exactly
//!   one caller claims the half-open probe (a conditional update); its success closes the
//!   breaker, its failure re-opens it. No failure ratio: a ratio needs every success counted,
//!   a write per call, where consecutive failures need writes only on failures and transitions.
//!
//! Across instances "consecutive" is as exact as each process's view: a success writes (ends the
//! streak) only where its process has seen the streak, so one instance's success may miss
//! another's failures of the last `AI_CONFIG_CHECK_MS`. A probe is claimed for the longest its
//! send can take; a probe that learned nothing (it stopped before the provider: a budget, a key
//! that does not decrypt) leaves its claim to lapse, and the next caller after it probes.
//!
//! Read cost: the states live in the process ([`Breakers`]), re-read (one query, rows that are
//! not clean only) at most every `AI_CONFIG_CHECK_MS`, and on the next call after this process
//! wrote; a success on a clean breaker writes nothing. A database without the table (not
//! migrated) turns breakers off for the process, logged once, never an error; a database that
//! does not answer leaves calls to go through (a breaker protects providers, it never blocks a
//! call by itself).
//!
//! Invariants: the lock is never held across an `.await`; a refusal names the connection and
//! what is left of the cooldown, never a key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::code::Code;
use crate::config::{BreakerSettings, RunAlone};
use crate::error::RunError;
use crate::model::ConnectionInfo;
use crate::model::breaker::{BreakerRow, BreakerState, CircuitOpen, Limits};
use crate::model::now_ms;
use crate::ports::{BreakerStore, StoreError};
use crate::snapshot::Turn;

/// The provider looks down or overloaded (unreachable, timed out, 5xx, 429 after retries, a
/// deadline spent waiting on it, a breaker already open): what a breaker counts and what an
/// evaluation's early stop counts. The one place this is decided.
pub fn is_outage(code: Code) -> bool {
    matches!(
        code,
        Code::Http429RateLimit
            | Code::Http5xxServerError
            | Code::NetworkTimeout
            | Code::NetworkError
            | Code::ProviderUnreachable
            | Code::DeadlineExceeded
            | Code::CircuitOpen
    )
}

/// What one run says about its connection's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It failed in a way that counts ([`is_outage`]).
    Down,
    /// It answered (an answer, a 4xx, content that failed validation).
    Up,
    /// Nothing was learned: no request reached it.
    Unknown,
}

/// The verdict of a run that made `attempts` HTTP attempts and ended with `failure`.
pub fn verdict(failure: Option<&RunError>, attempts: u32) -> Verdict {
    if attempts == 0 {
        return Verdict::Unknown;
    }
    match failure {
        None => Verdict::Up,
        Some(RunError::Provider(crate::ports::ProviderError::CallerGone(_))) => Verdict::Unknown,
        Some(e) if is_outage(e.code()) => Verdict::Down,
        Some(_) => Verdict::Up,
    }
}

/// Whether a run may call its connection now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Call it.
    Call,
    /// Call it as the half-open probe (its outcome closes or re-opens the breaker).
    Probe,
    /// Do not: the breaker is open.
    Refuse(CircuitOpen),
}

#[derive(Debug, Default)]
struct Cache {
    rows: HashMap<i64, BreakerRow>,
    read_at: Option<Instant>,
    /// This process wrote since the last read: read again on the next call.
    dirty: bool,
}

/// A process's view of the shared breakers; built once with the runner.
#[derive(Debug)]
pub struct Breakers {
    settings: BreakerSettings,
    check: Duration,
    cache: Mutex<Cache>,
    /// Held while one caller reads the table, so concurrent calls do not all read it.
    loading: Turn,
    /// The table is missing: breakers are off for this process.
    off: AtomicBool,
}

impl Breakers {
    /// Breakers with these settings, re-read at most every `check`.
    pub fn new(settings: BreakerSettings, check: Duration) -> Self {
        Self {
            settings,
            check,
            cache: Mutex::default(),
            loading: Turn::default(),
            off: AtomicBool::new(false),
        }
    }

    /// The settings.
    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// The default thresholds (before a connection's own).
    pub fn limits(&self) -> Limits {
        Limits {
            failures: self.settings.failures.max(1),
            window_ms: ms(self.settings.window),
            cooldown_ms: ms(self.settings.cooldown),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enabled(&self) -> bool {
        self.settings.enabled() && !self.off.load(Ordering::Acquire)
    }

    /// True (and breakers off from now on, logged once) when `e` says the table is missing.
    fn missing(&self, e: &StoreError) -> bool {
        if !matches!(e, StoreError::Outdated(_)) {
            return false;
        }
        if !self.off.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "ai_connection_breaker is missing: circuit breakers are off (run `ai-runner db migrate`)"
            );
        }
        true
    }

    /// Reads the table again when the last read is older than `check` or this process wrote
    /// since; a read that fails keeps what was read before until the next `check`. While one
    /// caller reads, the others use what was read before, except before the first read: a cold
    /// process's concurrent first calls each read, so none of them calls an open connection.
    async fn refresh<S: BreakerStore>(&self, store: &S) {
        let (due, cold) = {
            let c = self.lock();
            let due = c.dirty || c.read_at.is_none_or(|t| t.elapsed() >= self.check);
            (due, c.read_at.is_none())
        };
        if !due {
            return;
        }
        let turn = self.loading.take();
        if turn.is_none() && !cold {
            return;
        }
        let read = store.breakers().await;
        let mut c = self.lock();
        c.read_at = Some(Instant::now());
        match read {
            Ok(rows) => {
                c.rows = rows.into_iter().map(|r| (r.connection_id, r)).collect();
                c.dirty = false;
            }
            Err(e) => {
                if !self.missing(&e) {
                    tracing::debug!(code = %e.code(), "circuit breakers not read");
                }
            }
        }
    }

    /// Whether a run may call `conn` now; `alone` for a config run alone (`AI_BREAKER_RUN_ALONE`
    /// applies), `lease` how long a claimed probe holds (the longest its send can take).
    pub async fn admit<S: BreakerStore>(
        &self,
        store: &S,
        conn: &ConnectionInfo,
        alone: bool,
        lease: Duration,
    ) -> Admit {
        if !self.enabled() {
            return Admit::Call;
        }
        self.refresh(store).await;
        let now = now_ms();
        let state = self
            .lock()
            .rows
            .get(&conn.id)
            .map_or(BreakerState::Closed, |r| r.state(now));
        let try_anyway = alone && self.settings.run_alone == RunAlone::Try;
        let refuse = |until_ms: i64| {
            if try_anyway {
                return Admit::Call;
            }
            Admit::Refuse(CircuitOpen {
                connection: conn.name.clone(),
                retry_after_ms: u64::try_from(until_ms - now).unwrap_or(0).max(1),
            })
        };
        match state {
            BreakerState::Closed => Admit::Call,
            BreakerState::Open { until_ms } => refuse(until_ms),
            BreakerState::HalfOpen {
                probe_until_ms: Some(until_ms),
            } => refuse(until_ms),
            BreakerState::HalfOpen {
                probe_until_ms: None,
            } => {
                let until = now + ms(lease).max(1);
                match store.claim_probe(conn.id, now, until).await {
                    Ok(true) => {
                        if let Some(r) = self.lock().rows.get_mut(&conn.id) {
                            r.claim(now, until);
                        }
                        tracing::info!(connection = %conn.name, "circuit breaker half-open: this call is the probe");
                        Admit::Probe
                    }
                    Ok(false) => {
                        // Another caller has it: learn its claim on the next call.
                        self.lock().dirty = true;
                        refuse(now + 1_000)
                    }
                    Err(e) => {
                        if !self.missing(&e) {
                            tracing::warn!(code = %e.code(), connection = %conn.name, "probe not claimed; calling anyway");
                        }
                        Admit::Call
                    }
                }
            }
        }
    }

    /// Records what a run learned about `connection_id`'s provider: a counted failure always
    /// writes; a success writes only when the breaker is not clean or the run was the probe.
    pub async fn record<S: BreakerStore>(
        &self,
        store: &S,
        connection_id: i64,
        verdict: Verdict,
        probe: bool,
    ) {
        if !self.enabled() {
            return;
        }
        let now = now_ms();
        let write = match verdict {
            Verdict::Unknown => return,
            Verdict::Down => store
                .breaker_failed(connection_id, self.limits(), now)
                .await
                .map(|()| true),
            Verdict::Up => {
                let clean = self
                    .lock()
                    .rows
                    .get(&connection_id)
                    .is_none_or(BreakerRow::is_clean);
                if clean && !probe {
                    return;
                }
                store.breaker_succeeded(connection_id, now).await
            }
        };
        match write {
            Ok(changed) => {
                if changed {
                    self.lock().dirty = true;
                }
            }
            Err(e) => {
                if !self.missing(&e) {
                    tracing::warn!(code = %e.code(), connection_id, "circuit breaker not updated");
                }
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ProviderError;

    #[test]
    fn outages_count_and_rejections_do_not() {
        let down = RunError::Provider(ProviderError::Server {
            status: 503,
            message: None,
        });
        assert_eq!(verdict(Some(&down), 3), Verdict::Down);
        let limited = RunError::Provider(ProviderError::RateLimited(None));
        assert_eq!(verdict(Some(&limited), 1), Verdict::Down);
        let rejected = RunError::Provider(ProviderError::Status {
            status: 400,
            message: None,
        });
        assert_eq!(verdict(Some(&rejected), 1), Verdict::Up);
        assert_eq!(verdict(None, 1), Verdict::Up);
    }

    #[test]
    fn a_run_that_never_reached_the_provider_says_nothing_about_it() {
        let down = RunError::Provider(ProviderError::Network("refused".into()));
        assert_eq!(verdict(Some(&down), 0), Verdict::Unknown);
        let gone = RunError::Provider(ProviderError::CallerGone(2));
        assert_eq!(verdict(Some(&gone), 1), Verdict::Unknown);
    }

    #[test]
    fn the_default_thresholds_are_five_failures_in_a_minute_and_thirty_seconds_open() {
        let b = Breakers::new(BreakerSettings::default(), Duration::from_secs(1));
        assert_eq!(
            b.limits(),
            Limits {
                failures: 5,
                window_ms: 60_000,
                cooldown_ms: 30_000
            }
        );
    }
}
