//! The audit spool: where an audit row (or a key's `ai_user_call_log` row) goes when the
//! database does not take it (down, lock timeout, anything), so that no run is lost; and the
//! replay that moves spooled rows into `ai_call_logs` / `ai_user_call_log` later.
//!
//! A spooled row is a private object `<prefix><written ms>-<row key>.json` in the object store
//! (S3/OSS in a deployed stack, the local objects directory for the CLI and the embedded
//! default), holding the row exactly as it would have been inserted; a key-call row is
//! `<prefix><written ms>-call-<trace id>.json` holding `{"ai_user_call_log": <row>}`.
//!
//! Invariants: a replayed row keeps the call's time as `created_at` (the row's own
//! `created_at_ms`, else the time in its key), never the replay's; a row is removed from the spool only after the database holds it; a replay never
//! inserts twice (the row's own `row_key` is unique in `ai_call_logs`, and a row already there is
//! taken as written; a key-call row is written unless its trace and key have one already); the spool keys sort by the time they were written, so the oldest is first.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::model::{AuditRow, now_ms};
use crate::ports::{AccessStore, KeyCall, ObjectError, ObjectPin, ObjectStore, Store, StoreError};

/// A spooled key-call row, told from an audit row by its one field.
#[derive(Serialize, Deserialize)]
struct SpooledCall {
    ai_user_call_log: KeyCall,
}

/// Object-key characters kept from a row's own key.
fn key_safe(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

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
        let name = key_safe(row.row_key.as_deref().unwrap_or(&row.trace_id));
        self.put_named(&name, serde_json::to_vec(row).unwrap_or_default())
            .await
    }

    /// Spools one key-call row; returns where it went (`bucket/key`).
    pub async fn put_key_call(&self, call: &KeyCall) -> Result<String, ObjectError> {
        let name = format!("call-{}", key_safe(call.trace_id.as_deref().unwrap_or("")));
        let body = serde_json::to_vec(&SpooledCall {
            ai_user_call_log: call.clone(),
        })
        .unwrap_or_default();
        self.put_named(&name, body).await
    }

    async fn put_named(&self, name: &str, body: Vec<u8>) -> Result<String, ObjectError> {
        let key = format!("{}{:013}-{name}.json", self.prefix, now_ms());
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
    pub async fn replay<S: Store + AccessStore>(
        &self,
        store: &S,
        limit: usize,
    ) -> Result<Replayed, ObjectError> {
        let (keys, _) = self.pending(usize::MAX).await?;
        let mut out = Replayed::default();
        // Rows that stay spooled do not use up the limit (older bad rows never block newer
        // ones); a database that cannot be reached ends the replay (every row would wait on it).
        for key in &keys {
            if out.replayed >= limit {
                break;
            }
            let bytes = match self.store.get(&self.bucket, key, ObjectPin::NONE).await {
                Ok(b) => b,
                Err(e) => {
                    out.failed.push((key.clone(), e.code().as_str().to_owned()));
                    continue;
                }
            };
            let written = match serde_json::from_slice::<SpooledCall>(&bytes) {
                Ok(c) => replay_call(store, c.ai_user_call_log).await,
                Err(_) => match serde_json::from_slice::<AuditRow>(&bytes) {
                    Ok(row) => self.replay_row(store, key, row).await,
                    Err(_) => {
                        out.failed
                            .push((key.clone(), Code::StoredJsonInvalid.as_str().to_owned()));
                        continue;
                    }
                },
            };
            match written {
                Ok(()) => match self.store.delete(&self.bucket, key).await {
                    Ok(()) => out.replayed += 1,
                    // Written, but still spooled: the next replay finds it (row key, trace).
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

    /// Writes one spooled audit row.
    async fn replay_row<S: Store>(
        &self,
        store: &S,
        key: &str,
        mut row: AuditRow,
    ) -> Result<(), StoreError> {
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
        store.insert_audit(&row).await.map(|_| ())
    }
}

/// Writes one spooled key-call row, unless its first insert did commit.
async fn replay_call<S: AccessStore>(store: &S, call: KeyCall) -> Result<(), StoreError> {
    if let Some(trace) = &call.trace_id
        && store.call_logged(trace, &call.access_key_id).await?
    {
        return Ok(());
    }
    store.log_call(&call).await
}
