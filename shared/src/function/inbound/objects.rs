//! Upload notifications: S3 (and S3-compatible servers), S3 via SQS, EventBridge "Object
//! Created", Function Compute OSS triggers.
//!
//! Invariants: only the fields the pipeline uses are read; only creations are kept (removals and
//! other events are logged and skipped); S3 keys are form-URL-decoded, EventBridge and OSS keys
//! are taken as stored; anything else is `INVALID_INPUT` naming what was received.

use serde_json::Value;

use crate::error::RunError;
use crate::model::media::ObjectRef;

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
pub fn parse(payload: &Value) -> Result<ObjectEvent, RunError> {
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
                            .and_then(|v| match parse(&v)? {
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
mod tests {
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
        let ObjectEvent::Objects(objs) = parse(&minio).unwrap() else {
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
        assert_eq!(parse(&keyless).unwrap_err().code(), Code::InvalidInput);
    }

    #[test]
    fn anything_else_is_named_in_the_error() {
        let e = parse(&serde_json::json!({"hello": 1})).unwrap_err();
        assert_eq!(e.code(), Code::InvalidInput);
        assert!(e.to_string().contains("hello"), "{e}");
    }
}
