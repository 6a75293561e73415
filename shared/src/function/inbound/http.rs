//! HTTP calls: an API Gateway REST event (payload 1.0), an HTTP API / Function URL event (payload
//! 2.0), Function Compute's HTTP trigger event form (`version: "v1"`, `rawPath`), and the request
//! an HTTP trigger forwards to a custom runtime ([`from_request`]).
//!
//! Each becomes one [`HttpInbound`]: what access control reads (method, paths, headers, the raw
//! body, source address, the authorizer's principal) and the request its body carries.
//! Invariants: the body's request is parsed here but refused only after the access check (so an
//! unsigned caller learns nothing about bodies); the platform's credential headers on FC
//! (`x-fc-*`, `authorization`, `cookie`) never reach access control or a log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::access::HttpCall;
use crate::error::RunError;
use crate::invocation::{Body, Request};

/// Which platform's HTTP front sent the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpSource {
    /// API Gateway REST API (payload 1.0).
    ApiGatewayV1,
    /// HTTP API or Function URL (payload 2.0).
    ApiGatewayV2,
    /// A Function Compute HTTP trigger.
    FcHttp,
}

impl HttpSource {
    /// The audit row's `trigger_source`.
    pub fn trigger(self) -> crate::model::Trigger {
        match self {
            HttpSource::ApiGatewayV1 | HttpSource::ApiGatewayV2 => crate::model::Trigger::Apigw,
            HttpSource::FcHttp => crate::model::Trigger::Http,
        }
    }
}

/// An HTTP call, parsed.
#[derive(Debug)]
pub struct HttpInbound {
    /// Which front sent it.
    pub source: HttpSource,
    /// What access control reads.
    pub call: HttpCall,
    /// The platform's request id (the one its access log writes, so the two join).
    pub request_id: Option<String>,
    /// The request the body carries, or why it carries none.
    pub request: Result<Request, RunError>,
}

/// An API event of `source`, as sent to a Lambda or an FC event function.
pub(super) fn from_event(source: HttpSource, payload: &Value, body: Body) -> HttpInbound {
    let call = http_call(source, payload);
    let (request, request_id) = match event_body(source, payload) {
        Ok(ev) => (request(body, &ev.text, &ev.path_params), ev.request_id),
        Err(e) => (Err(e), None),
    };
    HttpInbound {
        source,
        call,
        request_id,
        request,
    }
}

/// Who sent a forwarded request: the socket's peer, and how many proxies in front of it are
/// trusted to have appended the address they saw to `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The socket's peer.
    pub addr: std::net::SocketAddr,
    /// `ACCESS_TRUSTED_PROXY_HOPS`.
    pub trusted_hops: usize,
}

impl Peer {
    /// The caller's address: with `n` trusted hops, the `n`-th `X-Forwarded-For` entry from the
    /// right (what the outermost trusted proxy saw); with none, or fewer entries than hops, the
    /// peer. A client can write any entries of its own, but only to the left of those appended.
    pub fn source_ip(&self, forwarded_for: Option<&str>) -> String {
        let entries: Vec<&str> = forwarded_for
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default();
        match self.trusted_hops {
            0 => None,
            n => entries.len().checked_sub(n).and_then(|i| entries.get(i)),
        }
        .filter(|v| !v.is_empty())
        .map_or_else(|| self.addr.ip().to_string(), |v| (*v).to_owned())
    }
}

/// The request an HTTP trigger forwards to a custom runtime (its method, path, headers, body and
/// peer), as the same [`HttpInbound`] an event would give.
pub fn from_request(
    request_id: Option<String>,
    method: &str,
    path: &str,
    headers: &axum::http::HeaderMap,
    raw: &[u8],
    peer: Peer,
    body: Body,
) -> HttpInbound {
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        // FC's own headers carry the function role's temporary credentials: never passed on.
        let n = name.as_str();
        let Ok(v) = value.to_str() else { continue };
        // FC's gateway reads `Authorization` itself (its signature, a JWT) when the trigger asks
        // for it: dropped. One of our bearer tokens (the OpenAI SDKs' access key) is the
        // client's own, for our access check, and is kept.
        let ours = n == "authorization"
            && v.get(..11)
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer air-"));
        if n.starts_with("x-fc-") || (n == "authorization" && !ours) || n == "cookie" {
            continue;
        }
        // A repeated header keeps its first place and its last value.
        match kept.iter_mut().find(|(k, _)| k == n) {
            Some(slot) => v.clone_into(&mut slot.1),
            None => kept.push((n.to_owned(), v.to_owned())),
        }
    }
    // The client can write X-Forwarded-For itself: only the entries trusted proxies appended
    // count, and without trusted hops the peer is the caller (IP allow-lists and the audit row's
    // source_ip cannot be forged with a header).
    let source_ip = peer.source_ip(headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()));
    let request = std::str::from_utf8(raw)
        .map_err(|_| RunError::InvalidInput("body is not UTF-8".into()))
        .and_then(|text| request(body, text, &[]));
    HttpInbound {
        source: HttpSource::FcHttp,
        call: HttpCall {
            method: method.to_owned(),
            paths: [path]
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            headers: kept,
            body: raw.to_vec(),
            source_ip: Some(source_ip),
            principal: None,
        },
        request_id: Some(request_id.unwrap_or_default()),
        request,
    }
}

/// What an API event carries besides what access control reads.
struct EventBody {
    /// The body's text (base64 decoded).
    text: String,
    /// The platform's request id.
    request_id: Option<String>,
    /// Path parameters (`/run-once/{config_key}`).
    path_params: Vec<(String, String)>,
}

/// The body, the request id and the path parameters of an API event.
fn event_body(source: HttpSource, payload: &Value) -> Result<EventBody, RunError> {
    match source {
        HttpSource::ApiGatewayV1 => {
            let ev: aws_lambda_events::apigw::ApiGatewayProxyRequest =
                serde_json::from_value(payload.clone())
                    .map_err(|e| RunError::InvalidInput(format!("API Gateway REST event: {e}")))?;
            let body = decode_body(ev.body, ev.is_base64_encoded)?;
            Ok(EventBody {
                text: body,
                request_id: ev.request_context.request_id,
                path_params: ev.path_parameters.into_iter().collect(),
            })
        }
        HttpSource::ApiGatewayV2 => {
            let ev: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
                serde_json::from_value(payload.clone())
                    .map_err(|e| RunError::InvalidInput(format!("HTTP API event: {e}")))?;
            let body = decode_body(ev.body, ev.is_base64_encoded)?;
            Ok(EventBody {
                text: body,
                request_id: ev.request_context.request_id,
                path_params: ev.path_parameters.into_iter().collect(),
            })
        }
        HttpSource::FcHttp => {
            let body = decode_body(
                payload
                    .get("body")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                payload.get("isBase64Encoded").and_then(Value::as_bool) == Some(true),
            )?;
            let id = str_at(payload, "/requestContext/requestId").map(str::to_owned);
            Ok(EventBody {
                text: body,
                request_id: id,
                path_params: Vec::new(),
            })
        }
    }
}

/// The request a body's text carries; path parameters named by `body` fill fields left unset.
fn request(body: Body, text: &str, path_params: &[(String, String)]) -> Result<Request, RunError> {
    let mut value: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(text)
            .map_err(|e| RunError::InvalidInput(format!("request body is not JSON: {e}")))?
    };
    // `POST /run-once/{config_key}` style routes may carry identifiers in the path. A body that
    // names another is refused: the path is what a gateway's policy and logs saw.
    if let Value::Object(obj) = &mut value {
        for (k, v) in path_params {
            if !body.path_keys().contains(&k.as_str()) {
                continue;
            }
            match obj.get(k) {
                None => {
                    obj.insert(k.clone(), Value::String(v.clone()));
                }
                Some(Value::String(own)) if own == v => {}
                Some(other) => {
                    return Err(RunError::InvalidInput(format!(
                        "the path names {k} {v:?} but the body names {other}: send one, or the same"
                    )));
                }
            }
        }
    }
    body.from_value(value)
        .map_err(|e| RunError::InvalidInput(format!("request body: {e}")))
}

fn decode_body(body: Option<String>, base64: bool) -> Result<String, RunError> {
    let body = body.unwrap_or_default();
    if !base64 {
        return Ok(body);
    }
    let bytes = B64
        .decode(body.trim())
        .map_err(|_| RunError::InvalidInput("isBase64Encoded body is not base64".into()))?;
    String::from_utf8(bytes).map_err(|_| RunError::InvalidInput("body is not UTF-8".into()))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// What access control reads from an API event, taken from the event as sent (so an event whose
/// body is malformed is still checked, and refused, like any other).
fn http_call(source: HttpSource, payload: &Value) -> HttpCall {
    let text = |ptr: &str| {
        str_at(payload, ptr)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (method, paths, ip, principal) = match source {
        HttpSource::ApiGatewayV1 => (
            text("/httpMethod"),
            vec![text("/requestContext/path"), text("/path")],
            text("/requestContext/identity/sourceIp"),
            text("/requestContext/identity/userArn")
                .or_else(|| {
                    text("/requestContext/authorizer/claims/sub").map(|s| format!("jwt:{s}"))
                })
                .or_else(|| text("/requestContext/authorizer/principalId")),
        ),
        HttpSource::ApiGatewayV2 | HttpSource::FcHttp => (
            text("/requestContext/http/method"),
            vec![text("/rawPath"), text("/requestContext/http/path")],
            text("/requestContext/http/sourceIp"),
            text("/requestContext/authorizer/iam/userArn")
                .or_else(|| {
                    text("/requestContext/authorizer/jwt/claims/sub").map(|s| format!("jwt:{s}"))
                })
                // A Lambda authorizer's context is free-form; `principalId` is the usual name.
                .or_else(|| text("/requestContext/authorizer/lambda/principalId")),
        ),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = payload.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                headers.push((k.to_ascii_lowercase(), v.to_owned()));
            }
        }
    }
    // REST APIs also (or only) send multi-value headers; the first value is the one signed.
    if let Some(h) = payload.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, v) in h {
            let k = k.to_ascii_lowercase();
            if let Some(first) = v.get(0).and_then(Value::as_str)
                && !headers.iter().any(|(name, _)| *name == k)
            {
                headers.push((k, first.to_owned()));
            }
        }
    }
    let body = payload.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if payload.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        B64.decode(body.trim()).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut unique: Vec<String> = Vec::new();
    for p in paths.into_iter().flatten() {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    HttpCall {
        method: method.unwrap_or_default(),
        paths: unique,
        headers,
        body,
        source_ip: ip,
        principal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_fc_trigger_request_drops_the_platform_credentials_and_trusts_the_last_forwarded_hop() {
        let h = headers(&[
            ("x-fc-access-key-id", "STS.secret"),
            ("authorization", "Bearer t"),
            ("cookie", "c=1"),
            ("x-ak", "first"),
            ("x-ak", "second"),
            ("x-forwarded-for", "10.9.9.9, 198.51.100.20"),
        ]);
        let peer = Peer {
            addr: "192.0.2.7:5000".parse().unwrap(),
            trusted_hops: 1,
        };
        let body = br#"{"config_key": "greet"}"#;
        let inbound = from_request(
            Some("fc-1".into()),
            "POST",
            "/run-once",
            &h,
            body,
            peer,
            Body::Config,
        );
        assert_eq!(inbound.source, HttpSource::FcHttp);
        assert_eq!(inbound.request_id.as_deref(), Some("fc-1"));
        let names: Vec<&str> = inbound
            .call
            .headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, ["x-ak", "x-forwarded-for"]);
        assert_eq!(inbound.call.header("x-ak"), Some("second"));
        assert_eq!(inbound.call.source_ip.as_deref(), Some("198.51.100.20"));
        assert_eq!(inbound.call.paths, ["/run-once"]);
        assert_eq!(inbound.call.body, body);
        assert!(matches!(&inbound.request, Ok(Request::RunOnce(r)) if r.config_key == "greet"));
        // One of our bearer tokens is the client's own: kept for the access check.
        let ours = headers(&[("authorization", "Bearer air-ak_1-0123")]);
        let inbound = from_request(None, "POST", "/v1/models", &ours, b"", peer, Body::Config);
        assert_eq!(
            inbound.call.header("authorization"),
            Some("Bearer air-ak_1-0123")
        );
    }

    #[test]
    fn only_the_entries_trusted_proxies_appended_name_the_caller() {
        let peer = |trusted_hops| Peer {
            addr: "192.0.2.7:5000".parse().unwrap(),
            trusted_hops,
        };
        // No trusted proxy: a client-written header changes nothing.
        assert_eq!(peer(0).source_ip(Some("10.1.2.3")), "192.0.2.7");
        assert_eq!(
            peer(0).source_ip(Some("10.9.9.9, 198.51.100.20")),
            "192.0.2.7"
        );
        // One trusted proxy: the entry it appended, whatever the client wrote before it.
        assert_eq!(
            peer(1).source_ip(Some("10.9.9.9, 198.51.100.20")),
            "198.51.100.20"
        );
        assert_eq!(peer(1).source_ip(Some("198.51.100.20")), "198.51.100.20");
        assert_eq!(
            peer(2).source_ip(Some("10.9.9.9, 198.51.100.20, 10.0.0.1")),
            "198.51.100.20"
        );
        // Fewer entries than trusted hops, or none: the peer.
        assert_eq!(peer(2).source_ip(Some("198.51.100.20")), "192.0.2.7");
        assert_eq!(peer(1).source_ip(None), "192.0.2.7");
    }

    #[test]
    fn an_fc_trigger_request_without_forwarding_is_from_its_peer_and_a_binary_body_is_refused() {
        let peer = Peer {
            addr: "192.0.2.7:5000".parse().unwrap(),
            trusted_hops: 1,
        };
        let inbound = from_request(
            None,
            "POST",
            "/",
            &HeaderMap::new(),
            &[0xff, 0xfe],
            peer,
            Body::Route,
        );
        assert_eq!(inbound.call.source_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(inbound.request_id.as_deref(), Some(""));
        assert_eq!(inbound.call.body, [0xff, 0xfe]);
        let Err(e) = &inbound.request else {
            panic!("a binary body is no request")
        };
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_body_that_names_another_config_than_its_path_is_refused() {
        let path = [("config_key".to_owned(), "greet".to_owned())];
        assert!(matches!(
            request(Body::Config, r#"{"variables": {}}"#, &path),
            Ok(Request::RunOnce(r)) if r.config_key == "greet"
        ));
        assert!(request(Body::Config, r#"{"config_key": "greet"}"#, &path).is_ok());
        let e = request(Body::Config, r#"{"config_key": "other"}"#, &path).unwrap_err();
        assert_eq!(e.code(), crate::code::Code::InvalidInput);
        assert!(e.to_string().contains("greet"), "{e}");
    }
}
