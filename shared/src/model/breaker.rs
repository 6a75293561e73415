//! A connection's circuit breaker as stored (`ai_connection_breaker`, one row per
//! `ai_connection`) and the pure rules of its transitions, which the store's SQL statements
//! compute in one conditional statement each and the in-memory fake computes with these very
//! functions (the contract tests hold the two to the same answers).
//!
//! States: closed (`open_until_ms` NULL), open (`now < open_until_ms`: nobody calls), half-open
//! (`open_until_ms <= now`: one caller claims the probe by setting `probe_until_ms`; while the
//! claim holds, nobody else calls). A counted failure adds to the streak (a streak older than the
//! window restarts at 1) and opens the breaker when the streak reaches the threshold; a failure
//! in half-open (the probe's) re-opens it for another cooldown; a success closes it from closed
//! or half-open, never from open (a call that started before the breaker opened does not close
//! it early).
//!
//! Invariants: no I/O; the thresholds of one breaker are the process's defaults overridden by the
//! row's own `failures_max` / `cooldown_ms` when set.

use serde::Serialize;

/// The thresholds one breaker is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Consecutive counted failures that open the breaker (at least 1).
    pub failures: u32,
    /// A streak whose first failure is older than this many milliseconds restarts at 1.
    pub window_ms: i64,
    /// How long the breaker stays open before one probe may go, in milliseconds.
    pub cooldown_ms: i64,
}

/// One stored breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerRow {
    /// `ai_connection.id`.
    pub connection_id: i64,
    /// The connection's name, where the read joined it (listings); empty otherwise.
    pub connection: String,
    /// Consecutive counted failures (the streak).
    pub failures: u32,
    /// When the streak's first failure was counted (epoch ms; 0 without a streak).
    pub window_start_ms: i64,
    /// How many times the breaker has opened (re-opens after a failed probe included).
    pub opened: u32,
    /// Open until this time (epoch ms); `None` when closed.
    pub open_until_ms: Option<i64>,
    /// The half-open probe is claimed until this time (epoch ms).
    pub probe_until_ms: Option<i64>,
    /// This connection's own threshold, overriding `AI_BREAKER_FAILURES`.
    pub failures_max: Option<u32>,
    /// This connection's own cooldown in milliseconds, overriding `AI_BREAKER_COOLDOWN_S`.
    pub cooldown_ms: Option<i64>,
    /// Last change (epoch ms).
    pub updated_ms: i64,
}

/// A call refused because its connection's breaker is open (or its probe is out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the circuit breaker of connection {connection:?} is open; no call was made (retry in {retry_after_ms} ms)"
)]
pub struct CircuitOpen {
    /// The connection's name.
    pub connection: String,
    /// What is left of the cooldown (or of the probe's claim), in milliseconds.
    pub retry_after_ms: u64,
}

/// What a breaker says about calling its connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Nobody calls until `until_ms`.
    Open {
        /// Epoch ms.
        until_ms: i64,
    },
    /// The cooldown is over: one probe may go (`probe_until_ms` set: it has been claimed).
    HalfOpen {
        /// The probe's claim holds until then (epoch ms).
        probe_until_ms: Option<i64>,
    },
}

impl BreakerRow {
    /// A closed breaker with no failures (what a missing row means).
    pub fn new(connection_id: i64) -> Self {
        Self {
            connection_id,
            connection: String::new(),
            failures: 0,
            window_start_ms: 0,
            opened: 0,
            open_until_ms: None,
            probe_until_ms: None,
            failures_max: None,
            cooldown_ms: None,
            updated_ms: 0,
        }
    }

    /// The defaults with this row's overrides applied.
    pub fn limits(&self, defaults: Limits) -> Limits {
        Limits {
            failures: self.failures_max.unwrap_or(defaults.failures).max(1),
            cooldown_ms: self.cooldown_ms.unwrap_or(defaults.cooldown_ms),
            ..defaults
        }
    }

    /// The state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> BreakerState {
        match self.open_until_ms {
            None => BreakerState::Closed,
            Some(until_ms) if now_ms < until_ms => BreakerState::Open { until_ms },
            Some(_) => BreakerState::HalfOpen {
                probe_until_ms: self.probe_until_ms.filter(|p| *p > now_ms),
            },
        }
    }

    /// The state in words, for people: `closed`, `open until <UTC time> (N s left)`,
    /// `half-open`, `half-open (probe out)`.
    pub fn describe(&self, now_ms: i64) -> String {
        match self.state(now_ms) {
            BreakerState::Closed => "closed".to_owned(),
            BreakerState::Open { until_ms } => format!(
                "open until {} UTC ({} s left)",
                super::utc_datetime_ms(until_ms),
                (until_ms - now_ms).div_euclid(1000) + 1
            ),
            BreakerState::HalfOpen {
                probe_until_ms: Some(_),
            } => "half-open (probe out)".to_owned(),
            BreakerState::HalfOpen {
                probe_until_ms: None,
            } => "half-open".to_owned(),
        }
    }

    /// Closed with no streak and no claim: a success changes nothing (and writes nothing).
    pub fn is_clean(&self) -> bool {
        self.failures == 0 && self.open_until_ms.is_none() && self.probe_until_ms.is_none()
    }

    /// The row after one counted failure at `now_ms`.
    #[must_use]
    pub fn failed(mut self, defaults: Limits, now_ms: i64) -> Self {
        let limits = self.limits(defaults);
        let restart = self.window_start_ms < now_ms - limits.window_ms;
        let streak = if restart { 1 } else { self.failures + 1 };
        let reopen = Some(now_ms + limits.cooldown_ms);
        match self.open_until_ms {
            // The cooldown is over (a probe, or a call allowed to try): another cooldown.
            Some(until) if until <= now_ms => {
                self.open_until_ms = reopen;
                self.opened += 1;
            }
            Some(_) => {}
            None if streak >= limits.failures => {
                self.open_until_ms = reopen;
                self.opened += 1;
            }
            None => {}
        }
        self.probe_until_ms = None;
        self.failures = streak;
        if restart {
            self.window_start_ms = now_ms;
        }
        self.updated_ms = now_ms;
        self
    }

    /// The row after a call that reached the provider and found it up; `None` when nothing
    /// changes (already clean, or open: only a call after the cooldown closes it).
    pub fn succeeded(&self, now_ms: i64) -> Option<Self> {
        if self.is_clean() || matches!(self.state(now_ms), BreakerState::Open { .. }) {
            return None;
        }
        Some(Self {
            failures: 0,
            window_start_ms: 0,
            open_until_ms: None,
            probe_until_ms: None,
            updated_ms: now_ms,
            ..self.clone()
        })
    }

    /// Claims the half-open probe until `until_ms`: true for the one caller that gets it.
    pub fn claim(&mut self, now_ms: i64, until_ms: i64) -> bool {
        let claimable = matches!(
            self.state(now_ms),
            BreakerState::HalfOpen {
                probe_until_ms: None
            }
        );
        if claimable {
            self.probe_until_ms = Some(until_ms);
            self.updated_ms = now_ms;
        }
        claimable
    }

    /// Closed by hand (`ai-runner breaker reset`): the overrides stay.
    #[must_use]
    pub fn reset(self, now_ms: i64) -> Self {
        Self {
            failures: 0,
            window_start_ms: 0,
            open_until_ms: None,
            probe_until_ms: None,
            updated_ms: now_ms,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        failures: 3,
        window_ms: 60_000,
        cooldown_ms: 30_000,
    };

    fn fail_n(mut row: BreakerRow, n: u32, at: i64) -> BreakerRow {
        for i in 0..n {
            row = row.failed(LIMITS, at + i64::from(i));
        }
        row
    }

    #[test]
    fn the_threshold_th_consecutive_failure_opens_the_breaker_for_the_cooldown() {
        let row = fail_n(BreakerRow::new(1), 2, 1_000);
        assert_eq!(row.state(1_002), BreakerState::Closed);
        let row = row.failed(LIMITS, 1_002);
        assert_eq!(row.state(1_003), BreakerState::Open { until_ms: 31_002 });
        assert_eq!(row.opened, 1);
    }

    #[test]
    fn failures_while_open_neither_extend_nor_reopen_it() {
        let row = fail_n(BreakerRow::new(1), 5, 1_000);
        assert_eq!(row.opened, 1);
        assert_eq!(row.open_until_ms, Some(31_002));
    }

    #[test]
    fn a_success_ends_the_streak_so_failures_must_be_consecutive() {
        let row = fail_n(BreakerRow::new(1), 2, 1_000);
        let row = row.succeeded(1_100).unwrap();
        assert!(row.is_clean());
        let row = fail_n(row, 2, 1_200);
        assert_eq!(row.state(1_300), BreakerState::Closed);
    }

    #[test]
    fn a_streak_older_than_the_window_restarts_at_one() {
        let row = fail_n(BreakerRow::new(1), 2, 1_000);
        let row = row.failed(LIMITS, 1_000 + 61_000);
        assert_eq!(row.failures, 1);
        assert_eq!(row.state(62_001), BreakerState::Closed);
    }

    #[test]
    fn after_the_cooldown_exactly_one_caller_claims_the_probe() {
        let mut row = fail_n(BreakerRow::new(1), 3, 1_000);
        assert!(!row.claim(20_000, 50_000), "still open");
        assert!(row.claim(31_002, 60_000));
        assert!(!row.claim(31_003, 60_000), "claimed already");
        assert_eq!(
            row.state(31_003),
            BreakerState::HalfOpen {
                probe_until_ms: Some(60_000)
            }
        );
        // A claim whose holder vanished lapses.
        assert!(row.claim(60_001, 90_000));
    }

    #[test]
    fn a_failed_probe_reopens_and_a_successful_one_closes() {
        let mut row = fail_n(BreakerRow::new(1), 3, 1_000);
        assert!(row.claim(31_002, 60_000));
        let reopened = row.clone().failed(LIMITS, 32_000);
        assert_eq!(
            reopened.state(32_001),
            BreakerState::Open { until_ms: 62_000 }
        );
        assert_eq!(reopened.opened, 2);
        let closed = row.succeeded(32_000).unwrap();
        assert_eq!(closed.state(32_001), BreakerState::Closed);
        assert!(closed.is_clean());
    }

    #[test]
    fn a_state_is_described_in_words() {
        let mut row = fail_n(BreakerRow::new(1), 3, 1_000);
        assert_eq!(
            row.describe(2_002),
            "open until 1970-01-01 00:00:31.002 UTC (30 s left)"
        );
        assert_eq!(row.describe(40_000), "half-open");
        assert!(row.claim(40_000, 50_000));
        assert_eq!(row.describe(40_001), "half-open (probe out)");
        assert_eq!(BreakerRow::new(1).describe(0), "closed");
    }

    #[test]
    fn a_success_while_open_changes_nothing() {
        let row = fail_n(BreakerRow::new(1), 3, 1_000);
        assert_eq!(row.succeeded(2_000), None);
        assert_eq!(BreakerRow::new(1).succeeded(2_000), None, "clean already");
    }

    #[test]
    fn a_connection_s_own_threshold_and_cooldown_override_the_defaults() {
        let mut row = BreakerRow::new(1);
        row.failures_max = Some(1);
        row.cooldown_ms = Some(5_000);
        let row = row.failed(LIMITS, 1_000);
        assert_eq!(row.state(1_001), BreakerState::Open { until_ms: 6_000 });
    }
}
