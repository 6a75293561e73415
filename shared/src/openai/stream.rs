//! Relaying a streaming call to its caller, for every edge that can stream (`ai-runner serve`,
//! Function Compute's HTTP trigger): the edge spawns the run with a [`StreamTap`] in its context
//! and hands [`relay`] the tap's receiver and the run's outcome; it gets back either the whole
//! answer (nothing was relayed before the run ended) or the SSE events to send as they come.
//!
//! Invariants: the answer opens only at the first relayed chunk, so a run that fails before any
//! byte is answered with its error object and status; after it, the events are the chunks under
//! the trace id, then an `error` event if the run failed after all, the trailer comment and
//! `data: [DONE]`; a caller that goes away (the events' receiver dropped) drops the tap's
//! receiver at the next chunk, which stops the provider's stream. The run itself is the edge's
//! spawned task: nothing here can cancel it.
//!
//! [`StreamTap`]: crate::ports::StreamTap

use std::future::Future;

use serde_json::Value;
use tokio::sync::mpsc;

use super::render::{self, Rendered};
use super::{Answer, ApiError};
use crate::code::Code;

/// What a streaming call answers.
#[derive(Debug)]
pub enum Streamed {
    /// The run ended before any chunk was relayed: the whole answer (the stream at once, or the
    /// error object at its status).
    Whole(Rendered),
    /// The first chunk came: these headers (beside `content-type: text/event-stream`), then the
    /// events as they come.
    Events {
        /// `x-request-id`, the trace id and the model asked for.
        headers: Vec<(&'static str, String)>,
        /// Each SSE event's text (`data: ...\n\n`, comments included), in order.
        events: mpsc::Receiver<String>,
    },
}

/// What the stream says about the call it relays.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// The run's trace id (every chunk's `id`).
    pub trace_id: String,
    /// The `model` the caller asked for.
    pub model: String,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Waits for the first chunk or the end of the run (`done`: `None` when the run's task died),
/// and answers as the module header says.
pub async fn relay(
    mut chunks: mpsc::Receiver<Value>,
    done: impl Future<Output = Option<Answer>> + Send + 'static,
    call: Relayed,
) -> Streamed {
    let Some(first) = chunks.recv().await else {
        return Streamed::Whole(match done.await {
            Some(a) => render::answer(&a, true, call.include_usage),
            None => render::error(&stopped()),
        });
    };
    let (tx, events) = mpsc::channel::<String>(16);
    let headers = vec![
        ("x-request-id", call.trace_id.clone()),
        ("x-ai-runner-trace-id", call.trace_id.clone()),
        ("x-ai-runner-model", call.model.clone()),
    ];
    tokio::spawn(async move {
        let mut next = Some(first);
        while let Some(c) = next {
            if let Some(c) = render::chunk(c, &call.trace_id, call.include_usage)
                && tx.send(render::event(&c)).await.is_err()
            {
                // The caller went away: dropping `chunks` stops the provider's stream.
                return;
            }
            next = chunks.recv().await;
        }
        let Some(a) = done.await else {
            let _ = tx.send(render::event(&stopped().body())).await;
            return;
        };
        if !a.result.is_ok() {
            let _ = tx
                .send(render::event(&ApiError::from_result(&a.result).body()))
                .await;
        }
        let _ = tx.send(render::trailer(&a)).await;
        let _ = tx.send(render::DONE.to_owned()).await;
    });
    Streamed::Events { headers, events }
}

/// A run task that ended without an answer (it panicked: a bug, logged by the runtime).
pub fn stopped() -> ApiError {
    ApiError::new(Code::IoError, "the run stopped unexpectedly")
}
