//! Bearer calls, as pure functions: which `Authorization` header carries one of our tokens, and
//! whether a token matches a stored digest.
//!
//! Invariants: digests are compared in constant time (`CtOutput`, the comparison `Mac::verify`
//! uses), and every check does the same work, a known key or not: one SHA-256 of the token and
//! two comparisons (the current digest, then the previous one or a decoy), so response times do
//! not tell which keys exist. Nothing here logs or returns the token's secret.

use hmac::digest::CtOutput;
use sha2::Sha256;

use crate::model::bearer::{BearerToken, PREFIX};

/// What an `Authorization` header presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No `Authorization: Bearer` header.
    Nothing,
    /// A bearer credential that is not ours (no `air-` prefix): a platform's JWT, another
    /// service's key.
    Foreign,
    /// One of ours that does not parse (`air-` and then not `<id>-<64 hex>`).
    Malformed,
    /// One of our tokens.
    Token(BearerToken),
}

/// Reads `Authorization: Bearer <token>` (the scheme case-insensitively, as RFC 7235 says).
pub fn read_header(authorization: Option<&str>) -> Presented {
    let Some(value) = authorization.map(str::trim) else {
        return Presented::Nothing;
    };
    let Some((scheme, credential)) = value.split_once(|c: char| c.is_ascii_whitespace()) else {
        return Presented::Nothing;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Nothing;
    }
    let credential = credential.trim();
    if !credential.starts_with(PREFIX) {
        return Presented::Foreign;
    }
    BearerToken::parse(credential).map_or(Presented::Malformed, Presented::Token)
}

/// What a token is compared with when its key has no such digest (unknown, signed, or no
/// previous token): no token hashes to it.
const DECOY: [u8; 32] = [0; 32];

/// Whether `token` hashes to `current` or to `previous` (constant time; both are always
/// compared, a missing one against a decoy).
pub fn matches(
    token: &BearerToken,
    current: Option<&[u8; 32]>,
    previous: Option<&[u8; 32]>,
) -> bool {
    let digest = token.digest();
    let same = |stored: Option<&[u8; 32]>| {
        CtOutput::<Sha256>::new(digest.into()) == CtOutput::new((*stored.unwrap_or(&DECOY)).into())
    };
    // Both, no early exit: the same work whichever matched.
    let first = same(current);
    let second = same(previous);
    (first && current.is_some()) | (second && previous.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn token() -> BearerToken {
        BearerToken::new("ak_1", Secret::new(SECRET)).unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_read_case_insensitively_and_only_our_tokens_are_ours() {
        let header = format!("air-ak_1-{SECRET}");
        for value in [
            format!("Bearer {header}"),
            format!("bearer {header}"),
            format!("BEARER  {header} "),
        ] {
            assert_eq!(
                read_header(Some(&value)),
                Presented::Token(token()),
                "{value}"
            );
        }
        assert_eq!(read_header(None), Presented::Nothing);
        assert_eq!(read_header(Some("Basic dXNlcjpwYXNz")), Presented::Nothing);
        assert_eq!(read_header(Some("Bearer")), Presented::Nothing);
        assert_eq!(
            read_header(Some("Bearer eyJhbGciOi.x.y")),
            Presented::Foreign
        );
        assert_eq!(read_header(Some("Bearer sk-proj-123")), Presented::Foreign);
        assert_eq!(
            read_header(Some("Bearer air-ak_1-beef")),
            Presented::Malformed
        );
        assert_eq!(
            read_header(Some(&format!("Token {header}"))),
            Presented::Nothing
        );
    }

    #[test]
    fn a_token_matches_its_current_or_previous_digest_only() {
        let t = token();
        let right = t.digest();
        let wrong = BearerToken::new("ak_2", Secret::new(SECRET))
            .unwrap()
            .digest();
        assert!(matches(&t, Some(&right), None));
        assert!(
            matches(&t, Some(&wrong), Some(&right)),
            "in its grace period"
        );
        assert!(!matches(&t, Some(&wrong), None));
        assert!(!matches(&t, None, None), "an unknown key");
        assert!(!matches(&t, Some(&DECOY), Some(&DECOY)));
    }
}
