//! [`MemoryStore`]'s circuit breakers: the [`BreakerStore`] port over a map, each method under
//! the store's one lock (so a probe claim is conditional exactly as the SQL `UPDATE` is), the
//! transitions computed by the model's own rules ([`BreakerRow::failed`] and friends), which the
//! SQL statements mirror.

use ai_runner::model::breaker::{BreakerRow, Limits};
use ai_runner::ports::{BreakerStore, StoreError};

use super::MemoryStore;

const TABLE: &str = "ai_connection_breaker";

impl MemoryStore {
    /// The store's state, when it is up and has the breaker table.
    fn breaker_table(&self) -> Result<std::sync::MutexGuard<'_, super::store::State>, StoreError> {
        let s = self.lock();
        s.up()?;
        if s.no_breaker_table {
            return Err(StoreError::Outdated(TABLE));
        }
        Ok(s)
    }

    /// The stored breaker of `connection_id`, if it has one.
    pub fn breaker(&self, connection_id: i64) -> Option<BreakerRow> {
        self.lock().breakers.get(&connection_id).cloned()
    }

    /// Stores `row` as it is (a test moving a breaker past its cooldown).
    pub fn put_breaker(&self, row: BreakerRow) {
        self.lock().breakers.insert(row.connection_id, row);
    }

    /// Makes the breaker table missing (a database not migrated to it).
    pub fn drop_breaker_table(&self) {
        self.lock().no_breaker_table = true;
    }
}

impl BreakerStore for MemoryStore {
    async fn breakers(&self) -> Result<Vec<BreakerRow>, StoreError> {
        let s = self.breaker_table()?;
        let mut rows: Vec<_> = s
            .breakers
            .values()
            .filter(|r| !r.is_clean())
            .cloned()
            .collect();
        rows.sort_by_key(|r| r.connection_id);
        Ok(rows)
    }

    async fn breaker_failed(
        &self,
        connection_id: i64,
        defaults: Limits,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut s = self.breaker_table()?;
        let row = s
            .breakers
            .remove(&connection_id)
            .unwrap_or_else(|| BreakerRow::new(connection_id));
        s.breakers
            .insert(connection_id, row.failed(defaults, now_ms));
        Ok(())
    }

    async fn breaker_succeeded(&self, connection_id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let mut s = self.breaker_table()?;
        let next = s
            .breakers
            .get(&connection_id)
            .and_then(|r| r.succeeded(now_ms));
        Ok(match next {
            Some(row) => {
                s.breakers.insert(connection_id, row);
                true
            }
            None => false,
        })
    }

    async fn claim_probe(
        &self,
        connection_id: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut s = self.breaker_table()?;
        Ok(s.breakers
            .get_mut(&connection_id)
            .is_some_and(|r| r.claim(now_ms, until_ms)))
    }
}
