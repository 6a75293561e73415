//! Object storage (`ObjectStore`: the upload pipeline, spill-over, result documents) and the
//! evaluation `Queue`, with their errors.

use std::time::Duration;

use crate::code::Code;

use super::{BoxFuture, ObjectPin};

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such bucket or key.
    #[error("object s3://{bucket}/{key} not found")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The store refused (credentials, policy).
    #[error("object store denied access to s3://{bucket}/{key}")]
    Denied {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The object is no longer the version its event named: the pinned ETag does not match
    /// (S3's 412 `PreconditionFailed`). A newer upload replaced it; its own event is its job.
    #[error(
        "object s3://{bucket}/{key} changed since its event: it is no longer the version named"
    )]
    Changed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// This store cannot do that (e.g. presign on a local directory).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store refused the request itself (bad key, invalid argument, key too long): asking
    /// again cannot help.
    #[error("object store rejected the request: {0}")]
    Invalid(String),
    /// Network, timeout, server error.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

impl ObjectError {
    /// Stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound { .. } => Code::ObjectNotFound,
            Self::Denied { .. } => Code::ObjectAccessDenied,
            Self::Changed { .. } => Code::ObjectChanged,
            Self::Unsupported(_) => Code::ObjectOperationUnsupported,
            Self::Invalid(_) => Code::ObjectFailed,
            Self::Unavailable(_) => Code::ObjectStoreUnavailable,
        }
    }

    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a HEAD tells.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMeta {
    /// Bytes.
    pub size: u64,
    /// `Content-Type`, if the store knows it.
    pub content_type: Option<String>,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Version id, on versioned buckets.
    pub version_id: Option<String>,
    /// A recording's length in seconds, when the uploader said it (user metadata
    /// `duration-seconds`: `x-amz-meta-duration-seconds`): models priced per second use it.
    pub duration_seconds: Option<f64>,
}

/// The operations the pipeline and spill-over need. `head`, `get` and `presign_get` take an
/// [`ObjectPin`]: the size check and the read see the same version, or fail.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Size, type and identity of an object (of the pinned version).
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<ObjectMeta, ObjectError>>;
    /// The whole object (the pinned version, read whole or refused).
    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<Vec<u8>, ObjectError>>;
    /// Writes an object (private: no ACL is granted).
    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>>;
    /// A time-limited GET URL of the pinned version: a version id is signed into the URL; an
    /// ETag cannot be (the provider sends no `If-Match`), so it is checked when signing.
    fn presign_get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
        expires: Duration,
    ) -> BoxFuture<'a, Result<String, ObjectError>>;
    /// Removes an object (removing one that is not there is not an error).
    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>>;
    /// Keys under `prefix`, in key order, at most `max`.
    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectError>>;
}

/// Why a queue did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not be reached or refused the messages (retryable).
    #[error("the queue did not take the messages: {0}")]
    Unavailable(String),
}

/// A message queue (SQS): where an evaluation run's chunks go, for `run-route` to consume.
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Sends every message (batched as the queue allows): `Ok` only when all were taken.
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), QueueError>>;
}
