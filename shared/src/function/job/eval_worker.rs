//! run-route's third job: working an SQS batch of an evaluation run's chunks.
//!
//! Invariants: answers `batchItemFailures` naming only the messages to redeliver; a message that
//! is not a chunk, or a chunk of an unknown run, is logged and dropped (redelivering cannot fix
//! it).

use serde_json::json;

use super::report_sink;
use crate::app::App;
use crate::eval::fanout;
use crate::eval::run::EvalError;
use crate::function::inbound::ChunkMessage;
use crate::function::reply::Reply;

/// Works each chunk of the batch.
pub async fn work(state: &App, messages: Vec<ChunkMessage>) -> Reply {
    let sink = report_sink(state);
    let mut failures = Vec::new();
    let mut worked = Vec::new();
    for ChunkMessage { id, chunk } in messages {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "not an evaluation chunk; dropped");
                continue;
            }
        };
        match fanout::work(&state.runner, &chunk, sink).await {
            Ok(w) => worked.push(json!({"message_id": id, "run": chunk.eval_run, "worked": w})),
            Err(EvalError::UnknownRun(run)) => {
                tracing::error!(message_id = %id, run = %run, "chunk of an unknown run; dropped");
            }
            Err(e) => {
                tracing::warn!(message_id = %id, code = %e.code(), error = %crate::error::chain(&e), "chunk to redeliver");
                failures.push(json!({"itemIdentifier": id}));
            }
        }
    }
    Reply::ok(json!({"batchItemFailures": failures, "chunks": worked}))
}
