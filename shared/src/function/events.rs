//! Turning what a function receives into typed requests, and answers back into what the caller
//! expects.
//!
//! Accepted shapes: a direct invocation (the request JSON itself), an API Gateway REST API proxy
//! event (payload 1.0), an HTTP API / Function URL event (payload 2.0), a Function Compute HTTP
//! trigger request (`version: "v1"`, `rawPath`), bodies base64-encoded or not. [`http_call`]
//! reads what access control needs from the HTTP shapes (method, paths, headers, raw body,
//! source address, the authorizer's principal). Invariants: detection is by the event's own markers (`httpMethod` for 1.0,
//! `version: "2.0"` for 2.0), never by guessing from the body; anything unparseable is
//! `INVALID_INPUT` naming what was received.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::RunError;
use crate::model::media::ObjectRef;

/// Where an invocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Lambda `Invoke` / FC invoke with the request JSON as the event.
    Direct,
    /// API Gateway REST API (payload 1.0).
    ApiGatewayV1,
    /// HTTP API or Function URL (payload 2.0).
    ApiGatewayV2,
    /// An EventBridge "Scheduled Event" whose `detail` carries the request.
    Schedule,
    /// A Function Compute timer trigger whose `payload` string carries the request.
    FcTimer,
    /// A Function Compute HTTP trigger request (the event form, `version: "v1"`).
    FcHttp,
}

impl Source {
    /// True for API Gateway events, which must be answered with an HTTP response object.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Source::ApiGatewayV1 | Source::ApiGatewayV2 | Source::FcHttp
        )
    }

    /// The audit row's `trigger_source`.
    pub fn trigger(self) -> crate::model::Trigger {
        use crate::model::Trigger;
        match self {
            Source::Direct => Trigger::Lambda,
            Source::ApiGatewayV1 | Source::ApiGatewayV2 => Trigger::Apigw,
            Source::FcHttp => Trigger::Http,
            Source::Schedule | Source::FcTimer => Trigger::Schedule,
        }
    }
}

/// A parsed invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation<T> {
    /// Event shape.
    pub source: Source,
    /// The typed request.
    pub request: T,
    /// API Gateway's request id, if any.
    pub request_id: Option<String>,
}

/// The body of a run-once call.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOnceRequest {
    /// The config to run.
    pub config_key: String,
    /// Runtime variables.
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
}

/// The body of a run-route call (also what a schedule's target input must carry).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRouteRequest {
    /// `ai_project_v2.name`.
    pub project: String,
    /// `ai_route_v2.route_key`.
    pub route_key: String,
    /// Runtime variables.
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
    /// Resolve and build only; call nothing, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// A label for the audit row's `trigger_source` (e.g. `schedule` in a rule's constant input).
    #[serde(default)]
    pub trigger: Option<String>,
}

/// What run-route is asked: run a route, or start an evaluation run (`{"eval": "<suite>"}`).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteCall {
    /// Run a route.
    Run(RunRouteRequest),
    /// Start an evaluation run.
    Eval(EvalRequest),
}

impl<'de> serde::Deserialize<'de> for RouteCall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        if v.get("eval").is_some() {
            serde_json::from_value(v)
                .map(RouteCall::Eval)
                .map_err(D::Error::custom)
        } else {
            serde_json::from_value(v)
                .map(RouteCall::Run)
                .map_err(D::Error::custom)
        }
    }
}

/// Starts a run of a suite from the evaluation catalog (a schedule's constant input
/// `{"eval": "nightly", "trigger": "schedule"}`, or an API call).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    /// The suite's name.
    pub eval: String,
    /// `schedule` marks a direct invocation from a schedule's constant input; any other value
    /// (or none) is `api`. Events that say where they come from (EventBridge, FC timers, API
    /// Gateway) decide themselves.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Only these targets (`project/route_key` or `config:KEY`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Only cases with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// At most this many cases.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Compare against this run, or `last`.
    #[serde(default)]
    pub baseline: Option<String>,
}

/// The messages of an SQS event, as (message id, body); `None` when the payload is not one.
pub fn sqs_messages(payload: &Value) -> Option<Vec<(String, String)>> {
    let records = payload.get("Records")?.as_array()?;
    if records.is_empty()
        || !records
            .iter()
            .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
    {
        return None;
    }
    let ev: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(payload.clone()).ok()?;
    Some(
        ev.records
            .into_iter()
            .map(|m| (m.message_id.unwrap_or_default(), m.body.unwrap_or_default()))
            .collect(),
    )
}

/// Detects the event shape only (cheap; for error reporting before the body is parsed).
pub fn detect(payload: &Value) -> Source {
    if payload.get("version").and_then(Value::as_str) == Some("2.0")
        && payload.pointer("/requestContext/http").is_some()
    {
        Source::ApiGatewayV2
    } else if payload.get("httpMethod").is_some() && payload.get("requestContext").is_some() {
        Source::ApiGatewayV1
    } else if payload.get("version").and_then(Value::as_str) == Some("v1")
        && payload.get("rawPath").is_some()
        && payload.pointer("/requestContext/http").is_some()
    {
        Source::FcHttp
    } else if payload.get("triggerTime").is_some()
        && payload.get("triggerName").is_some()
        && payload.get("payload").is_some()
    {
        Source::FcTimer
    } else if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && payload.get("source").and_then(Value::as_str) == Some("aws.events")
    {
        Source::Schedule
    } else {
        Source::Direct
    }
}

/// Parses a direct or API Gateway invocation whose body is `T`. Path parameters named in
/// `path_keys` (e.g. `config_key` for `POST /run-once/{config_key}`) fill body fields left unset.
pub fn parse<T: DeserializeOwned>(
    payload: Value,
    path_keys: &[&str],
) -> Result<Invocation<T>, RunError> {
    let source = detect(&payload);
    let (body, request_id, path_params) = match source {
        Source::Direct => {
            let request = serde_json::from_value(payload)
                .map_err(|e| RunError::InvalidInput(format!("direct invocation: {e}")))?;
            return Ok(Invocation {
                source,
                request,
                request_id: None,
            });
        }
        Source::Schedule => {
            let detail = payload.get("detail").cloned().unwrap_or(Value::Null);
            if detail.as_object().is_none_or(|d| d.is_empty()) {
                return Err(RunError::InvalidInput(
                    "scheduled event carries no request: set the rule target's input to {\"project\": ..., \"route_key\": ..., \"variables\": {...}} (or put it in the event detail)".into(),
                ));
            }
            let request = serde_json::from_value(detail)
                .map_err(|e| RunError::InvalidInput(format!("scheduled event detail: {e}")))?;
            let request_id = payload.get("id").and_then(Value::as_str).map(str::to_owned);
            return Ok(Invocation {
                source,
                request,
                request_id,
            });
        }
        Source::FcTimer => {
            let text = payload.get("payload").and_then(Value::as_str).unwrap_or("");
            let request = serde_json::from_str(text).map_err(|e| {
                RunError::InvalidInput(format!(
                    "timer trigger payload must be the request JSON ({e}); got {:?}",
                    text.chars().take(80).collect::<String>()
                ))
            })?;
            let request_id = payload
                .get("triggerName")
                .and_then(Value::as_str)
                .map(str::to_owned);
            return Ok(Invocation {
                source,
                request,
                request_id,
            });
        }
        Source::ApiGatewayV1 => {
            let ev: aws_lambda_events::apigw::ApiGatewayProxyRequest =
                serde_json::from_value(payload)
                    .map_err(|e| RunError::InvalidInput(format!("API Gateway REST event: {e}")))?;
            let body = decode_body(ev.body, ev.is_base64_encoded)?;
            (body, ev.request_context.request_id, ev.path_parameters)
        }
        Source::ApiGatewayV2 => {
            let ev: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
                serde_json::from_value(payload)
                    .map_err(|e| RunError::InvalidInput(format!("HTTP API event: {e}")))?;
            let body = decode_body(ev.body, ev.is_base64_encoded)?;
            (body, ev.request_context.request_id, ev.path_parameters)
        }
        Source::FcHttp => {
            let body = decode_body(
                payload
                    .get("body")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                payload.get("isBase64Encoded").and_then(Value::as_bool) == Some(true),
            )?;
            let id = str_at(&payload, "/requestContext/requestId").map(str::to_owned);
            (body, id, Default::default())
        }
    };
    let mut value: Value = if body.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&body)
            .map_err(|e| RunError::InvalidInput(format!("request body is not JSON: {e}")))?
    };
    // `POST /run-once/{config_key}` style routes may carry identifiers in the path.
    if let Value::Object(obj) = &mut value {
        for (k, v) in path_params {
            if path_keys.contains(&k.as_str()) {
                obj.entry(k).or_insert(Value::String(v));
            }
        }
    }
    let request = serde_json::from_value(value)
        .map_err(|e| RunError::InvalidInput(format!("request body: {e}")))?;
    Ok(Invocation {
        source,
        request,
        request_id,
    })
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

/// The HTTP call inside an API event, as access control reads it; `None` for other events.
pub fn http_call(payload: &Value) -> Option<crate::access::HttpCall> {
    let source = detect(payload);
    let text = |ptr: &str| {
        str_at(payload, ptr)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (method, paths, ip, principal) = match source {
        Source::ApiGatewayV1 => (
            text("/httpMethod"),
            vec![text("/requestContext/path"), text("/path")],
            text("/requestContext/identity/sourceIp"),
            text("/requestContext/identity/userArn")
                .or_else(|| {
                    text("/requestContext/authorizer/claims/sub").map(|s| format!("jwt:{s}"))
                })
                .or_else(|| text("/requestContext/authorizer/principalId")),
        ),
        Source::ApiGatewayV2 | Source::FcHttp => (
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
        Source::Direct | Source::Schedule | Source::FcTimer => return None,
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
    Some(crate::access::HttpCall {
        method: method.unwrap_or_default(),
        paths: unique,
        headers,
        body,
        source_ip: ip,
        principal,
    })
}

/// An API Gateway proxy response (valid for payload 1.0 and 2.0).
pub fn http_response(status: u16, body: &Value) -> Value {
    json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "isBase64Encoded": false,
        "body": body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn a_direct_invocation_is_the_request_itself() {
        let inv: Invocation<RunOnceRequest> =
            parse(json!({"config_key": "k", "variables": {"A": 1}}), &[]).unwrap();
        assert_eq!(inv.source, Source::Direct);
        assert_eq!(inv.request.config_key, "k");
        assert_eq!(inv.request.variables["A"], 1);
    }

    #[test]
    fn unknown_fields_and_missing_keys_are_invalid_input() {
        for bad in [
            json!({"config": "k"}),
            json!({"config_key": "k", "vars": {}}),
            json!([1]),
        ] {
            let e = parse::<RunOnceRequest>(bad, &[]).unwrap_err();
            assert_eq!(e.code(), Code::InvalidInput);
        }
    }
}

/// What an upload notification carried.
#[derive(Debug)]
pub enum ObjectEvent {
    /// S3's `s3:TestEvent`, sent when a notification is configured: acknowledged, ignored.
    Test,
    /// Created objects (S3 notification, EventBridge "Object Created", FC OSS trigger).
    Objects(Vec<ObjectRef>),
    /// An SQS batch of S3 notifications: each message parsed on its own.
    Sqs(Vec<(String, Result<ObjectEvent, RunError>)>),
}

/// Decodes an S3 notification key: form-URL-encoded (`+` is a space, `%XX` bytes of UTF-8).
pub fn decode_s3_key(raw: &str) -> Result<String, RunError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        RunError::InvalidInput(format!("object key {raw:?} has a bad %-escape"))
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        RunError::InvalidInput(format!("object key {raw:?} is not UTF-8 once decoded"))
    })
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Parses an upload notification of any accepted shape.
pub fn parse_object_event(payload: &Value) -> Result<ObjectEvent, RunError> {
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(ObjectEvent::Test);
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let source = records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str);
        if source == Some("aws:sqs") {
            let ev: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(payload.clone())
                .map_err(|e| RunError::InvalidInput(format!("SQS event: {e}")))?;
            return Ok(ObjectEvent::Sqs(
                ev.records
                    .into_iter()
                    .map(|m| {
                        let id = m.message_id.clone().unwrap_or_default();
                        let parsed = m
                            .body
                            .as_deref()
                            .ok_or_else(|| {
                                RunError::InvalidInput("SQS message without a body".into())
                            })
                            .and_then(|b| {
                                serde_json::from_str::<Value>(b).map_err(|e| {
                                    RunError::InvalidInput(format!(
                                        "SQS message body is not JSON: {e}"
                                    ))
                                })
                            })
                            .and_then(|v| match parse_object_event(&v)? {
                                ObjectEvent::Sqs(_) => Err(RunError::InvalidInput(
                                    "SQS message wraps another SQS batch".into(),
                                )),
                                other => Ok(other),
                            });
                        (id, parsed)
                    })
                    .collect(),
            ));
        }
        // Only the fields the pipeline uses are read: S3-compatible servers (MinIO, Ceph, OSS's
        // S3 API) omit others (`userIdentity`, `requestParameters`, ...) or spell the event name
        // `s3:ObjectCreated:Put`.
        let mut out = Vec::new();
        for r in records {
            let name = str_at(r, "/eventName").unwrap_or("");
            let name = name.strip_prefix("s3:").unwrap_or(name);
            if !name.is_empty() && !name.starts_with("ObjectCreated:") {
                tracing::info!(event = %name, "ignoring a non-creation S3 event");
                continue;
            }
            let (Some(bucket), Some(raw_key)) = (
                str_at(r, "/s3/bucket/name").filter(|b| !b.is_empty()),
                str_at(r, "/s3/object/key").filter(|k| !k.is_empty()),
            ) else {
                return Err(RunError::InvalidInput(
                    "S3 record without s3.bucket.name or s3.object.key".into(),
                ));
            };
            let size = r.pointer("/s3/object/size").and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            });
            out.push(ObjectRef {
                bucket: bucket.to_owned(),
                key: decode_s3_key(raw_key)?,
                size,
                etag: str_at(r, "/s3/object/eTag")
                    .or_else(|| str_at(r, "/s3/object/etag"))
                    .filter(|e| !e.is_empty())
                    .map(|e| e.trim_matches('"').to_owned()),
                version_id: str_at(r, "/s3/object/versionId")
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
            });
        }
        return Ok(ObjectEvent::Objects(out));
    }
    if payload.get("source").and_then(Value::as_str) == Some("aws.s3")
        && payload.get("detail-type").and_then(Value::as_str) == Some("Object Created")
    {
        // EventBridge carries the key as stored, not URL-encoded.
        let bucket = str_at(payload, "/detail/bucket/name");
        let key = str_at(payload, "/detail/object/key");
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(RunError::InvalidInput(
                "EventBridge Object Created event without detail.bucket.name / detail.object.key"
                    .into(),
            ));
        };
        return Ok(ObjectEvent::Objects(vec![ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: payload
                .pointer("/detail/object/size")
                .and_then(Value::as_u64),
            etag: str_at(payload, "/detail/object/etag").map(str::to_owned),
            version_id: str_at(payload, "/detail/object/version-id").map(str::to_owned),
        }]));
    }
    if let Some(events) = payload.get("events").and_then(Value::as_array)
        && events.iter().any(|e| e.get("oss").is_some())
    {
        let mut out = Vec::new();
        for e in events {
            let name = str_at(e, "/eventName").unwrap_or("");
            if !name.starts_with("ObjectCreated:") {
                continue;
            }
            let (Some(bucket), Some(key)) =
                (str_at(e, "/oss/bucket/name"), str_at(e, "/oss/object/key"))
            else {
                return Err(RunError::InvalidInput(
                    "OSS event without oss.bucket.name / oss.object.key".into(),
                ));
            };
            out.push(ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                size: e.pointer("/oss/object/size").and_then(Value::as_u64),
                etag: str_at(e, "/oss/object/eTag").map(str::to_owned),
                version_id: None,
            });
        }
        return Ok(ObjectEvent::Objects(out));
    }
    let keys: Vec<&str> = payload
        .as_object()
        .map(|o| o.keys().map(String::as_str).take(8).collect())
        .unwrap_or_default();
    Err(RunError::InvalidInput(format!(
        "not an upload notification (S3, SQS-wrapped S3, EventBridge Object Created or OSS); received a {} with keys {keys:?}",
        match payload {
            Value::Object(_) => "JSON object",
            Value::Array(_) => "JSON array",
            _ => "JSON value",
        }
    )))
}

#[cfg(test)]
mod object_tests {
    use super::*;
    use crate::Code;

    #[test]
    fn s3_keys_are_form_url_decoded() {
        assert_eq!(decode_s3_key("red+flower.jpg").unwrap(), "red flower.jpg");
        assert_eq!(decode_s3_key("Happy%20Face.jpg").unwrap(), "Happy Face.jpg");
        assert_eq!(
            decode_s3_key("%E5%BD%95%E9%9F%B3/a%2Bb.wav").unwrap(),
            "录音/a+b.wav"
        );
        assert_eq!(
            decode_s3_key("bad%zz").unwrap_err().code(),
            Code::InvalidInput
        );
        assert_eq!(decode_s3_key("%FF").unwrap_err().code(), Code::InvalidInput);
    }

    #[test]
    fn s3_compatible_notifications_with_only_the_fields_we_use_are_accepted() {
        // MinIO's shape: `s3:`-prefixed event name, no userIdentity / requestParameters /
        // responseElements, a quoted ETag; and a record reduced to bucket and key.
        let minio = serde_json::json!({"EventName": "s3:ObjectCreated:Put", "Key": "calls/a.wav",
            "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "calls"}, "object": {"key": "in%2F%E5%BD%95%E9%9F%B3.wav", "size": "2048", "eTag": "\"abc\""}}},
                {"s3": {"bucket": {"name": "calls"}, "object": {"key": "bare.wav"}}},
                {"eventName": "s3:ObjectRemoved:Delete", "s3": {"bucket": {"name": "calls"}, "object": {"key": "gone.wav"}}}]});
        let ObjectEvent::Objects(objs) = parse_object_event(&minio).unwrap() else {
            panic!("objects expected")
        };
        assert_eq!(objs.len(), 2, "the removal is ignored");
        assert_eq!(objs[0].key, "in/录音.wav");
        assert_eq!(objs[0].size, Some(2048));
        assert_eq!(objs[0].etag.as_deref(), Some("abc"));
        assert_eq!(
            (objs[1].bucket.as_str(), objs[1].key.as_str()),
            ("calls", "bare.wav")
        );
        let keyless = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]});
        assert_eq!(
            parse_object_event(&keyless).unwrap_err().code(),
            Code::InvalidInput
        );
    }

    #[test]
    fn anything_else_is_named_in_the_error() {
        let e = parse_object_event(&serde_json::json!({"hello": 1})).unwrap_err();
        assert_eq!(e.code(), Code::InvalidInput);
        assert!(e.to_string().contains("hello"), "{e}");
    }
}
