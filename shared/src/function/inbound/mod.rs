//! What an invocation is, parsed once: the closed [`Inbound`] enum every job is chosen from.
//!
//! Accepted shapes: a direct invocation (the request JSON itself), an API Gateway REST API proxy
//! event (payload 1.0), an HTTP API / Function URL event (payload 2.0), a Function Compute HTTP
//! trigger (its event form, or the request forwarded to a custom runtime: [`http::from_request`]),
//! an EventBridge schedule, an FC timer, an SQS batch of evaluation chunks (run-route), the
//! scheduled audit replay (run-once) and upload notifications (oss-trigger). An HTTP call whose
//! path names the OpenAI-compatible API is [`Inbound::OpenAi`] ([`openai`]).
//!
//! Invariants: an event's shape is detected once, by the event's own markers (`httpMethod` for
//! 1.0, `version: "2.0"` for 2.0, ...), never by guessing from the body; which shapes and bodies
//! are read depends on the function; anything unparseable is `INVALID_INPUT` naming what was
//! received (for HTTP calls, kept in the [`HttpInbound`] until the caller is admitted).

pub mod http;
pub mod objects;
pub mod openai;

use serde_json::Value;

pub use crate::invocation::{Body, EvalRequest, Request, RunOnceRequest, RunRouteRequest};
pub use http::{HttpInbound, HttpSource};
pub use objects::ObjectEvent;
pub use openai::{Endpoint, OpenAiInbound};

use super::Function;
use crate::error::RunError;
use crate::eval::fanout::Chunk;

/// One invocation, parsed.
#[derive(Debug)]
pub enum Inbound {
    /// A direct invocation (Lambda `Invoke`, FC invoke, a rule's constant input): the request
    /// JSON itself.
    Direct(Request),
    /// An HTTP call with its source, what access control reads, and its body's request.
    Http(Box<HttpInbound>),
    /// An HTTP call to the OpenAI-compatible API (`/v1/chat/completions`, `/v1/models`).
    OpenAi(Box<OpenAiInbound>),
    /// A schedule's tick carrying a request.
    Schedule(Scheduled),
    /// An SQS batch of an evaluation run's chunks (run-route).
    EvalChunks(Vec<ChunkMessage>),
    /// An upload notification (oss-trigger): objects, S3's test event, or an SQS batch of them.
    Objects(ObjectEvent),
    /// The scheduled audit replay, `{"audit_replay": {"limit": N}}` as a direct invocation
    /// (run-once; never from API events).
    AuditReplay {
        /// At most this many spooled rows.
        limit: usize,
    },
    /// An event this function does not take, or a direct or scheduled request it cannot read.
    Invalid(RunError),
}

/// A schedule's tick: an EventBridge "Scheduled Event" whose `detail` carries the request, or an
/// FC timer whose `payload` string does.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// The event's id (EventBridge) or the timer's name (FC).
    pub request_id: Option<String>,
    /// What the schedule asks for.
    pub request: Request,
}

/// One SQS message of an evaluation chunk batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMessage {
    /// The message id, named in `batchItemFailures` to redeliver it.
    pub id: String,
    /// The chunk, or why the body is not one.
    pub chunk: Result<Chunk, String>,
}

/// An event's shape, by its own markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Direct,
    Http(HttpSource),
    EventBridgeSchedule,
    FcTimer,
}

fn shape(payload: &Value) -> Shape {
    if payload.get("version").and_then(Value::as_str) == Some("2.0")
        && payload.pointer("/requestContext/http").is_some()
    {
        Shape::Http(HttpSource::ApiGatewayV2)
    } else if payload.get("httpMethod").is_some() && payload.get("requestContext").is_some() {
        Shape::Http(HttpSource::ApiGatewayV1)
    } else if payload.get("version").and_then(Value::as_str) == Some("v1")
        && payload.get("rawPath").is_some()
        && payload.pointer("/requestContext/http").is_some()
    {
        Shape::Http(HttpSource::FcHttp)
    } else if payload.get("triggerTime").is_some()
        && payload.get("triggerName").is_some()
        && payload.get("payload").is_some()
    {
        Shape::FcTimer
    } else if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && payload.get("source").and_then(Value::as_str) == Some("aws.events")
    {
        Shape::EventBridgeSchedule
    } else {
        Shape::Direct
    }
}

impl Inbound {
    /// Parses what the platform sent to `function`.
    pub fn parse(function: Function, payload: Value) -> Inbound {
        match function {
            Function::OssTrigger => match objects::parse(&payload) {
                Ok(ev) => Inbound::Objects(ev),
                Err(e) => Inbound::Invalid(e),
            },
            Function::RunRoute => match eval_chunks(&payload) {
                Some(messages) => Inbound::EvalChunks(messages),
                None => requested(Body::Route, payload),
            },
            Function::RunOnce => {
                if let (Shape::Direct, Some(replay)) =
                    (shape(&payload), payload.get("audit_replay"))
                {
                    let limit = replay
                        .get("limit")
                        .and_then(Value::as_u64)
                        .and_then(|l| usize::try_from(l).ok())
                        .unwrap_or(500);
                    return Inbound::AuditReplay { limit };
                }
                requested(Body::Config, payload)
            }
        }
    }

    /// True for HTTP calls, which are answered with an HTTP response.
    pub fn is_http(&self) -> bool {
        matches!(self, Inbound::Http(_) | Inbound::OpenAi(_))
    }

    /// An HTTP call: to the OpenAI-compatible API when its path says so, else to the JSON API.
    pub fn http(h: HttpInbound) -> Inbound {
        match Endpoint::of(&h.call) {
            Some(endpoint) => Inbound::OpenAi(Box::new(OpenAiInbound {
                source: h.source,
                call: h.call,
                request_id: h.request_id,
                endpoint,
            })),
            None => Inbound::Http(Box::new(h)),
        }
    }
}

/// A request-carrying event: direct, HTTP or scheduled.
fn requested(body: Body, payload: Value) -> Inbound {
    let parsed = match shape(&payload) {
        Shape::Http(source) => {
            return Inbound::http(http::from_event(source, &payload, body));
        }
        Shape::Direct => body
            .from_value(payload)
            .map(Inbound::Direct)
            .map_err(|e| RunError::InvalidInput(format!("direct invocation: {e}"))),
        Shape::EventBridgeSchedule => scheduled(body, &payload),
        Shape::FcTimer => timer(body, &payload),
    };
    parsed.unwrap_or_else(Inbound::Invalid)
}

fn scheduled(body: Body, payload: &Value) -> Result<Inbound, RunError> {
    let detail = payload.get("detail").cloned().unwrap_or(Value::Null);
    if detail.as_object().is_none_or(|d| d.is_empty()) {
        return Err(RunError::InvalidInput(
            "scheduled event carries no request: set the rule target's input to {\"project\": ..., \"route_key\": ..., \"variables\": {...}} (or put it in the event detail)".into(),
        ));
    }
    let request = body
        .from_value(detail)
        .map_err(|e| RunError::InvalidInput(format!("scheduled event detail: {e}")))?;
    Ok(Inbound::Schedule(Scheduled {
        request_id: payload.get("id").and_then(Value::as_str).map(str::to_owned),
        request,
    }))
}

fn timer(body: Body, payload: &Value) -> Result<Inbound, RunError> {
    let text = payload.get("payload").and_then(Value::as_str).unwrap_or("");
    let request = body.from_str(text).map_err(|e| {
        RunError::InvalidInput(format!(
            "timer trigger payload must be the request JSON ({e}); got {:?}",
            text.chars().take(80).collect::<String>()
        ))
    })?;
    Ok(Inbound::Schedule(Scheduled {
        request_id: payload
            .get("triggerName")
            .and_then(Value::as_str)
            .map(str::to_owned),
        request,
    }))
}

/// The messages of an SQS event, each read as an evaluation chunk; `None` when the payload is not
/// an SQS event.
fn eval_chunks(payload: &Value) -> Option<Vec<ChunkMessage>> {
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
            .map(|m| ChunkMessage {
                id: m.message_id.unwrap_or_default(),
                chunk: serde_json::from_str(m.body.as_deref().unwrap_or_default())
                    .map_err(|e| e.to_string()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;
    use serde_json::json;

    /// A captured payload from `tests/fixtures`.
    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn rest_v1() -> Value {
        fixture(include_str!(
            "../../../../tests/fixtures/aws/apigw/rest-v1-proxy-post-json-body.json"
        ))
    }

    fn with_body(mut ev: Value, body: &Value) -> Value {
        ev["body"] = json!(body.to_string());
        ev["isBase64Encoded"] = json!(false);
        ev
    }

    #[test]
    fn a_direct_invocation_is_the_request_itself() {
        let Inbound::Direct(Request::RunOnce(r)) = Inbound::parse(
            Function::RunOnce,
            json!({"config_key": "k", "variables": {"A": 1}}),
        ) else {
            panic!("a direct run-once request expected")
        };
        assert_eq!(r.config_key, "k");
        assert_eq!(r.variables["A"], 1);
        let route = Inbound::parse(
            Function::RunRoute,
            json!({"eval": "nightly", "trigger": "schedule"}),
        );
        assert!(
            matches!(&route, Inbound::Direct(Request::Eval(e)) if e.eval == "nightly"),
            "{route:?}"
        );
    }

    #[test]
    fn unknown_fields_and_missing_keys_are_invalid_input() {
        for bad in [
            json!({"config": "k"}),
            json!({"config_key": "k", "vars": {}}),
            json!([1]),
        ] {
            let Inbound::Invalid(e) = Inbound::parse(Function::RunOnce, bad) else {
                panic!("invalid expected")
            };
            assert_eq!(e.code(), Code::InvalidInput);
            assert!(e.to_string().contains("direct invocation"), "{e}");
        }
    }

    #[test]
    fn a_rest_api_event_is_an_http_call_with_its_path_parameters_and_request_id() {
        let ev = with_body(rest_v1(), &json!({"config_key": "greet"}));
        let Inbound::Http(h) = Inbound::parse(Function::RunOnce, ev) else {
            panic!("an HTTP call expected")
        };
        assert_eq!(h.source, HttpSource::ApiGatewayV1);
        assert_eq!(
            h.request_id.as_deref(),
            Some("deef4878-7910-11e6-8f14-25afc3e9ae33")
        );
        assert!(matches!(&h.request, Ok(Request::RunOnce(r)) if r.config_key == "greet"));
        assert_eq!(h.call.method, "POST");
        assert_eq!(h.call.paths, ["/hello/world"]);
        assert_eq!(h.call.source_ip.as_deref(), Some("192.168.196.186"));
        assert_eq!(h.call.header("content-type"), Some("application/json"));
    }

    #[test]
    fn an_http_api_event_keeps_its_jwt_principal_and_refuses_its_plain_text_body_after_admission() {
        let ev = fixture(include_str!(
            "../../../../tests/fixtures/aws/apigw/http-api-payload-v2.0-docs.json"
        ));
        let Inbound::Http(h) = Inbound::parse(Function::RunRoute, ev) else {
            panic!("an HTTP call expected")
        };
        assert_eq!(h.source, HttpSource::ApiGatewayV2);
        assert_eq!(h.call.paths, ["/my/path"]);
        assert_eq!(h.call.source_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(h.call.body, b"Hello from Lambda");
        let Err(e) = &h.request else {
            panic!("the fixture's own body is no request")
        };
        assert_eq!(e.code(), Code::InvalidInput);
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn a_function_url_body_is_base64_decoded_for_the_request_and_the_signature() {
        let mut ev = fixture(include_str!(
            "../../../../tests/fixtures/aws/apigw/function-url-v2-post-isBase64Encoded-true.json"
        ));
        let text = json!({"config_key": "greet"}).to_string();
        ev["body"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &text
        ));
        let Inbound::Http(h) = Inbound::parse(Function::RunOnce, ev) else {
            panic!("an HTTP call expected")
        };
        assert_eq!(h.call.body, text.as_bytes());
        assert!(matches!(&h.request, Ok(Request::RunOnce(r)) if r.config_key == "greet"));
        assert_eq!(
            h.request_id.as_deref(),
            Some("9701a3d4-36ad-40bd-bf0b-a525c987d27f")
        );
    }

    #[test]
    fn an_eventbridge_schedule_carries_its_detail_and_an_empty_one_is_invalid() {
        let mut ev = fixture(include_str!(
            "../../../../tests/fixtures/aws/eventbridge/scheduled-event-docs.json"
        ));
        let Inbound::Invalid(e) = Inbound::parse(Function::RunRoute, ev.clone()) else {
            panic!("the fixture's empty detail is no request")
        };
        assert!(e.to_string().contains("route_key"), "{e}");
        ev["detail"] = json!({"project": "p", "route_key": "daily"});
        let Inbound::Schedule(s) = Inbound::parse(Function::RunRoute, ev) else {
            panic!("a schedule expected")
        };
        assert_eq!(
            s.request_id.as_deref(),
            Some("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa")
        );
        assert!(matches!(&s.request, Request::Route(r) if r.route_key == "daily"));
    }

    #[test]
    fn an_fc_timer_carries_its_request_in_the_payload_string() {
        let mut ev = fixture(include_str!(
            "../../../../tests/fixtures/alibaba-fc/timer-trigger-fc-docs.json"
        ));
        let Inbound::Invalid(e) = Inbound::parse(Function::RunOnce, ev.clone()) else {
            panic!("the fixture's payload is no request")
        };
        assert!(e.to_string().contains("awesome-fc"), "{e}");
        ev["payload"] = json!(r#"{"config_key": "nightly"}"#);
        let Inbound::Schedule(s) = Inbound::parse(Function::RunOnce, ev) else {
            panic!("a schedule expected")
        };
        assert_eq!(s.request_id.as_deref(), Some("timer-trigger"));
        assert!(matches!(&s.request, Request::RunOnce(r) if r.config_key == "nightly"));
    }

    #[test]
    fn an_sqs_batch_to_run_route_is_evaluation_chunks_each_read_on_its_own() {
        let chunk = json!({"eval_run": "r1", "start": 0, "end": 2});
        let ev = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "body": chunk.to_string()},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": "not a chunk"},
        ]});
        let Inbound::EvalChunks(messages) = Inbound::parse(Function::RunRoute, ev) else {
            panic!("evaluation chunks expected")
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].id, "m1");
        assert!(messages[0].chunk.is_ok(), "{:?}", messages[0].chunk);
        assert!(messages[1].chunk.is_err());
    }

    #[test]
    fn upload_notifications_of_every_platform_are_object_events() {
        let s3 = fixture(include_str!(
            "../../../../tests/fixtures/aws/s3/s3-put-key-percent20-encoded.json"
        ));
        let Inbound::Objects(ObjectEvent::Objects(objs)) = Inbound::parse(Function::OssTrigger, s3)
        else {
            panic!("objects expected")
        };
        assert_eq!(objs[0].key, "Happy Face.jpg");
        // Each shape carries the version and ETag it names: the pipeline reads that version.
        for (text, bucket, key, etag, version) in [
            (
                include_str!("../../../../tests/fixtures/aws/s3/s3-put-docs-example.json"),
                "mybucket",
                "HappyFace.jpg",
                "d41d8cd98f00b204e9800998ecf8427e",
                Some("096fKKXTRTtl3on89fVO.nfljtsv6qko"),
            ),
            (
                include_str!(
                    "../../../../tests/fixtures/aws/eventbridge/s3-object-created-docs.json"
                ),
                "DOC-EXAMPLE-BUCKET1",
                "example-key",
                "b1946ac92492d2347c6235b4d2611184",
                Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"),
            ),
            (
                include_str!(
                    "../../../../tests/fixtures/alibaba-fc/oss-trigger-putobject-fc-docs.json"
                ),
                "testbucket",
                "source/a.png",
                "688A7BF4F233DC9C88A80BF985AB****",
                None,
            ),
        ] {
            let Inbound::Objects(ObjectEvent::Objects(objs)) =
                Inbound::parse(Function::OssTrigger, fixture(text))
            else {
                panic!("objects expected from {bucket}")
            };
            assert_eq!(
                (objs[0].bucket.as_str(), objs[0].key.as_str()),
                (bucket, key)
            );
            assert_eq!(
                (objs[0].etag.as_deref(), objs[0].version_id.as_deref()),
                (Some(etag), version),
                "{bucket}"
            );
        }
        let test = fixture(include_str!(
            "../../../../tests/fixtures/aws/s3/s3-test-event-docs.json"
        ));
        assert!(matches!(
            Inbound::parse(Function::OssTrigger, test),
            Inbound::Objects(ObjectEvent::Test)
        ));
        let sqs = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
            "body": include_str!("../../../../tests/fixtures/aws/s3/s3-put-docs-example.json")}]});
        let Inbound::Objects(ObjectEvent::Sqs(messages)) =
            Inbound::parse(Function::OssTrigger, sqs)
        else {
            panic!("an SQS batch of notifications expected")
        };
        assert!(matches!(&messages[0], (id, Ok(ObjectEvent::Objects(_))) if id == "m1"));
        assert!(matches!(
            Inbound::parse(Function::OssTrigger, rest_v1()),
            Inbound::Invalid(_)
        ));
    }

    #[test]
    fn the_audit_replay_is_a_direct_invocation_of_run_once_only() {
        assert!(matches!(
            Inbound::parse(Function::RunOnce, json!({"audit_replay": {"limit": 7}})),
            Inbound::AuditReplay { limit: 7 }
        ));
        assert!(matches!(
            Inbound::parse(Function::RunOnce, json!({"audit_replay": {}})),
            Inbound::AuditReplay { limit: 500 }
        ));
        let over_http = with_body(rest_v1(), &json!({"audit_replay": {"limit": 7}}));
        let Inbound::Http(h) = Inbound::parse(Function::RunOnce, over_http) else {
            panic!("an HTTP call expected")
        };
        assert!(h.request.is_err(), "an API caller cannot ask for a replay");
        assert!(matches!(
            Inbound::parse(Function::RunRoute, json!({"audit_replay": {}})),
            Inbound::Invalid(_)
        ));
    }
}
