//! The audit spool: where an audit row goes when the database does not take it (down, lock
//! timeout, anything), so that no run is lost; and the replay that moves spooled rows into
//! `ai_call_logs` later.
//!
//! A spooled row is a private object `<prefix><written ms>-<row key>.json` in the object store
//! (S3/OSS in a deployed stack, the local objects directory for the CLI and the embedded
//! default), holding the row exactly as it would have been inserted.
//!
//! Invariants: a replayed row keeps the call's time as `created_at` (the row's own
//! `created_at_ms`, else the time in its key), never the replay's; a row is removed from the spool only after the database holds it; a replay never
//! inserts twice (the row's own `row_key` is unique in `ai_call_logs`, and a row already there is
//! taken as written); the spool keys sort by the time they were written, so the oldest is first.

use std::sync::Arc;

use serde::Serialize;

use crate::code::Code;
use crate::model::{AuditRow, now_ms};
use crate::ports::{ObjectError, ObjectStore, Store};

/// Where spooled rows go.
#[derive(Debug, Clone)]
pub struct AuditSpool {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (ends with `/`).
    pub prefix: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Rows now in the database (and gone from the spool).
    pub replayed: usize,
    /// Rows that stay spooled, with the code that kept them.
    pub failed: Vec<(String, String)>,
    /// Rows left in the spool after this replay (including those beyond the limit).
    pub remaining: usize,
}

/// How much is waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Spooled rows.
    pub rows: usize,
    /// Age of the oldest, milliseconds.
    pub oldest_ms: Option<i64>,
}

impl AuditSpool {
    /// Spools one row; returns where it went (`bucket/key`).
    pub async fn put(&self, row: &AuditRow) -> Result<String, ObjectError> {
        let name = row
            .row_key
            .clone()
            .unwrap_or_else(|| row.trace_id.clone())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>();
        let key = format!("{}{:013}-{name}.json", self.prefix, now_ms());
        let body = serde_json::to_vec(row).unwrap_or_default();
        self.store
            .put(&self.bucket, &key, body, "application/json")
            .await?;
        Ok(format!("{}/{key}", self.bucket))
    }

    /// The spooled rows (oldest first) and the oldest one's age.
    pub async fn pending(&self, max: usize) -> Result<(Vec<String>, Pending), ObjectError> {
        let keys = self.store.list(&self.bucket, &self.prefix, max).await?;
        let oldest_ms = keys
            .first()
            .and_then(|k| self.written_ms(k))
            .map(|written| now_ms() - written);
        let rows = keys.len();
        Ok((keys, Pending { rows, oldest_ms }))
    }

    /// When a spooled row was written, from its key (`<prefix><written ms>-…`).
    fn written_ms(&self, key: &str) -> Option<i64> {
        key.strip_prefix(&self.prefix)?
            .split('-')
            .next()?
            .parse()
            .ok()
    }

    /// Moves up to `limit` spooled rows into the database, oldest first. A row the database
    /// still refuses stays spooled; a spool object that is not a row is reported and kept.
    pub async fn replay<S: Store>(&self, store: &S, limit: usize) -> Result<Replayed, ObjectError> {
        let (keys, _) = self.pending(usize::MAX).await?;
        let mut out = Replayed::default();
        // Rows that stay spooled do not use up the limit (older bad rows never block newer
        // ones); a database that cannot be reached ends the replay (every row would wait on it).
        for key in &keys {
            if out.replayed >= limit {
                break;
            }
            let bytes = match self.store.get(&self.bucket, key).await {
                Ok(b) => b,
                Err(e) => {
                    out.failed.push((key.clone(), e.code().as_str().to_owned()));
                    continue;
                }
            };
            let Ok(mut row) = serde_json::from_slice::<AuditRow>(&bytes) else {
                out.failed
                    .push((key.clone(), Code::StoredJsonInvalid.as_str().to_owned()));
                continue;
            };
            // A row spooled before rows carried their time: it was spooled right after its
            // call, so its key's time is the call's (to the insert's timeout).
            if row.created_at_ms.is_none() {
                row.created_at_ms = self.written_ms(key);
            }
            row.status = if row.error_code.is_some() {
                "error"
            } else {
                "ok"
            };
            match store.insert_audit(&row).await {
                Ok(_) => match self.store.delete(&self.bucket, key).await {
                    Ok(()) => out.replayed += 1,
                    // Written, but still spooled: the next replay finds it by its row key.
                    Err(e) => out.failed.push((key.clone(), e.code().as_str().to_owned())),
                },
                Err(e) => {
                    out.failed.push((key.clone(), e.code().as_str().to_owned()));
                    if e.code() == Code::DbUnavailable {
                        break;
                    }
                }
            }
        }
        out.remaining = keys.len() - out.replayed;
        Ok(out)
    }
}
