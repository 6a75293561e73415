//! Encrypted provider keys: the predecessor's v1 blobs (read) and our v2 format (read and write).
//!
//! v1 (compat.md section 2): `{"v":1,"alg":"AES-256-GCM","iter":N,"salt","nonce","ct"[,"tag"]}`,
//! key = PBKDF2-HMAC-SHA256(password = `fixed-input`, salt = pepper || salt16, N rounds), no
//! associated data. Derived keys are cached per (pepper, salt, iter) for the life of the process,
//! and `iter` is bounded so a hostile row cannot burn the CPU.
//!
//! v2 (ours): `{"v":2,"alg":"AES-256-GCM","kid","nonce","ct"}`. The pepper is a high-entropy
//! secret, so the key is HKDF-SHA256(pepper), not a slow KDF. `kid` names the pepper (derived
//! from it, so it reveals nothing) and lets a previous pepper keep decrypting during a rotation.
//! The associated data binds the ciphertext to its key id and its row (`binding`, e.g.
//! `ai_connection:openai-main`), so a blob copied to another row does not decrypt.
//!
//! Invariants: plaintexts leave this module only as [`Secret`]s; errors never contain key
//! material; a wrong pepper is `DECRYPT_FAILED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::code::Code;
use crate::secret::Secret;

/// The fixed PBKDF2 password the predecessor used (the pepper goes into the salt).
const V1_PASSWORD: &[u8] = b"fixed-input";
/// The smallest and largest PBKDF2 round counts accepted from a stored v1 blob.
pub const V1_ITER_RANGE: std::ops::RangeInclusive<u32> = 1_000..=1_000_000;
const V2_HKDF_SALT: &[u8] = b"ai-runner/v2";

/// Why a stored secret could not be turned back into plain text (or written).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No `AI_PEPPER` is configured.
    #[error("AI_PEPPER is not set; it is required to decrypt and encrypt provider keys")]
    PepperMissing,
    /// The blob is not a format we know, or its fields are malformed.
    #[error("encrypted key is malformed: {0}")]
    Malformed(String),
    /// A v1 blob asks for a round count outside [`V1_ITER_RANGE`].
    #[error("encrypted key asks for {0} PBKDF2 rounds, outside the accepted 1000..=1000000")]
    IterOutOfRange(u64),
    /// Authentication failed: wrong pepper, tampered blob, or a blob moved to another row.
    #[error("cannot decrypt the stored key: {0}")]
    DecryptFailed(&'static str),
}

impl CryptoError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::PepperMissing => Code::PepperMissing,
            Self::Malformed(_) => Code::EncryptedKeyInvalid,
            Self::IterOutOfRange(_) => Code::EncryptedKeyInvalid,
            Self::DecryptFailed(_) => Code::DecryptFailed,
        }
    }
}

/// Which format a stored blob uses (for `keys check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFormat {
    /// The predecessor's PBKDF2 format.
    V1 {
        /// Its round count.
        iter: u32,
    },
    /// Ours, under the pepper with this key id.
    V2 {
        /// The key id.
        kid: String,
    },
}

#[derive(serde::Deserialize)]
struct AnyBlob {
    v: u32,
    alg: Option<String>,
    iter: Option<u64>,
    salt: Option<String>,
    nonce: Option<String>,
    ct: Option<String>,
    tag: Option<String>,
    kid: Option<String>,
}

#[derive(serde::Serialize)]
struct V2Blob<'a> {
    v: u32,
    alg: &'a str,
    kid: &'a str,
    nonce: String,
    ct: String,
}

struct PepperKeys {
    pepper: Secret,
    kid: String,
    v2_key: Zeroizing<[u8; 32]>,
}

impl PepperKeys {
    fn new(pepper: Secret) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(V2_HKDF_SALT), pepper.expose().as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; 8];
        // Both lengths are far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = hk.expand(b"ai-runner provider-key encryption", key.as_mut());
        let _ = hk.expand(b"ai-runner key id", &mut id);
        Self {
            pepper,
            kid: crate::hex::encode(&id),
            v2_key: key,
        }
    }
}

type V1CacheKey = ([u8; 32], Vec<u8>, u32);

/// The peppers in force plus the process-wide cache of derived v1 keys. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<KeyringInner>,
}

struct KeyringInner {
    current: Option<PepperKeys>,
    previous: Option<PepperKeys>,
    v1_cache: Mutex<HashMap<V1CacheKey, Zeroizing<[u8; 32]>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current_kid", &self.current_kid())
            .field(
                "previous_kid",
                &self.inner.previous.as_ref().map(|p| p.kid.as_str()),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring for the current pepper and, during a rotation, the previous one.
    pub fn new(current: Option<Secret>, previous: Option<Secret>) -> Self {
        Self {
            inner: Arc::new(KeyringInner {
                current: current.map(PepperKeys::new),
                previous: previous.map(PepperKeys::new),
                v1_cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The key id new blobs are written under, if a pepper is configured.
    pub fn current_kid(&self) -> Option<&str> {
        self.inner.current.as_ref().map(|p| p.kid.as_str())
    }

    fn peppers(&self) -> impl Iterator<Item = &PepperKeys> {
        self.inner.current.iter().chain(self.inner.previous.iter())
    }

    /// Encrypts `plain` in our v2 format, bound to `binding` (the row's identity).
    pub fn encrypt(&self, plain: &str, binding: &str) -> Result<String, CryptoError> {
        let keys = self
            .inner
            .current
            .as_ref()
            .ok_or(CryptoError::PepperMissing)?;
        let cipher = Aes256Gcm::new_from_slice(keys.v2_key.as_ref())
            .map_err(|_| CryptoError::Malformed("bad key length".into()))?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = v2_aad(&keys.kid, binding);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Malformed("encryption failed".into()))?;
        serde_json::to_string(&V2Blob {
            v: 2,
            alg: "AES-256-GCM",
            kid: &keys.kid,
            nonce: B64.encode(nonce),
            ct: B64.encode(ct),
        })
        .map_err(|e| CryptoError::Malformed(e.to_string()))
    }

    /// Tells which format a stored blob uses, without decrypting it.
    pub fn format_of(stored: &str) -> Result<BlobFormat, CryptoError> {
        let blob = parse_blob(stored)?;
        match blob.v {
            1 => Ok(BlobFormat::V1 {
                iter: checked_iter(blob.iter)?,
            }),
            2 => Ok(BlobFormat::V2 {
                kid: blob.kid.unwrap_or_default(),
            }),
            v => Err(CryptoError::Malformed(format!("unknown version {v}"))),
        }
    }

    /// Decrypts a stored blob (v1 or v2). `binding` is the row identity v2 blobs are bound to.
    pub fn decrypt(&self, stored: &str, binding: &str) -> Result<Secret, CryptoError> {
        if self.inner.current.is_none() && self.inner.previous.is_none() {
            return Err(CryptoError::PepperMissing);
        }
        let blob = parse_blob(stored)?;
        if let Some(alg) = &blob.alg
            && alg != "AES-256-GCM"
        {
            return Err(CryptoError::Malformed(format!("unsupported alg {alg:?}")));
        }
        let nonce = b64_field(&blob.nonce, "nonce")?;
        if nonce.len() != 12 {
            return Err(CryptoError::Malformed("nonce must be 12 bytes".into()));
        }
        let mut ct = b64_field(&blob.ct, "ct")?;
        if let Some(tag) = &blob.tag {
            let tag = B64
                .decode(tag)
                .map_err(|_| CryptoError::Malformed("tag is not base64".into()))?;
            ct.extend_from_slice(&tag);
        }
        if ct.len() < 16 {
            return Err(CryptoError::Malformed(
                "ciphertext shorter than its tag".into(),
            ));
        }
        let plain = match blob.v {
            1 => {
                let iter = checked_iter(blob.iter)?;
                let salt = b64_field(&blob.salt, "salt")?;
                self.peppers()
                    .find_map(|p| {
                        let key = self.v1_key(p, &salt, iter);
                        open(&key, &nonce, &ct, b"")
                    })
                    .ok_or(CryptoError::DecryptFailed("wrong pepper or tampered blob"))?
            }
            2 => {
                let kid = blob
                    .kid
                    .as_deref()
                    .ok_or_else(|| CryptoError::Malformed("missing kid".into()))?;
                let keys =
                    self.peppers()
                        .find(|p| p.kid == kid)
                        .ok_or(CryptoError::DecryptFailed(
                            "its key id matches neither the current nor the previous pepper",
                        ))?;
                open(&keys.v2_key, &nonce, &ct, v2_aad(kid, binding).as_bytes()).ok_or(
                    CryptoError::DecryptFailed("tampered blob, or a blob copied from another row"),
                )?
            }
            v => return Err(CryptoError::Malformed(format!("unknown version {v}"))),
        };
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| CryptoError::Malformed("plaintext is not UTF-8".into()))
    }

    /// The v1 key for (pepper, salt, iter), derived once per process.
    fn v1_key(&self, p: &PepperKeys, salt: &[u8], iter: u32) -> Zeroizing<[u8; 32]> {
        let fp: [u8; 32] = Sha256::digest(p.pepper.expose().as_bytes()).into();
        let cache_key = (fp, salt.to_vec(), iter);
        if let Ok(cache) = self.inner.v1_cache.lock()
            && let Some(k) = cache.get(&cache_key)
        {
            return k.clone();
        }
        let key = derive_v1_key(&p.pepper, salt, iter);
        if let Ok(mut cache) = self.inner.v1_cache.lock() {
            cache.insert(cache_key, key.clone());
        }
        key
    }
}

/// PBKDF2-HMAC-SHA256 exactly as the predecessor derived its keys (uncached).
pub fn derive_v1_key(pepper: &Secret, salt16: &[u8], iter: u32) -> Zeroizing<[u8; 32]> {
    let mut salt = Zeroizing::new(Vec::with_capacity(pepper.expose().len() + salt16.len()));
    salt.extend_from_slice(pepper.expose().as_bytes());
    salt.extend_from_slice(salt16);
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(V1_PASSWORD, &salt, iter, key.as_mut());
    key
}

/// Encrypts in the predecessor's v1 format (for tests and for tools that must write v1).
pub fn encrypt_v1(pepper: &Secret, plain: &str, iter: u32) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = derive_v1_key(pepper, &salt, iter);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref())
        .map_err(|_| CryptoError::Malformed("bad key length".into()))?;
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
        .map_err(|_| CryptoError::Malformed("encryption failed".into()))?;
    Ok(serde_json::json!({
        "v": 1, "alg": "AES-256-GCM", "iter": iter,
        "salt": B64.encode(salt), "nonce": B64.encode(nonce), "ct": B64.encode(ct)
    })
    .to_string())
}

fn v2_aad(kid: &str, binding: &str) -> String {
    format!("ai-runner/v2|{kid}|{binding}")
}

fn open(key: &[u8; 32], nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

fn parse_blob(stored: &str) -> Result<AnyBlob, CryptoError> {
    serde_json::from_str(stored.trim())
        .map_err(|_| CryptoError::Malformed("not a JSON object with a version field".into()))
}

fn checked_iter(iter: Option<u64>) -> Result<u32, CryptoError> {
    let iter = iter.ok_or_else(|| CryptoError::Malformed("missing iter".into()))?;
    match u32::try_from(iter) {
        Ok(i) if V1_ITER_RANGE.contains(&i) => Ok(i),
        _ => Err(CryptoError::IterOutOfRange(iter)),
    }
}

fn b64_field(v: &Option<String>, name: &str) -> Result<Vec<u8>, CryptoError> {
    let v = v
        .as_deref()
        .ok_or_else(|| CryptoError::Malformed(format!("missing {name}")))?;
    B64.decode(v)
        .map_err(|_| CryptoError::Malformed(format!("{name} is not base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        pepper: String,
        plain: String,
        derived_key_hex: String,
        stored_string: String,
        detached_tag_variant: String,
    }

    fn vectors() -> Vec<Vector> {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/spec/crypto-test-vectors.json"
        ))
        .unwrap()
    }

    #[test]
    fn all_predecessor_vectors_derive_the_same_key_and_decrypt() {
        let vs = vectors();
        assert_eq!(vs.len(), 3);
        for v in vs {
            let blob: serde_json::Value = serde_json::from_str(&v.stored_string).unwrap();
            let salt = B64.decode(blob["salt"].as_str().unwrap()).unwrap();
            let iter = blob["iter"].as_u64().unwrap() as u32;
            let key = derive_v1_key(&Secret::new(v.pepper.clone()), &salt, iter);
            assert_eq!(crate::hex::encode(key.as_ref()), v.derived_key_hex);
            let ring = Keyring::new(Some(Secret::new(v.pepper.clone())), None);
            assert_eq!(
                ring.decrypt(&v.stored_string, "any").unwrap().expose(),
                v.plain
            );
            assert_eq!(
                ring.decrypt(&v.detached_tag_variant, "any")
                    .unwrap()
                    .expose(),
                v.plain
            );
        }
    }

    #[test]
    fn a_wrong_pepper_is_decrypt_failed() {
        let v = &vectors()[1];
        let ring = Keyring::new(Some(Secret::new("not-the-pepper")), None);
        let err = ring.decrypt(&v.stored_string, "x").unwrap_err();
        assert_eq!(err.code(), Code::DecryptFailed);
    }

    #[test]
    fn a_tampered_v1_blob_is_decrypt_failed() {
        let v = &vectors()[1];
        let mut blob: serde_json::Value = serde_json::from_str(&v.stored_string).unwrap();
        let mut ct = B64.decode(blob["ct"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        blob["ct"] = B64.encode(ct).into();
        let ring = Keyring::new(Some(Secret::new(v.pepper.clone())), None);
        assert_eq!(
            ring.decrypt(&blob.to_string(), "x").unwrap_err().code(),
            Code::DecryptFailed
        );
    }

    #[test]
    fn an_absurd_iteration_count_is_refused_before_any_work() {
        let v = &vectors()[1];
        let ring = Keyring::new(Some(Secret::new(v.pepper.clone())), None);
        for iter in [1_000_000_000u64, 0, 10] {
            let mut blob: serde_json::Value = serde_json::from_str(&v.stored_string).unwrap();
            blob["iter"] = iter.into();
            let err = ring.decrypt(&blob.to_string(), "x").unwrap_err();
            assert_eq!(err.code(), Code::EncryptedKeyInvalid);
            assert!(err.to_string().contains(&iter.to_string()));
        }
    }

    #[test]
    fn malformed_blobs_get_a_clear_error() {
        let ring = Keyring::new(Some(Secret::new("p")), None);
        for bad in ["", "sk-plain-text", "{\"v\":9}", "{\"v\":1,\"iter\":1000}"] {
            assert_eq!(
                ring.decrypt(bad, "x").unwrap_err().code(),
                Code::EncryptedKeyInvalid,
                "{bad}"
            );
        }
        let none = Keyring::new(None, None);
        assert_eq!(
            none.decrypt("{}", "x").unwrap_err().code(),
            Code::PepperMissing
        );
    }

    #[test]
    fn v2_round_trips_and_is_bound_to_its_row() {
        let ring = Keyring::new(Some(Secret::new("a-high-entropy-pepper")), None);
        let blob = ring.encrypt("sk-live-123", "ai_connection:main").unwrap();
        assert!(!blob.contains("sk-live"));
        assert_eq!(
            Keyring::format_of(&blob).unwrap(),
            BlobFormat::V2 {
                kid: ring.current_kid().unwrap().to_owned()
            }
        );
        assert_eq!(
            ring.decrypt(&blob, "ai_connection:main").unwrap().expose(),
            "sk-live-123"
        );
        assert_eq!(
            ring.decrypt(&blob, "ai_connection:other")
                .unwrap_err()
                .code(),
            Code::DecryptFailed
        );
        let wrong = Keyring::new(Some(Secret::new("another-pepper")), None);
        assert_eq!(
            wrong
                .decrypt(&blob, "ai_connection:main")
                .unwrap_err()
                .code(),
            Code::DecryptFailed
        );
    }

    #[test]
    fn after_rotation_old_blobs_decrypt_with_the_previous_pepper() {
        let old = Keyring::new(Some(Secret::new("old-pepper")), None);
        let old_v2 = old.encrypt("sk-a", "ai_connection:c").unwrap();
        let old_v1 = encrypt_v1(&Secret::new("old-pepper"), "sk-b", 1000).unwrap();
        let rotated = Keyring::new(
            Some(Secret::new("new-pepper")),
            Some(Secret::new("old-pepper")),
        );
        assert_eq!(
            rotated
                .decrypt(&old_v2, "ai_connection:c")
                .unwrap()
                .expose(),
            "sk-a"
        );
        assert_eq!(
            rotated
                .decrypt(&old_v1, "ai_connection:c")
                .unwrap()
                .expose(),
            "sk-b"
        );
        let new_blob = rotated.encrypt("sk-a", "ai_connection:c").unwrap();
        assert_ne!(
            Keyring::format_of(&new_blob).unwrap(),
            Keyring::format_of(&old_v2).unwrap()
        );
        let only_new = Keyring::new(Some(Secret::new("new-pepper")), None);
        assert_eq!(
            only_new
                .decrypt(&new_blob, "ai_connection:c")
                .unwrap()
                .expose(),
            "sk-a"
        );
        assert_eq!(
            only_new
                .decrypt(&old_v2, "ai_connection:c")
                .unwrap_err()
                .code(),
            Code::DecryptFailed
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_pepper_or_plaintext() {
        let ring = Keyring::new(Some(Secret::new("pepper-do-not-show")), None);
        let shown = format!("{ring:?}");
        assert!(!shown.contains("pepper-do-not-show"));
        let err = ring.decrypt(
            &encrypt_v1(&Secret::new("x"), "sk-plain-zzz", 1000).unwrap(),
            "r",
        );
        let shown = format!("{err:?} {}", err.as_ref().unwrap_err());
        assert!(!shown.contains("sk-plain-zzz") && !shown.contains("pepper-do-not-show"));
    }
}
