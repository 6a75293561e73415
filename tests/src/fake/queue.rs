//! An in-memory [`Queue`]: it keeps every message it takes, in order, or refuses them all (as an
//! unreachable or denying SQS would).
//!
//! Invariants, the port's contract as `SqsQueue` keeps it: `send` is `Ok` only when every
//! message was taken; a refusal takes none.

use std::sync::{Mutex, PoisonError};

use ai_runner::ports::{BoxFuture, Queue, QueueError};

/// The memory queue.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    taken: Mutex<Vec<String>>,
    refuse: bool,
}

impl MemoryQueue {
    /// A queue that takes every message.
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue that refuses every message.
    pub fn refusing() -> Self {
        Self {
            refuse: true,
            ..Self::default()
        }
    }

    /// Every message taken so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Queue for MemoryQueue {
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            if self.refuse {
                return Err(QueueError::Unavailable(
                    "the memory queue refuses every message".into(),
                ));
            }
            self.taken
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(bodies.iter().cloned());
            Ok(())
        })
    }
}
