//! The embedded database's WAL checkpoints, taken off the request path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000 pages),
//! so with one busy file a call now and then paid for a checkpoint (page copies and two `fsync`s)
//! before its answer; and once the WAL file had grown it stayed over the threshold, so a
//! checkpoint ran every few commits (measured in BENCHMARKS.md: p99 4.8 ms against a p50 of 0.5).
//! Here the pool's connections have the automatic checkpoint off and one background task
//! checkpoints on a timer instead (`PASSIVE`: it never waits for, or blocks, a reader or the
//! writer), and `journal_size_limit` truncates the WAL file back after a checkpoint that reset it.
//!
//! Invariants: the task only exists inside a Tokio runtime (without one the connections keep
//! SQLite's automatic checkpoint, see [`wal_autocheckpoint`]); it never outlives its [`super::Db`]
//! (aborted on drop) and stops by itself once the pool is closed; a failed checkpoint is logged
//! at debug level and retried on the next tick, never surfaced to a call.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::task::AbortHandle;

/// How often the background task checkpoints (each tick is one `PRAGMA wal_checkpoint(PASSIVE)`
/// on an idle pooled connection; with nothing new in the WAL it costs a few microseconds).
pub(crate) const EVERY: Duration = Duration::from_millis(250);

/// The WAL file is truncated back to this size after a checkpoint that reset it.
pub(crate) const JOURNAL_SIZE_LIMIT: &str = "8388608";

/// The `wal_autocheckpoint` pragma for the pool's connections: off (`0`) when the background task
/// can run, SQLite's default (1,000 pages) otherwise.
pub(crate) fn wal_autocheckpoint() -> &'static str {
    if tokio::runtime::Handle::try_current().is_ok() {
        "0"
    } else {
        "1000"
    }
}

/// A handle's background checkpoint task, aborted when the handle is dropped.
#[derive(Debug, Default)]
pub(crate) struct Checkpointer(OnceLock<AbortHandle>);

impl Checkpointer {
    /// Starts the task for `pool` (once; a second call, or a call outside a Tokio runtime, does
    /// nothing).
    pub(crate) fn start(&self, pool: &SqlitePool) {
        if self.0.get().is_some() {
            return;
        }
        if let Some(task) = spawn(pool.clone()) {
            if let Err(extra) = self.0.set(task) {
                extra.abort();
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(task) = self.0.get() {
            task.abort();
        }
    }
}

fn spawn(pool: SqlitePool) -> Option<AbortHandle> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let task = handle.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "background WAL checkpoint did not run");
            }
        }
    });
    Some(task.abort_handle())
}
