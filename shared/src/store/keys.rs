//! Stored secrets: which rows decrypt and in which format (`keys check`), and re-encryption of
//! every one under the current pepper (`keys rotate`).
//!
//! Covers `ai_connection.api_key_encrypted` and, where the tables exist, the predecessor's
//! `ai_project_credential_v2.secret_encrypted` and `ai_user_key.secret_encrypted` (access keys),
//! plus an access key's previous secret while its `access rotate` grace period lasts. Invariants:
//! no plaintext is ever returned or printed; a rotation is one transaction and refuses to start
//! if any row does not decrypt (nothing is half-rotated); rows already in the current format
//! under the current pepper are left alone, and so are bearer keys' digests (not encrypted, so
//! no pepper is involved: they are reported `bearer (sha256)` and current).

use serde::Serialize;

use super::{Db, StoreError, db_err, on_pool};
use crate::crypto::{BlobFormat, Keyring};
use crate::model::access::KeyProof;

/// One stored secret's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// Table.
    pub table: &'static str,
    /// Row identity (connection name or access key id).
    pub name: String,
    /// `v1 (iter N)`, `v2 (kid X)` or `unreadable`.
    pub format: String,
    /// Whether it decrypts with the configured peppers (a bearer digest needs none: true).
    pub decrypts: bool,
    /// Whether it is already v2 under the current pepper.
    pub current: bool,
    /// The error code when it does not decrypt.
    pub error: Option<String>,
}

struct Source {
    table: &'static str,
    /// How `keys check` names the source.
    label: &'static str,
    name_col: &'static str,
    blob_col: &'static str,
    binding: &'static str,
    /// Which rows hold a secret here (`?` = now, epoch ms); all when `None`.
    filter: Option<&'static str>,
    /// Whether the column may hold a bearer key's digest instead (the access key tables).
    access_keys: bool,
}

/// An access key's previous secret while its rotation's grace period lasts (after it, the secret
/// is never used again, so a pepper rotation need not read it).
const PREVIOUS: &str = "previous_secret_encrypted IS NOT NULL AND previous_until_ms > ?";

const SOURCES: [Source; 5] = [
    Source {
        table: "ai_connection",
        label: "ai_connection",
        name_col: "name",
        blob_col: "api_key_encrypted",
        binding: "ai_connection",
        filter: None,
        access_keys: false,
    },
    Source {
        table: "ai_project_credential_v2",
        label: "ai_project_credential_v2",
        name_col: "access_key_id",
        blob_col: "secret_encrypted",
        binding: "ai_project_credential_v2",
        filter: None,
        access_keys: true,
    },
    Source {
        table: "ai_user_key",
        label: "ai_user_key",
        name_col: "access_key_id",
        blob_col: "secret_encrypted",
        binding: "ai_user_key",
        filter: None,
        access_keys: true,
    },
    Source {
        table: "ai_project_credential_v2",
        label: "ai_project_credential_v2 (previous secret)",
        name_col: "access_key_id",
        blob_col: "previous_secret_encrypted",
        binding: "ai_project_credential_v2",
        filter: Some(PREVIOUS),
        access_keys: true,
    },
    Source {
        table: "ai_user_key",
        label: "ai_user_key (previous secret)",
        name_col: "access_key_id",
        blob_col: "previous_secret_encrypted",
        binding: "ai_user_key",
        filter: Some(PREVIOUS),
        access_keys: true,
    },
];

/// What `keys rotate` did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// Rows looked at.
    pub total: usize,
    /// Rows re-encrypted (or to be, in a dry run).
    pub rotated: usize,
    /// Rows already current.
    pub already_current: usize,
}

impl Db {
    async fn secret_rows(&self) -> Result<Vec<(&'static Source, String, String)>, StoreError> {
        let pool = self.pool().await?;
        let mut out = Vec::new();
        for src in &SOURCES {
            let sql = format!(
                "SELECT {}, CAST({} AS CHAR) FROM {} WHERE {} ORDER BY id",
                src.name_col,
                src.blob_col,
                src.table,
                src.filter.unwrap_or("1 = 1")
            );
            let now = crate::model::now_ms();
            let rows: Result<Vec<(String, Option<String>)>, sqlx::Error> = on_pool!(pool, |p| {
                let q = sqlx::query_as(&sql);
                let q = if src.filter.is_some() { q.bind(now) } else { q };
                q.fetch_all(p).await
            });
            match rows {
                Ok(rows) => out.extend(
                    rows.into_iter()
                        .map(|(n, b)| (src, n, b.unwrap_or_default())),
                ),
                // The predecessor's schema: no access tables, or not yet our columns.
                Err(e)
                    if super::dialect::is_missing_table(&e)
                        || super::dialect::is_unknown_column(&e) => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        Ok(out)
    }

    /// The state of every stored secret (never its value).
    pub async fn check_keys(&self, ring: &Keyring) -> Result<Vec<KeyStatus>, StoreError> {
        Ok(self
            .secret_rows()
            .await?
            .into_iter()
            .map(|(src, name, blob)| status(src, name, &blob, ring))
            .collect())
    }

    /// Re-encrypts every stored secret under the current pepper, in one transaction.
    pub async fn rotate_keys(
        &self,
        ring: &Keyring,
        dry_run: bool,
    ) -> Result<Rotation, crate::RunError> {
        let rows = self.secret_rows().await?;
        let mut report = Rotation {
            total: rows.len(),
            ..Rotation::default()
        };
        let mut updates = Vec::new();
        for (src, name, blob) in &rows {
            let st = status(src, name.clone(), blob, ring);
            if !st.decrypts {
                return Err(crate::RunError::Crypto(
                    crate::crypto::CryptoError::DecryptFailed(
                        "a stored secret does not decrypt with AI_PEPPER or AI_PEPPER_PREVIOUS; nothing was rotated",
                    ),
                ));
            }
            if st.current {
                report.already_current += 1;
                continue;
            }
            let binding = format!("{}:{name}", src.binding);
            let plain = ring.decrypt(blob, &binding)?;
            updates.push((src, name.clone(), ring.encrypt(plain.expose(), &binding)?));
        }
        report.rotated = updates.len();
        if dry_run || updates.is_empty() {
            return Ok(report);
        }
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(db_err)?;
            for (src, name, blob) in &updates {
                let sql = format!(
                    "UPDATE {} SET {} = ? WHERE {} = ?",
                    src.table, src.blob_col, src.name_col
                );
                sqlx::query(&sql)
                    .bind(blob)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            super::dialect::bumped(
                sqlx::query(super::dialect::bump_catalog(self.is_mysql()))
                    .execute(&mut *tx)
                    .await,
            )?;
            tx.commit().await.map_err(db_err)?;
            Ok::<(), crate::RunError>(())
        })?;
        self.catalog_written();
        Ok(report)
    }
}

fn status(src: &Source, name: String, blob: &str, ring: &Keyring) -> KeyStatus {
    if src.access_keys
        && let KeyProof::Bearer(_) = super::access::proof_of(blob, &name)
    {
        return KeyStatus {
            table: src.label,
            name,
            format: "bearer (sha256)".to_owned(),
            decrypts: true,
            current: true,
            error: None,
        };
    }
    let binding = format!("{}:{name}", src.binding);
    let format = match Keyring::format_of(blob) {
        Ok(BlobFormat::V1 { iter }) => format!("v1 (iter {iter})"),
        Ok(BlobFormat::V2 { kid }) => format!("v2 (kid {kid})"),
        Err(_) => "unreadable".to_owned(),
    };
    let current = matches!(Keyring::format_of(blob), Ok(BlobFormat::V2 { ref kid }) if Some(kid.as_str()) == ring.current_kid());
    let decrypted = ring.decrypt(blob, &binding);
    KeyStatus {
        table: src.label,
        name,
        format,
        decrypts: decrypted.is_ok(),
        current: current && decrypted.is_ok(),
        error: decrypted.err().map(|e| e.code().as_str().to_owned()),
    }
}
