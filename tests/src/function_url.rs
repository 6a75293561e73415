//! A local HTTP-to-Lambda adaptor, as a Function URL is: each HTTP request becomes a Function URL
//! event (payload 2.0, body base64, `host` a `*.lambda-url.*` name) queued on a [`RuntimeApi`],
//! and the function's report becomes the HTTP answer (a proxy response's status, headers and
//! body; a streamed response's prelude and body; a function error as 502). Clients (the OpenAI
//! SDKs) reach a function bootstrap through it exactly as they would through a Function URL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::fixture_json;
use crate::lambda_api::{Outcome, RuntimeApi};

/// The host a Function URL event names.
pub const HOST: &str = "adaptor-url-id.lambda-url.us-east-1.on.aws";

/// The adaptor on a loopback port; stops when dropped.
pub struct FunctionUrl {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl FunctionUrl {
    /// Serves requests into `api`.
    pub async fn start(api: Arc<RuntimeApi>) -> Self {
        let app = axum::Router::new().fallback(forward).with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Self { base, task }
    }
}

impl Drop for FunctionUrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(api): State<Arc<RuntimeApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ev = fixture_json("aws/apigw/function-url-v2-post-isBase64Encoded-true.json");
    let mut h = Map::new();
    for (k, v) in &headers {
        let v = v.to_str().unwrap_or_default();
        let joined = match h.get(k.as_str()).and_then(Value::as_str) {
            Some(old) => format!("{old},{v}"),
            None => v.to_owned(),
        };
        h.insert(k.as_str().to_owned(), Value::String(joined));
    }
    h.insert("host".into(), HOST.into());
    ev["headers"] = Value::Object(h);
    ev["rawPath"] = json!(uri.path());
    ev["rawQueryString"] = json!(uri.query().unwrap_or(""));
    ev["requestContext"]["http"]["method"] = json!(method.as_str());
    ev["requestContext"]["http"]["path"] = json!(uri.path());
    ev["requestContext"]["http"]["sourceIp"] = json!(peer.ip().to_string());
    ev["requestContext"]["domainName"] = json!(HOST);
    ev["requestContext"]["requestId"] = json!(ai_runner::run::new_trace_id());
    ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&body));
    ev["isBase64Encoded"] = json!(true);
    let id = api.push(ev);
    match api.outcome(&id, Duration::from_secs(60)).await {
        Outcome::Response(v) if v.get("statusCode").is_some() => {
            let mut body = v["body"].as_str().unwrap_or_default().as_bytes().to_vec();
            if v["isBase64Encoded"] == true {
                body = base64::engine::general_purpose::STANDARD
                    .decode(&body)
                    .unwrap_or_default();
            }
            answer(&v["statusCode"], &v["headers"], body)
        }
        Outcome::Response(v) => answer(
            &json!(200),
            &json!({"content-type": "application/json"}),
            v.to_string().into_bytes(),
        ),
        Outcome::Streamed { prelude, body } => answer(
            &prelude["statusCode"],
            &prelude["headers"],
            body.into_bytes(),
        ),
        Outcome::Error { body, .. } => (StatusCode::BAD_GATEWAY, body.to_string()).into_response(),
    }
}

fn answer(status: &Value, headers: &Value, body: Vec<u8>) -> Response {
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, body).into_response();
    for (k, v) in headers.as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::try_from(k.as_str()),
            v.as_str().map(HeaderValue::from_str),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}
