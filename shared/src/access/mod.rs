//! Access control for API calls: who is calling, may they run this, and have they a call left.
//!
//! [`check`] takes an HTTP call as the platform delivered it and what it asks to do, and answers
//! [`Granted`] (with the caller's identity for the audit row) or [`Denied`] (a stable code, and for
//! limits `Retry-After` and `X-RateLimit-*` values). It is pure over the [`AccessStore`] port
//! and the [`Keyring`]; the function edge calls it before anything is resolved or sent.
//!
//! A call proves its key in one of two forms, as `ACCESS_MODE` allows ([`AccessMode`]): a signed
//! request (`signature`: the headers, the timestamp's skew, the HMAC) or a bearer token
//! (`bearer`: `Authorization: Bearer air-<id>-<secret>`, what OpenAI SDKs send). A bearer token
//! is tried first when the mode accepts both and the call carries one of ours.
//!
//! Order of the checks, and why: headers and timestamp first (no database work for junk); then
//! the key and its signature or token, an unknown key answered exactly like a bad signature or a
//! bad token (same code shown, same work done), so nobody learns which keys exist; a key of the
//! other form is refused the same way (a signing key's id in a token, a bearer key's id in a
//! signature); only a call that proved its key learns that the key is disabled, expired, out of
//! scope or off its IP list; then, in one transaction, the nonce (insert-or-fail: a replay is
//! refused across instances; a bearer call has none) and the per-second and daily counters (one
//! conditional upsert each: concurrent instances cannot overshoot). A refused call has made no
//! provider call.
//!
//! Invariants: the secret is decrypted into a [`crate::secret::Secret`] for the comparison
//! only and never logged, and a token's secret part is only ever hashed; when the database
//! cannot answer, the key lookup and the nonce fail closed always, the counters unless
//! `ACCESS_FAIL_OPEN=true`; a count whose statement failed (a deadlock: tried once more) fails
//! closed always.

pub mod bearer;
pub mod record;
pub mod signature;

#[cfg(test)]
mod admit_tests;

use std::net::IpAddr;

use crate::code::Code;
use crate::config::{AccessMode, AccessSettings};
use crate::crypto::Keyring;
use crate::model::access::{
    Action, Admission, Caller, KeyForm, KeyProof, StoredKey, secret_binding,
};
use crate::model::bearer::BearerToken;
use crate::ports::{AccessStore, StoreError};
use bearer::Presented;
use signature::{Request, Signed};

/// An HTTP call as the platform delivered it (API Gateway REST / HTTP API, Function URL, FC HTTP
/// trigger).
#[derive(Clone, Default)]
pub struct HttpCall {
    /// HTTP method.
    pub method: String,
    /// The path as the client requested it, then as the function saw it (without the stage),
    /// deduplicated: a raw-body signature over either is accepted.
    pub paths: Vec<String>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The raw body (base64 already decoded).
    pub body: Vec<u8>,
    /// The caller's address as the platform saw it.
    pub source_ip: Option<String>,
    /// The platform authorizer's principal (IAM ARN, `jwt:<sub>`, Lambda authorizer id).
    pub principal: Option<String>,
}

/// Header names only, and the body's size: a header may carry a credential.
impl std::fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("paths", &self.paths)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .field("source_ip", &self.source_ip)
            .field("principal", &self.principal)
            .finish()
    }
}

impl HttpCall {
    /// A header's value by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Rate-limit headers: `X-RateLimit-Limit` / `X-RateLimit-Remaining` (the daily quota when the
/// key has one, else its per-second limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The limit.
    pub limit: u64,
    /// What is left of it.
    pub remaining: u64,
}

/// A call let through.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// Who called (for the audit row).
    pub caller: Caller,
    /// The key that signed the call or whose token it carried, when the mode checks keys.
    pub key: Option<StoredKey>,
    /// Rate-limit headers for the answer.
    pub limits: Option<Limits>,
}

/// A call refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Why (logged as is).
    pub code: Code,
    /// The access key id the call named, if any (logged, never a secret).
    pub access_key_id: Option<String>,
    /// `Retry-After`, seconds (limits only).
    pub retry_after: Option<u64>,
    /// Rate-limit headers (limits only).
    pub limits: Option<Limits>,
    /// The form of credential the refusal is about: the one the call presented, or for a
    /// missing credential the one the mode requires (`None`: either, or not known). It decides
    /// what an unknown key is shown as and what `AUTH_MISSING` asks for.
    pub form: Option<KeyForm>,
}

impl Denied {
    /// A refusal with this code, naming the key the call named.
    pub fn new(code: Code, ak: Option<&str>) -> Self {
        Self {
            code,
            access_key_id: ak.map(str::to_owned),
            retry_after: None,
            limits: None,
            form: None,
        }
    }

    /// The same refusal, about a credential of this form.
    #[must_use]
    pub fn via(mut self, form: KeyForm) -> Self {
        self.form = Some(form);
        self
    }

    /// No credential the mode accepts: `AUTH_MISSING` where a signed request is required or
    /// either form is accepted (what signed clients already know), `AUTH_TOKEN_MISSING` where
    /// only a bearer token is; the message names what is accepted.
    pub fn missing(mode: AccessMode) -> Self {
        match (mode.accepts_signed(), mode.accepts_bearer()) {
            (true, true) => Self::new(Code::AuthMissing, None),
            (false, true) => Self::new(Code::AuthTokenMissing, None).via(KeyForm::Bearer),
            _ => Self::new(Code::AuthMissing, None).via(KeyForm::Signed),
        }
    }

    /// The code the caller is shown: an unknown key looks exactly like a bad signature, or for
    /// a bearer call like a bad token.
    pub fn shown(&self) -> Code {
        match (self.code, self.form) {
            (Code::AuthKeyUnknown, Some(KeyForm::Bearer)) => Code::AuthTokenInvalid,
            (Code::AuthKeyUnknown, _) => Code::AuthSignatureInvalid,
            (other, _) => other,
        }
    }

    /// The short message the caller is shown (the same for an unknown key and a bad signature
    /// or token).
    pub fn message(&self) -> &'static str {
        match self.shown() {
            Code::AuthMissing if self.form == Some(KeyForm::Signed) => {
                "this API needs a signed request (X-AK, X-Timestamp and X-Nonce + X-Signature, or X-Signature-V2)"
            }
            Code::AuthMissing => {
                "this API needs an access key: a signed request (X-AK, X-Timestamp and X-Nonce + X-Signature, or X-Signature-V2) or a bearer token (Authorization: Bearer air-...)"
            }
            Code::AuthTokenMissing => {
                "this API needs an access key's bearer token (Authorization: Bearer air-...)"
            }
            Code::AuthTokenInvalid => "the bearer token is not valid",
            Code::AuthSignatureInvalid => "the signature does not match the request",
            Code::AuthTimestampSkew => "X-Timestamp is too far from the server's clock",
            Code::AuthReplay => "this request was already received (nonce used)",
            Code::AuthKeyDisabled => "the access key is disabled",
            Code::AuthKeyExpired => "the access key has expired",
            Code::AuthIpDenied => "the access key may not be used from this address",
            Code::AuthScopeDenied => "the access key may not do this",
            Code::QuotaExceeded => "the access key's daily quota is used up",
            Code::RateLimited => "too many requests per second for this access key",
            _ => "the access check could not be completed; try again",
        }
    }
}

/// Seconds until the next UTC midnight (a daily quota's `Retry-After`).
fn seconds_to_utc_midnight(now_ms: i64) -> u64 {
    let day_ms = 86_400_000;
    u64::try_from((day_ms - now_ms.rem_euclid(day_ms) + 999) / 1000).unwrap_or(1)
}

/// Whether an allow-list entry is an IP address or a network (`10.0.0.0/8`).
pub fn is_ip_entry(entry: &str) -> bool {
    let entry = entry.trim();
    entry.parse::<IpAddr>().is_ok() || entry.parse::<ipnet::IpNet>().is_ok()
}

/// Whether `ip` is in the allow list (IPs or CIDRs; an unparseable entry allows nothing).
pub fn ip_allowed(allow: &[String], ip: Option<&str>) -> bool {
    if allow.is_empty() {
        return true;
    }
    // Some platforms write a host as a network (`192.168.0.1/32`).
    let Some(ip) = ip.and_then(|i| i.trim().split('/').next()?.parse::<IpAddr>().ok()) else {
        return false;
    };
    let ip = ip.to_canonical();
    allow.iter().any(|entry| {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            net.contains(&ip)
        } else {
            entry
                .parse::<IpAddr>()
                .is_ok_and(|a| a.to_canonical() == ip)
        }
    })
}

/// Checks one call. `action` is `None` when the body did not parse (the call is authenticated
/// and counted, then answered `INVALID_INPUT`). `now_ms` is the server's clock (epoch ms).
pub async fn check<S: AccessStore>(
    store: &S,
    keyring: &Keyring,
    settings: &AccessSettings,
    call: &HttpCall,
    action: Option<&Action>,
    now_ms: i64,
) -> Result<Granted, Denied> {
    let mode = settings.mode;
    let caller = Caller {
        access_key_id: None,
        principal: call.principal.clone(),
        source_ip: call.source_ip.clone(),
    };
    if !mode.needs_key() {
        return Ok(Granted {
            caller,
            key: None,
            limits: None,
        });
    }
    if mode.needs_platform() && call.principal.is_none() {
        // Both were asked for: a call the platform did not authenticate is refused.
        return Err(Denied::missing(mode));
    }
    let presented = if mode.accepts_bearer() {
        bearer::read_header(call.header("authorization"))
    } else {
        Presented::Nothing
    };
    let signed = if mode.accepts_signed() {
        signature::read_headers(|n| call.header(n))
    } else {
        None
    };
    let (key, nonce) = match (presented, signed) {
        (Presented::Token(token), _) => (bearer_key(store, &token, now_ms).await?, None),
        (_, Some(signed)) => {
            let (key, nonce) = signed_key(store, keyring, settings, call, &signed, now_ms).await?;
            (key, Some(nonce))
        }
        (Presented::Malformed, None) => {
            return Err(Denied::new(Code::AuthTokenInvalid, None).via(KeyForm::Bearer));
        }
        // Not ours: where the platform authenticates too, it is the platform's own token.
        (Presented::Foreign, None) if !mode.needs_platform() => {
            return Err(Denied::new(Code::AuthTokenInvalid, None).via(KeyForm::Bearer));
        }
        (Presented::Nothing | Presented::Foreign, None) => return Err(Denied::missing(mode)),
    };
    let form = key.form();
    let ak = Some(key.access_key_id.as_str());
    let refuse = |code: Code| Err(Denied::new(code, ak).via(form));
    if !key.active {
        return refuse(Code::AuthKeyDisabled);
    }
    if key.expires_ms.is_some_and(|e| e <= now_ms) {
        return refuse(Code::AuthKeyExpired);
    }
    if !ip_allowed(&key.allow_ips, call.source_ip.as_deref()) {
        return refuse(Code::AuthIpDenied);
    }
    if action.is_some_and(|a| !key.permits(a)) {
        return refuse(Code::AuthScopeDenied);
    }
    let nonce = nonce.as_ref().map(|(n, until)| (n.as_str(), *until));
    let limits = admit(store, settings, &key, nonce, now_ms)
        .await
        .map_err(|d| d.via(form))?;
    Ok(Granted {
        caller: Caller {
            access_key_id: Some(key.access_key_id.clone()),
            ..caller
        },
        key: Some(key),
        limits,
    })
}

/// A signed call's key, when the timestamp is fresh and the signature is its own; with the
/// nonce to spend and until when (epoch ms) it is remembered.
async fn signed_key<S: AccessStore>(
    store: &S,
    keyring: &Keyring,
    settings: &AccessSettings,
    call: &HttpCall,
    signed: &Signed,
    now_ms: i64,
) -> Result<(StoredKey, (String, i64)), Denied> {
    let ak = Some(signed.access_key_id.as_str());
    let refuse = |code: Code| Denied::new(code, ak).via(KeyForm::Signed);
    let skew = i64::try_from(settings.max_skew.as_secs()).unwrap_or(i64::MAX);
    // abs_diff: a timestamp near i64::MIN must not wrap into the window.
    if (now_ms / 1000).abs_diff(signed.timestamp) > settings.max_skew.as_secs() {
        return Err(refuse(Code::AuthTimestampSkew));
    }
    let req = Request {
        method: &call.method,
        paths: &call.paths,
        body: &call.body,
    };
    let key = match store.find_key(&signed.access_key_id).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            signature::verify_decoy(signed, &req);
            return Err(refuse(Code::AuthKeyUnknown));
        }
        Err(e) => {
            tracing::error!(code = %e.code(), error = %crate::error::chain(&e), "access key lookup failed");
            return Err(refuse(Code::AccessUnavailable));
        }
    };
    if !signature_matches(keyring, &key, signed, &req, now_ms) {
        return Err(refuse(Code::AuthSignatureInvalid));
    }
    // Remembered for as long as its timestamp is acceptable; after that the skew check refuses it.
    let nonce_until =
        (signed.timestamp.saturating_add(skew).saturating_add(1)).saturating_mul(1000);
    Ok((key, (signed.nonce().to_owned(), nonce_until)))
}

/// A bearer call's key, when the token is its current one or, during a rotation's grace
/// period, its previous one. An unknown key, a wrong secret and a signing key's id do the same
/// work (one hash, two comparisons) and are shown the same `AUTH_TOKEN_INVALID`.
async fn bearer_key<S: AccessStore>(
    store: &S,
    token: &BearerToken,
    now_ms: i64,
) -> Result<StoredKey, Denied> {
    let ak = Some(token.access_key_id());
    let refuse = |code: Code| Denied::new(code, ak).via(KeyForm::Bearer);
    let key = match store.find_key(token.access_key_id()).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(code = %e.code(), error = %crate::error::chain(&e), "access key lookup failed");
            return Err(refuse(Code::AccessUnavailable));
        }
    };
    let digest = |proof: &KeyProof| match proof {
        KeyProof::Bearer(d) => Some(*d),
        KeyProof::Signed(_) => None,
    };
    let current = key.as_ref().and_then(|k| digest(&k.proof));
    let previous = key
        .as_ref()
        .and_then(|k| k.previous.as_ref())
        .filter(|(_, until)| *until > now_ms)
        .and_then(|(p, _)| digest(p));
    let matched = bearer::matches(token, current.as_ref(), previous.as_ref());
    match key {
        None => Err(refuse(Code::AuthKeyUnknown)),
        Some(k) if k.form() != KeyForm::Bearer => {
            tracing::warn!(access_key_id = %k.access_key_id, "a signing key's id came in a bearer token");
            Err(refuse(Code::AuthTokenInvalid))
        }
        Some(_) if !matched => Err(refuse(Code::AuthTokenInvalid)),
        Some(k) => Ok(k),
    }
}

/// The current secret, or during a rotation's grace period the previous one, signed the call.
/// A bearer key signs nothing: its id in a signature is answered like an unknown key's.
fn signature_matches(
    keyring: &Keyring,
    key: &StoredKey,
    signed: &Signed,
    req: &Request<'_>,
    now_ms: i64,
) -> bool {
    let KeyProof::Signed(blob) = &key.proof else {
        signature::verify_decoy(signed, req);
        tracing::warn!(access_key_id = %key.access_key_id, "a bearer key's id came in a signed request");
        return false;
    };
    let binding = secret_binding(key.owner.table(), &key.access_key_id);
    let mut blobs = vec![blob.as_str()];
    if let Some((KeyProof::Signed(prev), until)) = &key.previous
        && *until > now_ms
    {
        blobs.push(prev);
    }
    blobs.into_iter().any(|blob| match keyring.decrypt(blob, &binding) {
        Ok(secret) => signature::verify(secret.expose(), signed, req),
        Err(e) => {
            tracing::error!(code = %e.code(), access_key_id = %key.access_key_id, "an access key's secret does not decrypt");
            false
        }
    })
}

/// The counting transaction of [`admit`], once.
async fn count<S: AccessStore>(
    store: &S,
    key: &StoredKey,
    nonce: Option<(&str, i64)>,
    rps: Option<u32>,
    quota: Option<u32>,
) -> Result<Admission, StoreError> {
    match nonce {
        Some((nonce, until)) => {
            store
                .admit(&key.access_key_id, nonce, until, rps, quota)
                .await
        }
        None => store.count_call(&key.access_key_id, rps, quota).await,
    }
}

/// Whether a failed count is "the counters did not answer" (the database unreachable, or its
/// counter tables gone), the one failure `ACCESS_FAIL_OPEN` may let a call through on. A
/// statement that failed (a deadlock, a lock wait timeout, anything else) fails closed: letting
/// it through would give whoever can provoke one an uncounted call.
fn counters_unanswered(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Outdated(_))
}

/// Spends the nonce, when the call has one (a signed call), and counts the call against the
/// key's per-second limit, then its daily quota, in one transaction. A failed statement is
/// tried once more (an InnoDB deadlock among concurrent first-of-the-day upserts rolls back and
/// is retryable), then fails closed. When the counters do not answer, the nonce alone is
/// recorded if `ACCESS_FAIL_OPEN` allows going on without them; a replay is never let through.
async fn admit<S: AccessStore>(
    store: &S,
    settings: &AccessSettings,
    key: &StoredKey,
    nonce: Option<(&str, i64)>,
    now_ms: i64,
) -> Result<Option<Limits>, Denied> {
    let ak = Some(key.access_key_id.as_str());
    let rps = key.rps_limit.filter(|r| *r > 0);
    let quota = key.daily_quota.filter(|q| *q > 0);
    let limit = |limit: u32, used: u64| Limits {
        limit: u64::from(limit),
        remaining: u64::from(limit).saturating_sub(used),
    };
    let mut counted = count(store, key, nonce, rps, quota).await;
    if matches!(counted, Err(StoreError::Query(_))) {
        tracing::warn!(access_key_id = %key.access_key_id, "the access count failed; trying once more");
        counted = count(store, key, nonce, rps, quota).await;
    }
    match counted {
        Ok(Admission::Granted { second, day }) => Ok(match (quota, rps, second) {
            (Some(q), _, _) => Some(limit(q, day)),
            (None, Some(r), Some(s)) => Some(limit(r, s)),
            (None, _, _) => None,
        }),
        Ok(Admission::Replay) => Err(Denied::new(Code::AuthReplay, ak)),
        Ok(Admission::RateLimited) => Err(Denied {
            retry_after: Some(1),
            limits: rps.map(|r| limit(r, u64::from(r))),
            ..Denied::new(Code::RateLimited, ak)
        }),
        Ok(Admission::QuotaExceeded) => Err(Denied {
            retry_after: Some(seconds_to_utc_midnight(now_ms)),
            limits: quota.map(|q| limit(q, u64::from(q))),
            ..Denied::new(Code::QuotaExceeded, ak)
        }),
        Err(e) => {
            let open = settings.fail_open && counters_unanswered(&e);
            tracing::error!(code = %e.code(), error = %crate::error::chain(&e), fail_open = open, "the access count failed");
            if !open {
                return Err(Denied::new(Code::AccessUnavailable, ak));
            }
            let Some((nonce, until)) = nonce else {
                return Ok(None);
            };
            match store.use_nonce(&key.access_key_id, nonce, until).await {
                Ok(true) => Ok(None),
                Ok(false) => Err(Denied::new(Code::AuthReplay, ak)),
                Err(e) => {
                    tracing::error!(code = %e.code(), error = %crate::error::chain(&e), "nonce check failed");
                    Err(Denied::new(Code::AccessUnavailable, ak))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_take_addresses_and_networks() {
        let allow = vec!["10.0.0.0/8".to_owned(), "2001:db8::1".to_owned()];
        assert!(ip_allowed(&allow, Some("10.1.2.3")));
        assert!(ip_allowed(&allow, Some("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(ip_allowed(&allow, Some("2001:db8::1")));
        assert!(
            ip_allowed(&allow, Some("10.0.0.7/32")),
            "a host written as a network"
        );
        assert!(!ip_allowed(&allow, Some("11.0.0.1")));
        assert!(!ip_allowed(&allow, None), "no address, no entry");
        assert!(ip_allowed(&[], None), "an empty list allows any address");
        assert!(!ip_allowed(&["not-an-ip".to_owned()], Some("1.2.3.4")));
    }

    #[test]
    fn an_unknown_key_is_shown_as_a_bad_signature() {
        let unknown = Denied::new(Code::AuthKeyUnknown, Some("ak_x"));
        let bad = Denied::new(Code::AuthSignatureInvalid, Some("ak_y"));
        assert_eq!(unknown.shown(), bad.shown());
        assert_eq!(unknown.message(), bad.message());
    }

    #[test]
    fn an_unknown_key_in_a_bearer_call_is_shown_as_a_bad_token() {
        let unknown = Denied::new(Code::AuthKeyUnknown, Some("ak_x")).via(KeyForm::Bearer);
        let bad = Denied::new(Code::AuthTokenInvalid, Some("ak_y")).via(KeyForm::Bearer);
        assert_eq!(unknown.shown(), Code::AuthTokenInvalid);
        assert_eq!(unknown.shown(), bad.shown());
        assert_eq!(unknown.message(), bad.message());
    }

    #[test]
    fn a_missing_credential_names_what_the_mode_accepts() {
        let hmac = Denied::missing(AccessMode::Hmac);
        assert_eq!(hmac.shown(), Code::AuthMissing);
        assert!(!hmac.message().contains("Bearer"), "{}", hmac.message());
        let bearer = Denied::missing(AccessMode::PlatformAndBearer);
        assert_eq!(bearer.shown(), Code::AuthTokenMissing);
        assert!(bearer.message().contains("Bearer air-"));
        let keys = Denied::missing(AccessMode::Keys);
        assert_eq!(keys.shown(), Code::AuthMissing);
        assert!(keys.message().contains("X-Signature") && keys.message().contains("Bearer air-"));
    }

    #[test]
    fn a_daily_quota_retries_after_the_next_utc_midnight() {
        assert_eq!(seconds_to_utc_midnight(0), 86_400);
        assert_eq!(seconds_to_utc_midnight(86_400_000 - 1_500), 2);
    }
}
