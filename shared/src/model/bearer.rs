//! The bearer form of an access key: the token `air-<access key id>-<secret>` that OpenAI SDKs
//! send as `Authorization: Bearer ...`, and the digest of it the store keeps.
//!
//! Invariants: the secret part is 64 lowercase hex characters (32 random bytes); a token's
//! secret is held in a [`Secret`] (masked `Debug`, zeroized) and never appears in `Debug`, logs
//! or errors; what is stored is only [`BearerToken::digest`], SHA-256 over
//! `air-bearer-v1:<access key id>:<secret>` (the version and the id are inside the hashed text,
//! so a digest is bound to its key and to this scheme). Parsing is total: a text that is not a
//! token is `None`, never a panic.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// What every token starts with.
pub const PREFIX: &str = "air-";

/// The length of a token's secret part: 32 bytes in lowercase hex.
pub const SECRET_LEN: usize = 64;

/// The longest access key id a token may name (as long as a signed request's `X-AK`).
const MAX_ID_LEN: usize = 128;

/// The text hashed into a token's digest starts with this (the scheme's version).
const DIGEST_CONTEXT: &str = "air-bearer-v1";

/// A bearer token: the access key id it names and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    access_key_id: String,
    secret: Secret,
}

/// The key id only: the secret is masked.
impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Whether `id` may be named by a token: not empty, not too long, printable ASCII without
/// spaces (the predecessor's ids are `ak_` + hex; ours too).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `secret` is a token's secret part: exactly [`SECRET_LEN`] lowercase hex characters.
fn valid_secret(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl BearerToken {
    /// A token for this key and secret; `None` when the id cannot be named by a token or the
    /// secret is not 64 lowercase hex characters.
    pub fn new(access_key_id: &str, secret: Secret) -> Option<Self> {
        (valid_id(access_key_id) && valid_secret(secret.expose())).then(|| Self {
            access_key_id: access_key_id.to_owned(),
            secret,
        })
    }

    /// Reads a token (`air-<id>-<secret>`, surrounding blanks ignored); `None` when `text` is
    /// not one. The secret is the part after the last `-` (it has none), so an id may contain
    /// `-`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix(PREFIX)?;
        let (id, secret) = rest.rsplit_once('-')?;
        Self::new(id, Secret::new(secret))
    }

    /// The access key id the token names.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The SHA-256 digest the store keeps: over `air-bearer-v1:<access key id>:<secret>`.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            DIGEST_CONTEXT,
            ":",
            &self.access_key_id,
            ":",
            self.secret.expose(),
        ] {
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }

    /// The whole token, as the caller sends it: shown once, at creation or rotation.
    pub fn reveal(&self) -> Secret {
        Secret::new(format!(
            "{PREFIX}{}-{}",
            self.access_key_id,
            self.secret.expose()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_token_names_its_key_and_reads_back_what_it_reveals() {
        let t = BearerToken::parse(&format!("air-ak_0123abcd-{SECRET}")).unwrap();
        assert_eq!(t.access_key_id(), "ak_0123abcd");
        assert_eq!(
            t.reveal().expose(),
            format!("air-ak_0123abcd-{SECRET}"),
            "round trip"
        );
        let dashed = BearerToken::parse(&format!(" air-team-a-{SECRET}\n")).unwrap();
        assert_eq!(dashed.access_key_id(), "team-a", "an id may contain '-'");
    }

    #[test]
    fn anything_else_is_not_a_token() {
        for text in [
            String::new(),
            "air-".into(),
            format!("air--{SECRET}"),
            format!("ak_1-{SECRET}"),
            format!("AIR-ak_1-{SECRET}"),
            format!("air-ak_1-{}", SECRET.to_uppercase()),
            format!("air-ak_1-{}", &SECRET[1..]),
            format!("air-ak_1-{SECRET}0"),
            format!("air-ak_1-{}g", &SECRET[1..]),
            format!("air-ak 1-{SECRET}"),
            format!("air-ak_1{SECRET}"),
            "sk_0123456789abcdef".into(),
            format!("air-{}-{SECRET}", "a".repeat(129)),
        ] {
            assert!(BearerToken::parse(&text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn the_digest_is_sha256_over_the_versioned_text_and_binds_the_key() {
        let t = BearerToken::parse(&format!("air-ak_1-{SECRET}")).unwrap();
        let expected = Sha256::digest(format!("air-bearer-v1:ak_1:{SECRET}").as_bytes());
        assert_eq!(t.digest().as_slice(), expected.as_slice());
        let other = BearerToken::parse(&format!("air-ak_2-{SECRET}")).unwrap();
        assert_ne!(t.digest(), other.digest());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = BearerToken::parse(&format!("air-ak_1-{SECRET}")).unwrap();
        let shown = format!("{t:?}");
        assert!(shown.contains("ak_1") && !shown.contains(SECRET), "{shown}");
    }
}
