//! The upload pipeline's data: which route handles which objects, and the job row that makes
//! every object version run once.
//!
//! Invariants: plain values; the store persists them, the pipeline (`media`) decides. An
//! [`ObjectPin`] names one version of an object: its version id when the event gave one, else its
//! ETag; the job row is keyed by the same identity, so each version is one job.

use serde::Serialize;
use serde_json::Value;

/// An object that was created, as an event reported it (key decoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Bucket.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// Size, if the event said.
    pub size: Option<u64>,
    /// ETag, if the event said.
    pub etag: Option<String>,
    /// Version id, if the bucket is versioned.
    pub version_id: Option<String>,
}

/// Which version of an object a read must see: the one its event named. A version id pins
/// exactly (S3 `versionId`; a gone version is `NotFound`); without one, the ETag pins by
/// condition (`If-Match`; another object under the key is `ObjectError::Changed`). Both
/// absent ([`ObjectPin::NONE`]): the key's current object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectPin<'a> {
    /// A versioned bucket's version id.
    pub version_id: Option<&'a str>,
    /// The ETag, without quotes.
    pub etag: Option<&'a str>,
}

impl<'a> ObjectPin<'a> {
    /// No pin: whatever the key holds now (spill-over, results, probes).
    pub const NONE: Self = Self {
        version_id: None,
        etag: None,
    };

    /// The version and ETag an event (or a HEAD) named for this object.
    pub fn of(obj: &'a ObjectRef) -> Self {
        Self {
            version_id: obj.version_id.as_deref().filter(|v| !v.is_empty()),
            etag: obj.etag.as_deref().filter(|e| !e.is_empty()),
        }
    }

    /// The `If-Match` value to send: the quoted ETag, unless a version is pinned (a version
    /// never changes: its id alone is the exact pin). S3's `null` version (a bucket whose
    /// versioning is suspended) is the exception: the next upload overwrites it in place.
    pub fn if_match(&self) -> Option<String> {
        match (self.version_id, self.etag) {
            (Some(v), _) if v != "null" => None,
            (_, Some(e)) => Some(format!("\"{}\"", e.trim_matches('"'))),
            _ => None,
        }
    }
}

/// A mapping from uploaded objects to a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaMapping {
    /// Row id.
    pub id: i64,
    /// Bucket name, or `*` for any bucket.
    pub bucket: String,
    /// Keys must start with this ('' = any).
    pub key_prefix: String,
    /// Keys must end with this ('' = any), e.g. `.wav`.
    pub key_suffix: String,
    /// Route project.
    pub project: String,
    /// Route key.
    pub route_key: String,
    /// Extra variables for the run (e.g. `{"MEDIA_MODE": "inline"}`).
    pub variables: Option<Value>,
    /// Whether it is used.
    pub active: bool,
}

impl MediaMapping {
    /// Whether this mapping applies to `bucket`/`key`.
    pub fn matches(&self, bucket: &str, key: &str) -> bool {
        self.active
            && (self.bucket == "*" || self.bucket == bucket)
            && key.starts_with(&self.key_prefix)
            && key.ends_with(&self.key_suffix)
    }

    /// Higher is more specific: an exact bucket, then a longer prefix, then a longer suffix.
    fn specificity(&self) -> (bool, usize, usize, i64) {
        (
            self.bucket != "*",
            self.key_prefix.len(),
            self.key_suffix.len(),
            -self.id,
        )
    }
}

/// Picks the most specific matching mapping.
pub fn most_specific<'a>(
    maps: &'a [MediaMapping],
    bucket: &str,
    key: &str,
) -> Option<&'a MediaMapping> {
    maps.iter()
        .filter(|m| m.matches(bucket, key))
        .max_by_key(|m| m.specificity())
}

super::vocab! {
    /// Where an upload job is (`ai_media_job.status`).
    #[derive(Default)]
    pub enum JobStatus {
        /// Claimed by a delivery that is running it.
        Running = "running",
        /// The route answered and the result object is stored.
        Succeeded = "succeeded",
        /// It failed (a redelivery may take it over); a finish that says nothing else is this.
        #[default]
        Failed = "failed",
        /// Refused for good (not media, too large, no mapping...).
        Rejected = "rejected",
        /// The route answered; the result object could not be stored yet and waits on the row.
        Answered = "answered",
    }
}

/// Identifies one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    /// Bucket.
    pub bucket: String,
    /// Decoded object key, cut to the column's 768 characters (the version carries the full
    /// key's hash).
    pub key: String,
    /// Version id (not S3's `null`), else ETag, else '' (up to 60 characters), then `#` and the
    /// first 32 hex digits of the SHA-256 of the full key ([`JobKey::new`], [`JobKey::of`]).
    pub version: String,
}

impl JobKey {
    /// The job key of an object version. The key's hash goes into the version column because
    /// the job table's unique key compares `object_key` case- and accent-insensitively and only
    /// up to its first 400 characters on MySQL: `Call.wav` and `call.wav`, or two keys sharing
    /// their first 400 characters, must stay two jobs (S3 keys reach 1,024 bytes).
    pub fn new(bucket: &str, key: &str, version: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let hash = crate::hex::encode(&digest[..16]);
        let version: String = version.chars().take(60).collect();
        Self {
            bucket: bucket.to_owned(),
            key: key.chars().take(768).collect(),
            version: format!("{version}#{hash}"),
        }
    }

    /// The job key of the version an event named, else of the one its HEAD saw: a version id,
    /// else the ETag. S3's `null` version is no identity (every upload to a bucket whose
    /// versioning is suspended has it): its ETag is.
    pub fn of(obj: &ObjectRef, head_version: Option<&str>, head_etag: Option<&str>) -> Self {
        fn real(v: Option<&str>) -> Option<&str> {
            v.filter(|v| !v.is_empty() && *v != "null")
        }
        let version = real(obj.version_id.as_deref())
            .or(real(head_version))
            .or(head_etag)
            .or(obj.etag.as_deref())
            .unwrap_or_default();
        Self::new(&obj.bucket, &obj.key, version)
    }
}

/// The result of trying to claim a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: this caller runs it.
    New(i64),
    /// A failed job, one stuck past its lease, or one whose route answered but whose result
    /// object was not stored: this caller runs it again (or, with `pending`, only stores it).
    TakenOver {
        /// Job id.
        id: i64,
        /// Attempts including this one (the fencing token [`JobFinish::attempt`] carries).
        attempts: i64,
        /// The result document kept on the row when storing it failed.
        pending: Option<String>,
    },
    /// Already finished (succeeded, failed for good, or rejected): nothing to do.
    Done {
        /// Job id.
        id: i64,
        /// Its status.
        status: JobStatus,
    },
    /// Another delivery is running it right now.
    InProgress(i64),
}

/// How a job ended.
#[derive(Debug, Clone, Default)]
pub struct JobFinish {
    /// `succeeded`, `failed`, `rejected`, or `answered` (the route answered; the result object
    /// could not be stored yet and waits on the row).
    pub status: JobStatus,
    /// The claim's attempt number: only the holder of that claim may finish the job (a run
    /// taken over after its lease cannot overwrite the new owner's result).
    pub attempt: i64,
    /// Stable code on failure or rejection.
    pub error_code: Option<String>,
    /// Message on failure or rejection.
    pub error_message: Option<String>,
    /// Run trace id.
    pub trace_id: Option<String>,
    /// Audit row ids of the run, comma-separated.
    pub audit_ids: Option<String>,
    /// Where the result JSON was written.
    pub result_bucket: Option<String>,
    /// Its key.
    pub result_key: Option<String>,
    /// A short summary of the run (answered_by, status, content length...).
    pub summary: Option<Value>,
    /// Media format (extension).
    pub media_format: Option<String>,
    /// Object size.
    pub size_bytes: Option<i64>,
    /// Object content type.
    pub content_type: Option<String>,
    /// Finish time.
    pub finished_ms: i64,
    /// Processing time.
    pub duration_ms: i64,
}

/// A job row as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Id.
    pub id: i64,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub object_key: String,
    /// Version id or ETag.
    pub object_version: String,
    /// `running`, `succeeded`, `failed`, `rejected`, `answered`.
    pub status: JobStatus,
    /// Claims so far.
    pub attempts: i64,
    /// Route project.
    pub project_name: Option<String>,
    /// Route key.
    pub route_key: Option<String>,
    /// Stable code on failure.
    pub error_code: Option<String>,
    /// Message on failure.
    pub error_message: Option<String>,
    /// Run trace id.
    pub trace_id: Option<String>,
    /// Audit row ids, comma-separated.
    pub audit_ids: Option<String>,
    /// Result location.
    pub result_bucket: Option<String>,
    /// Result key.
    pub result_key: Option<String>,
    /// Summary.
    pub summary: Option<Value>,
    /// Created (epoch ms).
    pub created_ms: i64,
    /// Processing time.
    pub duration_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_version_id_pins_exactly_and_an_etag_alone_pins_by_if_match() {
        let mut obj = super::ObjectRef {
            bucket: "b".into(),
            key: "k.wav".into(),
            size: None,
            etag: Some("\"abc\"".into()),
            version_id: Some("v1".into()),
        };
        let pin = super::ObjectPin::of(&obj);
        assert_eq!((pin.version_id, pin.if_match()), (Some("v1"), None));
        obj.version_id = Some(String::new());
        let pin = super::ObjectPin::of(&obj);
        assert_eq!(pin.version_id, None, "an empty version id is none");
        assert_eq!(pin.if_match().as_deref(), Some("\"abc\""), "quoted once");
        obj.etag = Some("abc".into());
        assert_eq!(
            super::ObjectPin::of(&obj).if_match().as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(super::ObjectPin::NONE.if_match(), None);
        // Two uploads to a suspended bucket share the `null` version: their ETags tell them apart.
        let key = |o: &super::ObjectRef, etag: &str| {
            super::JobKey::of(o, Some("null"), Some(etag)).version
        };
        obj.version_id = None;
        assert_ne!(key(&obj, "e1"), key(&obj, "e2"));
        obj.version_id = Some("v1".into());
        assert_eq!(
            key(&obj, "e1"),
            key(&obj, "e2"),
            "a real version id is the identity"
        );
        obj.version_id = Some("null".into());
        let pin = super::ObjectPin::of(&obj);
        assert_eq!(
            (pin.version_id, pin.if_match().as_deref()),
            (Some("null"), Some("\"abc\"")),
            "the null version is overwritten in place: its ETag pins too"
        );
    }

    use super::*;

    fn m(id: i64, bucket: &str, prefix: &str, suffix: &str) -> MediaMapping {
        MediaMapping {
            id,
            bucket: bucket.into(),
            key_prefix: prefix.into(),
            key_suffix: suffix.into(),
            project: "p".into(),
            route_key: format!("r{id}"),
            variables: None,
            active: true,
        }
    }

    #[test]
    fn the_most_specific_mapping_wins() {
        let maps = [
            m(1, "*", "", ""),
            m(2, "b", "calls/", ""),
            m(3, "b", "calls/vip/", ""),
            m(4, "b", "calls/", ".wav"),
        ];
        let pick = |k: &str| most_specific(&maps, "b", k).map(|m| m.id);
        assert_eq!(pick("calls/vip/x.mp3"), Some(3));
        assert_eq!(pick("calls/x.wav"), Some(4));
        assert_eq!(pick("calls/x.mp3"), Some(2));
        assert_eq!(pick("other/x.mp3"), Some(1));
        assert_eq!(
            most_specific(&maps[1..], "other-bucket", "calls/x.wav"),
            None
        );
        let mut inactive = m(5, "b", "calls/vip/deep/", "");
        inactive.active = false;
        let with = [maps[2].clone(), inactive];
        assert_eq!(
            most_specific(&with, "b", "calls/vip/deep/x").map(|m| m.id),
            Some(3)
        );
    }
}
