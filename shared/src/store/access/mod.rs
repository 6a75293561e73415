//! The access tables: **the one writer** of access keys (`ai_project_credential_v2`,
//! `ai_user_key`, `ai_user`), nonces (`ai_access_nonce`), the quota counters (`ai_access_rate`,
//! `ai_access_usage`) and `ai_user_call_log`; the [`AccessStore`] port.
//!
//! `count` holds the nonces and the counters.
//!
//! Invariants: every check-and-count is one statement evaluated by the database, in one
//! transaction per call (`count`), so instances cannot overshoot a limit or share a nonce.
//! A signed key's secret is written encrypted (v2, bound to `<table>:<access key id>`); a bearer
//! key's column holds only its token's digest, as the JSON text `{"bearer":"sha256:<hex>"}` (in
//! the same column: no migration). The secret or the token is returned once, at creation or
//! rotation, and a secret is never read back in clear by anything but the gate. `proof_of` is
//! the one parser that tells the two apart; nothing else looks at the stored text.

mod count;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::dialect::{InsertId, is_missing_table, to_i64};
use super::{Db, StoreError, db_err, on_pool};
use crate::crypto::{CryptoError, Keyring};
use crate::model::access::{
    Admission, DayUsage, KeyForm, KeyListing, KeyOwner, KeyProof, Scope, StoredKey, secret_binding,
};
use crate::model::bearer::BearerToken;
use crate::ports::{AccessStore, KeyCall};
use crate::secret::Secret;

/// One key row from either table (owner kind, row id, user id, owner name, access key id, secret,
/// active, expires, scope, daily quota, rps, allowed IPs, previous secret, previous until).
type KeyRow = (
    String,
    i64,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const KEY_COLUMNS: &str = "k.access_key_id, CAST(k.secret_encrypted AS CHAR), \
     CASE WHEN k.status = 'active' AND COALESCE(o.status, 'active') = 'active' THEN 1 ELSE 0 END, \
     k.expires_ms, \
     k.scope_json, k.daily_quota, k.rps_limit, CAST(k.allow_ips_json AS CHAR), \
     k.previous_secret_encrypted, k.previous_until_ms";

/// Both key tables. A user key whose `ai_user` row is missing (the predecessor provisioned users
/// outside its package) still works, named `user#<id>`.
fn key_select(filter: &str) -> String {
    format!(
        "SELECT 'project', CAST(k.id AS SIGNED), NULL, o.name, {KEY_COLUMNS} \
         FROM ai_project_credential_v2 k JOIN ai_project_v2 o ON o.id = k.project_id {filter} \
         UNION ALL \
         SELECT 'user', CAST(k.id AS SIGNED), CAST(k.user_id AS SIGNED), o.name, {KEY_COLUMNS} \
         FROM ai_user_key k LEFT JOIN ai_user o ON o.id = k.user_id {filter}"
    )
}

const INSERT_CALL_LOG: &str = "INSERT INTO ai_user_call_log (user_id, key_id, project_name, route_key, \
     http_status, duration_ms, tokens_prompt, tokens_completion, ai_call_log_id, trace_id, access_key_id, \
     created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Whether a key's call of a trace is logged.
const CALL_LOGGED: &str =
    "SELECT COUNT(*) FROM ai_user_call_log WHERE trace_id = ? AND access_key_id = ?";

/// A missing access table means the database is behind our schema.
fn access_err(e: sqlx::Error, table: &'static str) -> StoreError {
    if is_missing_table(&e) {
        StoreError::Outdated(table)
    } else {
        db_err(e)
    }
}

/// A count whose connection broke or never came (the server went away mid-transaction, the pool
/// timed out) is the database not answering, not a failed statement: the one failure
/// `ACCESS_FAIL_OPEN` may let through (the access policy decides).
fn unanswered(e: StoreError) -> StoreError {
    match e {
        StoreError::Query(cause)
            if cause.downcast_ref::<sqlx::Error>().is_some_and(|s| {
                matches!(
                    s,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                )
            }) =>
        {
            StoreError::Unavailable(cause)
        }
        e => e,
    }
}

/// A bearer key's column, as stored: `{"bearer":"sha256:<64 hex>"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BearerDoc {
    bearer: String,
}

/// How a digest is written inside [`BearerDoc`].
const SHA256_PREFIX: &str = "sha256:";

/// The stored text of a bearer token's digest.
fn bearer_doc(digest: &[u8; 32]) -> String {
    let doc = BearerDoc {
        bearer: format!("{SHA256_PREFIX}{}", crate::hex::encode(digest)),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

/// The digest a [`BearerDoc`] names, when it is 64 hex characters after `sha256:`.
fn digest_of(doc: &BearerDoc) -> Option<[u8; 32]> {
    let hex = doc.bearer.strip_prefix(SHA256_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// What a secret column holds: a bearer digest document, or else (an encrypted blob, or text
/// that is neither) a signing secret, which the gate's decryption then accepts or refuses. A
/// bearer document whose digest does not read is logged and kept as a signed proof that cannot
/// decrypt: its key refuses every call and `keys check` shows it unreadable.
pub(super) fn proof_of(text: &str, access_key_id: &str) -> KeyProof {
    match serde_json::from_str::<BearerDoc>(text) {
        Ok(doc) => digest_of(&doc).map_or_else(
            || {
                tracing::error!(access_key_id = %access_key_id, "a bearer digest does not read; the key refuses every call");
                KeyProof::Signed(text.to_owned())
            },
            KeyProof::Bearer,
        ),
        Err(_) => KeyProof::Signed(text.to_owned()),
    }
}

/// A fresh secret and its stored text: the encrypted secret of a signed key, or a bearer
/// token and its digest document. What is returned is shown once: the secret, or the token.
fn fresh_secret(
    ring: &Keyring,
    form: KeyForm,
    table: &str,
    access_key_id: &str,
) -> Result<(Secret, String), KeyError> {
    match form {
        KeyForm::Signed => {
            let secret = Secret::new(token("sk_", 20));
            let blob = ring.encrypt(secret.expose(), &secret_binding(table, access_key_id))?;
            Ok((secret, blob))
        }
        KeyForm::Bearer => {
            let token =
                BearerToken::new(access_key_id, Secret::new(token("", 32))).ok_or_else(|| {
                    KeyError::Invalid(format!(
                        "{access_key_id:?} cannot be named by a bearer token"
                    ))
                })?;
            Ok((token.reveal(), bearer_doc(&token.digest())))
        }
    }
}

fn parse_key(row: KeyRow) -> StoredKey {
    let (
        kind,
        row_id,
        user_id,
        owner,
        ak,
        secret,
        active,
        expires,
        scope,
        quota,
        rps,
        ips,
        prev,
        until,
    ) = row;
    let owner = if kind == "project" {
        KeyOwner::Project(owner.unwrap_or_default())
    } else {
        KeyOwner::User(owner.unwrap_or_else(|| format!("user#{}", user_id.unwrap_or(0))))
    };
    // The predecessor's rows have no scope: they keep what they could do (their project's
    // routes, or everything for a user key), without dry runs or evaluations. A stored value that
    // does not parse fails safe (reaches nothing, allows no address) rather than failing the
    // lookup: an error here would answer differently from an unknown key.
    let scope = Scope::from_stored(&owner, scope.as_deref()).unwrap_or_else(|nothing| {
        tracing::error!(access_key_id = %ak, "scope_json does not parse; the key reaches nothing");
        nothing
    });
    let allow_ips = match ips.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| {
            tracing::error!(access_key_id = %ak, "allow_ips_json does not parse; the key allows no address");
            vec!["(unparseable allow_ips_json)".to_owned()]
        }),
    };
    let limit = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
    let proof = proof_of(secret.as_deref().unwrap_or_default(), &ak);
    // A rotation keeps a key's form, so a previous proof of the other form is no proof.
    let previous = prev
        .filter(|p| !p.is_empty())
        .map(|p| proof_of(&p, &ak))
        .filter(|p| p.form() == proof.form())
        .zip(until);
    StoredKey {
        access_key_id: ak,
        owner,
        row_id,
        user_id,
        proof,
        previous,
        active: active == 1,
        expires_ms: expires,
        scope,
        daily_quota: limit(quota),
        rps_limit: limit(rps),
        allow_ips,
    }
}

/// A fresh random token: `prefix` + `bytes` random bytes in hex.
fn token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    format!("{prefix}{}", crate::hex::encode(&buf))
}

/// What a new key may do and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// Whose it is.
    pub owner: KeyOwner,
    /// What it may run.
    pub scope: Scope,
    /// Calls per UTC day.
    pub daily_quota: Option<u32>,
    /// Requests per second.
    pub rps_limit: Option<u32>,
    /// Allowed addresses (IPs or CIDRs).
    pub allow_ips: Vec<String>,
    /// Expiry, epoch ms.
    pub expires_ms: Option<i64>,
    /// Signed (a secret that signs requests) or bearer (a token sent as is).
    pub form: KeyForm,
}

impl NewKey {
    /// A signed key with its kind's default scope, no limits, any address, no expiry.
    pub fn new(owner: KeyOwner) -> Self {
        Self {
            scope: Scope::default_for(&owner),
            form: KeyForm::Signed,
            owner,
            daily_quota: None,
            rps_limit: None,
            allow_ips: Vec::new(),
            expires_ms: None,
        }
    }
}

/// Why a key could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The project (or the key) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What was asked cannot be done to this key.
    #[error("{0}")]
    Invalid(String),
    /// The secret could not be encrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Db {
    async fn key_rows(&self, filter: &str, ak: Option<&str>) -> Result<Vec<KeyRow>, StoreError> {
        let pool = self.pool().await?;
        let sql = key_select(filter);
        on_pool!(pool, |p| {
            let mut q = sqlx::query_as::<_, KeyRow>(&sql);
            if let Some(ak) = ak {
                q = q.bind(ak).bind(ak);
            }
            q.fetch_all(p)
                .await
                .map_err(|e| access_err(e, "ai_user_key"))
        })
    }

    /// Creates a key; returns its id and, to be shown once, its secret (a signed key's, stored
    /// only encrypted) or its whole bearer token (stored only as a digest).
    pub async fn create_access_key(
        &self,
        ring: &Keyring,
        new: &NewKey,
    ) -> Result<(String, Secret), KeyError> {
        let pool = self.pool().await?;
        let ak = token("ak_", 12);
        let (secret, blob) = fresh_secret(ring, new.form, new.owner.table(), &ak)?;
        let scope = serde_json::to_string(&new.scope).unwrap_or_default();
        let ips = (!new.allow_ips.is_empty())
            .then(|| serde_json::to_string(&new.allow_ips).unwrap_or_default());
        let quota = new.daily_quota.map(i64::from);
        let rps = new.rps_limit.map(i64::from);
        match &new.owner {
            KeyOwner::Project(name) => {
                let id: Option<i64> = on_pool!(pool, |p| sqlx::query_scalar(
                    "SELECT CAST(id AS SIGNED) FROM ai_project_v2 WHERE name = ?"
                )
                .bind(name)
                .fetch_optional(p)
                .await
                .map_err(db_err))?;
                let id =
                    id.ok_or_else(|| KeyError::NotFound(format!("no project named {name:?}")))?;
                on_pool!(pool, |p| {
                    sqlx::query(
                    "INSERT INTO ai_project_credential_v2 (project_id, access_key_id, secret_encrypted, status, \
                     scope_json, expires_ms, daily_quota, rps_limit, allow_ips_json) \
                     VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?)"
                )
                .bind(id)
                .bind(&ak)
                .bind(&blob)
                .bind(&scope)
                .bind(new.expires_ms)
                .bind(quota)
                .bind(rps)
                .bind(&ips)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| access_err(e, "ai_project_credential_v2"))
                })?;
            }
            KeyOwner::User(name) => {
                let user_id = self.user_id(name).await?;
                on_pool!(pool, |p| {
                    sqlx::query(
                    "INSERT INTO ai_user_key (user_id, access_key_id, secret_encrypted, allow_ips_json, \
                     daily_quota, rps_limit, status, scope_json, expires_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)"
                )
                .bind(user_id)
                .bind(&ak)
                .bind(&blob)
                .bind(&ips)
                .bind(quota)
                .bind(rps)
                .bind(&scope)
                .bind(new.expires_ms)
                .execute(p)
                .await
                .map(|_| ())
                .map_err(|e| access_err(e, "ai_user_key"))
                })?;
            }
        }
        Ok((ak, secret))
    }

    /// The user's id, creating an active user of that name when there is none.
    async fn user_id(&self, name: &str) -> Result<i64, StoreError> {
        let pool = self.pool().await?;
        let find = "SELECT CAST(id AS SIGNED) FROM ai_user WHERE name = ?";
        let found: Option<i64> = on_pool!(pool, |p| sqlx::query_scalar(find)
            .bind(name)
            .fetch_optional(p)
            .await
            .map_err(|e| access_err(e, "ai_user")))?;
        if let Some(id) = found {
            return Ok(id);
        }
        on_pool!(pool, |p| sqlx::query(
            "INSERT INTO ai_user (name, status) VALUES (?, 'active')"
        )
        .bind(name)
        .execute(p)
        .await
        .map(|r| r.insert_id())
        .map_err(|e| access_err(e, "ai_user")))
    }

    /// Every key (never a secret), newest id last within each kind.
    pub async fn list_access_keys(&self) -> Result<Vec<KeyListing>, StoreError> {
        let rows = self.key_rows("", None).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let active = row.6 == 1;
            let k = parse_key(row);
            out.push(KeyListing {
                status: if active { "active" } else { "disabled" }.into(),
                form: k.form(),
                previous_until_ms: k.previous.as_ref().map(|(_, u)| *u),
                access_key_id: k.access_key_id,
                owner: k.owner,
                expires_ms: k.expires_ms,
                scope: k.scope,
                daily_quota: k.daily_quota,
                rps_limit: k.rps_limit,
                allow_ips: k.allow_ips,
            });
        }
        Ok(out)
    }

    /// Sets a key's status (`active` / `disabled`); `false` when no key has this id.
    pub async fn set_access_key_status(&self, ak: &str, active: bool) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let status = if active { "active" } else { "disabled" };
        let mut changed = 0;
        for table in ["ai_project_credential_v2", "ai_user_key"] {
            let sql = format!("UPDATE {table} SET status = ? WHERE access_key_id = ?");
            changed += on_pool!(pool, |p| sqlx::query(&sql)
                .bind(status)
                .bind(ak)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| access_err(e, "ai_user_key")))?;
        }
        Ok(changed > 0)
    }

    /// Gives a key a new secret of its form (a bearer key a new token); the old one keeps
    /// working until `previous_until_ms`. Returns the new secret or token (shown once).
    pub async fn rotate_access_key(
        &self,
        ring: &Keyring,
        ak: &str,
        previous_until_ms: i64,
    ) -> Result<Secret, KeyError> {
        let key = self
            .find_key(ak)
            .await?
            .ok_or_else(|| KeyError::NotFound(format!("no access key {ak:?}")))?;
        let table = key.owner.table();
        // Bound to the id as stored (MySQL's lookup ignores case; the binding does not).
        let (secret, blob) = fresh_secret(ring, key.form(), table, &key.access_key_id)?;
        // Both dialects read `secret_encrypted` here as it was before this statement.
        let sql = format!(
            "UPDATE {table} SET previous_secret_encrypted = CAST(secret_encrypted AS CHAR), \
             previous_until_ms = ?, secret_encrypted = ? WHERE access_key_id = ?"
        );
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(&sql)
            .bind(previous_until_ms)
            .bind(&blob)
            .bind(&key.access_key_id)
            .execute(p)
            .await
            .map(|_| ())
            .map_err(|e| access_err(e, "ai_user_key")))?;
        Ok(secret)
    }

    /// Calls let through and refused per key and UTC day, from `since` (`YYYY-MM-DD`) on.
    pub async fn access_usage(
        &self,
        ak: Option<&str>,
        since: &str,
    ) -> Result<Vec<DayUsage>, StoreError> {
        let pool = self.pool().await?;
        let sql = "SELECT CAST(access_key_id AS CHAR), CAST(day AS CHAR), CAST(granted AS SIGNED), CAST(refused AS SIGNED) \
                   FROM ai_access_usage WHERE (? IS NULL OR access_key_id = ?) AND day >= ? \
                   ORDER BY day, access_key_id";
        let rows: Vec<(String, String, i64, i64)> = on_pool!(pool, |p| sqlx::query_as(sql)
            .bind(ak)
            .bind(ak)
            .bind(since)
            .fetch_all(p)
            .await
            .map_err(|e| access_err(e, "ai_access_usage")))?;
        Ok(rows
            .into_iter()
            .map(|(access_key_id, day, g, r)| DayUsage {
                access_key_id,
                day,
                granted: u64::try_from(g).unwrap_or(0),
                refused: u64::try_from(r).unwrap_or(0),
            })
            .collect())
    }
}

impl AccessStore for Db {
    async fn find_key(&self, access_key_id: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(self
            .key_rows("WHERE k.access_key_id = ?", Some(access_key_id))
            .await?
            .into_iter()
            .next()
            .map(parse_key))
    }

    async fn use_nonce(
        &self,
        access_key_id: &str,
        nonce: &str,
        expires_ms: i64,
    ) -> Result<bool, StoreError> {
        self.nonce_alone(access_key_id, nonce, expires_ms).await
    }

    async fn admit(
        &self,
        access_key_id: &str,
        nonce: &str,
        nonce_until_ms: i64,
        rps: Option<u32>,
        daily: Option<u32>,
    ) -> Result<Admission, StoreError> {
        self.counted(access_key_id, Some((nonce, nonce_until_ms)), rps, daily)
            .await
            .map_err(unanswered)
    }

    async fn count_call(
        &self,
        access_key_id: &str,
        rps: Option<u32>,
        daily: Option<u32>,
    ) -> Result<Admission, StoreError> {
        self.counted(access_key_id, None, rps, daily)
            .await
            .map_err(unanswered)
    }

    async fn log_call(&self, call: &KeyCall) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query(INSERT_CALL_LOG)
            .bind(call.user_id)
            .bind(call.key_id)
            .bind(&call.project_name)
            .bind(&call.route_key)
            .bind(i64::from(call.http_status))
            .bind(to_i64(call.duration_ms))
            .bind(call.tokens_prompt)
            .bind(call.tokens_completion)
            .bind(call.ai_call_log_id)
            .bind(&call.trace_id)
            .bind(&call.access_key_id)
            .bind(crate::model::utc_datetime_ms(
                call.created_at_ms.unwrap_or_else(crate::model::now_ms)
            ))
            .execute(p)
            .await
            .map(|_| ())
            .map_err(|e| access_err(e, "ai_user_call_log")))
    }

    async fn call_logged(&self, trace_id: &str, access_key_id: &str) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        on_pool!(pool, |p| sqlx::query_scalar::<_, i64>(CALL_LOGGED)
            .bind(trace_id)
            .bind(access_key_id)
            .fetch_one(p)
            .await
            .map(|n| n > 0)
            .map_err(|e| access_err(e, "ai_user_call_log")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_connection_is_the_counters_not_answering_a_failed_statement_is_not() {
        let broke = unanswered(db_err(sqlx::Error::PoolTimedOut));
        assert!(matches!(broke, StoreError::Unavailable(_)), "{broke:?}");
        let failed = unanswered(db_err(sqlx::Error::RowNotFound));
        assert!(matches!(failed, StoreError::Query(_)), "{failed:?}");
    }

    #[test]
    fn a_bearer_digest_is_stored_as_its_json_text_and_read_back_as_such() {
        let digest = [0xab_u8; 32];
        let text = bearer_doc(&digest);
        assert_eq!(
            text,
            format!("{{\"bearer\":\"sha256:{}\"}}", "ab".repeat(32))
        );
        assert_eq!(proof_of(&text, "ak_1"), KeyProof::Bearer(digest));
        assert_eq!(
            proof_of(&text.replace("sha256:", ""), "ak_1").form(),
            KeyForm::Signed,
            "a digest that does not read is no bearer proof"
        );
        let blob = r#"{"v":2,"kid":"k","nonce":"bm9uY2U=","ct":"Y3Q="}"#;
        assert_eq!(proof_of(blob, "ak_1"), KeyProof::Signed(blob.to_owned()));
        assert_eq!(
            proof_of(r#"{"bearer":"sha256:00","v":2}"#, "ak_1").form(),
            KeyForm::Signed
        );
    }
}
