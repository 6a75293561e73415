//! The access counters: nonces (`ai_access_nonce`), the per-second rate (`ai_access_rate`) and
//! the daily usage (`ai_access_usage`), written only here (part of `store::access`, the access
//! tables' one writer).
//!
//! Invariants: a signed call's nonce and both counters are one transaction ([`Db::counted`]),
//! and a bearer call's counters the same transaction without the nonce; every check-and-count
//! is one statement evaluated by the database (its clock, its row lock): MySQL answers through
//! `LAST_INSERT_ID(expr)` in the OK packet (0 = refused), SQLite through `RETURNING` (no row =
//! refused).

use std::sync::atomic::{AtomicU32, Ordering};

use super::access_err;
use crate::model::access::Admission;
use crate::store::{Db, Pool, StoreError, db_err, on_pool};

/// Counts one call in the current second (the server's clock): `LAST_INSERT_ID` = calls counted
/// in this second, or 0 when it was full.
const TAKE_SECOND_MYSQL: &str = "INSERT INTO ai_access_rate (access_key_id, window_s, used) \
     VALUES (?, UNIX_TIMESTAMP(), LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE \
     used = IF(window_s = UNIX_TIMESTAMP(), \
               IF(used < ?, LAST_INSERT_ID(used + 1), used + LAST_INSERT_ID(0)), \
               LAST_INSERT_ID(1)), \
     window_s = UNIX_TIMESTAMP()";

/// The same on SQLite: no row comes back when the second is full.
const TAKE_SECOND_SQLITE: &str = "INSERT INTO ai_access_rate (access_key_id, window_s, used) \
     VALUES (?1, unixepoch(), 1) ON CONFLICT(access_key_id) DO UPDATE SET \
     used = CASE WHEN window_s = unixepoch() THEN used + 1 ELSE 1 END, window_s = unixepoch() \
     WHERE window_s <> unixepoch() OR used < ?2 RETURNING used";

/// Counts one call on the current UTC day (the server's clock), or one refusal when the quota is
/// used up (`refused` is assigned first: MySQL assigns left to right).
const TAKE_DAY_MYSQL: &str = "INSERT INTO ai_access_usage (access_key_id, day, granted, refused, last_ok) \
     VALUES (?, UTC_DATE(), LAST_INSERT_ID(1), 0, 1) ON DUPLICATE KEY UPDATE \
     refused = refused + IF(granted < ?, 0, 1), \
     granted = IF(granted < ?, LAST_INSERT_ID(granted + 1), granted + LAST_INSERT_ID(0))";

/// The same on SQLite (assignments see the old row, so `last_ok` says what happened).
const TAKE_DAY_SQLITE: &str = "INSERT INTO ai_access_usage (access_key_id, day, granted, refused, last_ok) \
     VALUES (?1, date('now'), 1, 0, 1) ON CONFLICT(access_key_id, day) DO UPDATE SET \
     granted = granted + (granted < ?2), refused = refused + (granted >= ?2), \
     last_ok = (granted < ?2) RETURNING granted, last_ok";

const INSERT_NONCE: &str =
    "INSERT INTO ai_access_nonce (access_key_id, nonce, expires_ms) VALUES (?, ?, ?)";
const DELETE_EXPIRED_NONCE: &str =
    "DELETE FROM ai_access_nonce WHERE access_key_id = ? AND nonce = ? AND expires_ms < ?";
const PURGE_NONCES: &str = "DELETE FROM ai_access_nonce WHERE expires_ms < ?";

/// Nonce inserts between purges of expired ones (per process).
const PURGE_EVERY: u32 = 256;
static NONCE_INSERTS: AtomicU32 = AtomicU32::new(0);

/// Inserts a nonce on a connection (or in a transaction); `Ok(false)` when it is recorded and
/// unexpired (a replay). An expired record that awaits the purge is removed and the insert tried
/// once more; of two racing requests, one insert wins.
macro_rules! nonce_fresh {
    ($conn:expr, $ak:expr, $nonce:expr, $until:expr) => {
        async {
            let now = crate::model::now_ms();
            for _ in 0..2 {
                let inserted = sqlx::query(INSERT_NONCE)
                    .bind($ak)
                    .bind($nonce)
                    .bind($until)
                    .execute(&mut *$conn)
                    .await;
                match inserted {
                    Ok(_) => return Ok(true),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                        let removed = sqlx::query(DELETE_EXPIRED_NONCE)
                            .bind($ak)
                            .bind($nonce)
                            .bind(now)
                            .execute(&mut *$conn)
                            .await
                            .map_err(db_err)?
                            .rows_affected();
                        if removed == 0 {
                            return Ok(false);
                        }
                    }
                    Err(e) => return Err(access_err(e, "ai_access_nonce")),
                }
            }
            Ok(false)
        }
        .await
    };
}

impl Db {
    /// Deletes the nonces that expired before `now_ms` (every instance does it now and then);
    /// returns how many.
    pub async fn purge_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(PURGE_NONCES)
            .bind(now_ms)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| access_err(e, "ai_access_nonce")))
    }

    /// Every [`PURGE_EVERY`]th nonce of this process first deletes the expired ones.
    async fn maybe_purge(&self) {
        if NONCE_INSERTS.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            match self.purge_nonces(crate::model::now_ms()).await {
                Ok(n) => tracing::debug!(purged = n, "expired nonces purged"),
                Err(e) => tracing::warn!(code = %e.code(), "could not purge expired nonces"),
            }
        }
    }

    /// Records `nonce` alone (what [`Db::counted`] does first), for when the counters cannot be
    /// reached; `false` for a replay.
    pub(super) async fn nonce_alone(
        &self,
        access_key_id: &str,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        self.maybe_purge().await;
        on_pool!(pool, |p| {
            let mut conn = p.acquire().await.map_err(db_err)?;
            nonce_fresh!(&mut *conn, access_key_id, nonce, expires_ms)
        })
    }

    /// In one transaction: the nonce when there is one (a signed call; a replay counts
    /// nothing), then the second (unless `rps` are counted there), then the day (a refusal is
    /// counted as such). The transaction commits whatever the answer: a spent nonce stays spent.
    pub(super) async fn counted(
        &self,
        access_key_id: &str,
        nonce: Option<(&str, i64)>,
        rps: Option<u32>,
        daily: Option<u32>,
    ) -> Result<Admission, StoreError> {
        let pool = self.pool().await?;
        if nonce.is_some() {
            self.maybe_purge().await;
        }
        let daily = daily.map_or(i64::MAX, i64::from);
        // One transaction, one commit (one log flush on InnoDB) for the nonce and both
        // counters; a refusal commits too: the nonce is spent and the refusal counted.
        match pool {
            Pool::MySql(p) => {
                let mut tx = p.begin().await.map_err(db_err)?;
                if let Some((nonce, until)) = nonce
                    && !nonce_fresh!(&mut *tx, access_key_id, nonce, until)?
                {
                    return Ok(Admission::Replay);
                }
                let mut second = None;
                if let Some(rps) = rps {
                    let used = sqlx::query(TAKE_SECOND_MYSQL)
                        .bind(access_key_id)
                        .bind(i64::from(rps))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| access_err(e, "ai_access_rate"))?
                        .last_insert_id();
                    if used == 0 {
                        tx.commit().await.map_err(db_err)?;
                        return Ok(Admission::RateLimited);
                    }
                    second = Some(used);
                }
                let day = sqlx::query(TAKE_DAY_MYSQL)
                    .bind(access_key_id)
                    .bind(daily)
                    .bind(daily)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| access_err(e, "ai_access_usage"))?
                    .last_insert_id();
                tx.commit().await.map_err(db_err)?;
                Ok(if day == 0 {
                    Admission::QuotaExceeded
                } else {
                    Admission::Granted { second, day }
                })
            }
            Pool::Sqlite(p) => {
                let mut tx = p.begin().await.map_err(db_err)?;
                if let Some((nonce, until)) = nonce
                    && !nonce_fresh!(&mut *tx, access_key_id, nonce, until)?
                {
                    return Ok(Admission::Replay);
                }
                let mut second = None;
                if let Some(rps) = rps {
                    let used: Option<i64> = sqlx::query_scalar(TAKE_SECOND_SQLITE)
                        .bind(access_key_id)
                        .bind(i64::from(rps))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| access_err(e, "ai_access_rate"))?;
                    let Some(used) = used else {
                        tx.commit().await.map_err(db_err)?;
                        return Ok(Admission::RateLimited);
                    };
                    second = Some(u64::try_from(used).unwrap_or(0));
                }
                let (day, ok): (i64, i64) = sqlx::query_as(TAKE_DAY_SQLITE)
                    .bind(access_key_id)
                    .bind(daily)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| access_err(e, "ai_access_usage"))?;
                tx.commit().await.map_err(db_err)?;
                Ok(if ok == 1 {
                    Admission::Granted {
                        second,
                        day: u64::try_from(day).unwrap_or(0),
                    }
                } else {
                    Admission::QuotaExceeded
                })
            }
        }
    }
}
