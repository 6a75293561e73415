//! The [`Queue`] port over SQS (and SQS-protocol servers) through aws-sdk-sqs: where an
//! evaluation run's chunks go (see `eval::fanout`).
//!
//! Invariants: messages go in `SendMessageBatch` calls of at most ten; entries the queue refuses
//! are sent again once, and `send` succeeds only when every message was taken; errors carry the
//! queue's error code, never credentials.

use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::config::EvalSettings;
use crate::ports::{BoxFuture, Queue, QueueError};

/// SQS's limit of entries per batch.
const BATCH: usize = 10;

/// An SQS queue by URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The configured queue, if `EVAL_QUEUE_URL` is set.
    pub fn from_settings(s: &EvalSettings) -> Option<Self> {
        let url = s.queue_url.clone()?;
        Some(Self::new(
            &url,
            s.queue_endpoint.as_deref(),
            &s.region,
            s.credentials.as_ref(),
        ))
    }

    /// A client for the queue at `url`; `endpoint` overrides AWS's (SQS-protocol servers);
    /// `credentials` as (id, secret, session token), anonymous when `None`.
    pub fn new(
        url: &str,
        endpoint: Option<&str>,
        region: &str,
        credentials: Option<&(String, crate::Secret, Option<crate::Secret>)>,
    ) -> Self {
        let mut b = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(crate::objects::aws_https())
            .region(Region::new(region.to_owned()));
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep);
        }
        if let Some(c) = credentials {
            b = b.credentials_provider(crate::objects::static_credentials(c));
        }
        Self {
            client: aws_sdk_sqs::Client::from_conf(b.build()),
            url: url.to_owned(),
        }
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<usize>, QueueError> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .build()
                    .map_err(|e| QueueError::Unavailable(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_sqs::error::ProvideErrorMetadata;
                QueueError::Unavailable(format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    crate::error::chain(&e)
                ))
            })?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .collect())
    }
}

impl Queue for SqsQueue {
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            for batch in bodies.chunks(BATCH) {
                let failed = self.send_batch(batch).await?;
                if failed.is_empty() {
                    continue;
                }
                let again: Vec<String> = failed
                    .iter()
                    .filter_map(|i| batch.get(*i).cloned())
                    .collect();
                let still = self.send_batch(&again).await?;
                if !still.is_empty() {
                    return Err(QueueError::Unavailable(format!(
                        "the queue refused {} message(s) twice",
                        still.len()
                    )));
                }
            }
            Ok(())
        })
    }
}
