//! Object storage behind the [`ObjectStore`] port: S3 and S3-compatible stores (Alibaba OSS, local
//! S3-protocol servers) through aws-sdk-s3, and a local directory for the embedded default.
//!
//! Invariants: objects are written without public ACLs (they inherit the bucket's private
//! default); presigned URLs are bearer credentials, so callers must keep their signatures out of
//! anything stored or logged; errors never include credentials. A pinned read sees the pinned
//! version or fails: S3 sends `versionId` (HEAD, GET, and signed into a presigned URL), and
//! `If-Match` with the ETag when no version (or the mutable `null` one) is pinned (a 412 is
//! [`ObjectError::Changed`]); the local directory keeps no versions, so it checks only the ETag
//! (its own: size and modification time), before and after reading the bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::{ObjectSettings, ObjectTarget};
use crate::ports::{BoxFuture, ObjectError, ObjectMeta, ObjectPin, ObjectStore};

/// Builds the configured store.
pub fn from_settings(s: &ObjectSettings) -> Box<dyn ObjectStore> {
    match &s.target {
        ObjectTarget::Local(dir) => Box::new(LocalStore::new(dir)),
        ObjectTarget::S3 {
            endpoint,
            region,
            credentials,
            path_style,
        } => Box::new(S3Store::new(
            endpoint.as_deref(),
            region,
            credentials.as_ref(),
            *path_style,
        )),
    }
}

/// The S3-protocol store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// A client for this endpoint (None = AWS), region, credentials (None = anonymous) and style.
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        credentials: Option<&(String, crate::Secret, Option<crate::Secret>)>,
        path_style: bool,
    ) -> Self {
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(aws_https())
            .region(Region::new(region.to_owned()))
            .force_path_style(path_style)
            // OSS and most S3-compatible servers reject the newer default integrity trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep);
        }
        if let Some(c) = credentials {
            b = b.credentials_provider(static_credentials(c));
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
        }
    }
}

/// The AWS SDKs' HTTPS client on ring-based rustls (their default brings aws-lc-rs, a second
/// crypto library); shared by the S3 and SQS clients.
pub(crate) fn aws_https() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Fixed credentials (id, secret, session token) for an AWS SDK client.
pub(crate) fn static_credentials(
    c: &(String, crate::Secret, Option<crate::Secret>),
) -> Credentials {
    let (id, secret, token) = c;
    Credentials::new(
        id,
        secret.expose(),
        token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "ai-runner",
    )
}

fn sdk_error<E, R>(e: aws_sdk_s3::error::SdkError<E, R>, bucket: &str, key: &str) -> ObjectError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
    aws_sdk_s3::error::SdkError<E, R>: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
    let status = match &e {
        SdkError::ServiceError(s) => Some(format!("{:?}", s.raw())),
        _ => None,
    };
    let code = e.code().unwrap_or("").to_owned();
    let (b, k) = (bucket.to_owned(), key.to_owned());
    // A failed `If-Match`: the key holds another object than the pinned one (a HEAD's 412 has
    // no body, so no code: its status says it).
    if code == "PreconditionFailed"
        || status
            .as_deref()
            .is_some_and(|s| s.contains("status: StatusCode(412)"))
    {
        return ObjectError::Changed { bucket: b, key: k };
    }
    if matches!(code.as_str(), "NoSuchKey" | "NotFound" | "NoSuchBucket")
        || status
            .as_deref()
            .is_some_and(|s| s.contains("status: StatusCode(404)"))
    {
        return ObjectError::NotFound { bucket: b, key: k };
    }
    if matches!(
        code.as_str(),
        "AccessDenied" | "Forbidden" | "SignatureDoesNotMatch" | "InvalidAccessKeyId"
    ) || status
        .as_deref()
        .is_some_and(|s| s.contains("status: StatusCode(403)"))
    {
        return ObjectError::Denied { bucket: b, key: k };
    }
    let detail = format!(
        "{}: {}",
        if code.is_empty() { "error" } else { &code },
        crate::error::chain(&e)
    );
    // A request the store refuses as such (4xx other than 403/404/429) fails the same way every
    // time: not retried forever.
    if matches!(
        code.as_str(),
        "InvalidArgument"
            | "InvalidBucketName"
            | "KeyTooLongError"
            | "InvalidObjectName"
            | "MethodNotAllowed"
            | "InvalidRequest"
            | "MalformedXML"
            | "EntityTooLarge"
    ) || status.as_deref().is_some_and(|s| {
        ["400", "405", "411", "413", "414"]
            .iter()
            .any(|c| s.contains(&format!("status: StatusCode({c})")))
    }) {
        return ObjectError::Invalid(detail);
    }
    ObjectError::Unavailable(detail)
}

impl ObjectStore for S3Store {
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<ObjectMeta, ObjectError>> {
        Box::pin(async move {
            let out = self
                .client
                .head_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(pin.version_id.map(str::to_owned))
                .set_if_match(pin.if_match())
                .send()
                .await
                .map_err(|e| sdk_error(e, bucket, key))?;
            Ok(ObjectMeta {
                size: out
                    .content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
                content_type: out.content_type().map(str::to_owned),
                etag: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
                version_id: out.version_id().map(str::to_owned),
                duration_seconds: out
                    .metadata()
                    .and_then(|m| m.get("duration-seconds"))
                    .and_then(|d| d.trim().parse::<f64>().ok())
                    .filter(|d| d.is_finite() && *d >= 0.0),
            })
        })
    }

    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<Vec<u8>, ObjectError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(pin.version_id.map(str::to_owned))
                .set_if_match(pin.if_match())
                .send()
                .await
                .map_err(|e| sdk_error(e, bucket, key))?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }

    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| sdk_error(e, bucket, key))?;
            Ok(())
        })
    }

    fn presign_get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
        expires: Duration,
    ) -> BoxFuture<'a, Result<String, ObjectError>> {
        Box::pin(async move {
            let cfg = PresigningConfig::expires_in(expires)
                .map_err(|e| ObjectError::Unavailable(e.to_string()))?;
            // The provider's fetch sends no `If-Match`: an ETag pin is checked now, and an
            // overwrite between this check and that fetch is not seen (README: the upload
            // pipeline). A version id is signed into the URL and holds for its whole life (but
            // for the `null` version, which is also checked here).
            if pin.if_match().is_some() {
                self.head(bucket, key, pin).await?;
            }
            let req = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(pin.version_id.map(str::to_owned))
                .presigned(cfg)
                .await
                .map_err(|e| sdk_error(e, bucket, key))?;
            Ok(req.uri().to_owned())
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error(e, bucket, key))
        })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            while keys.len() < max {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .max_keys(i32::try_from((max - keys.len()).min(1000)).unwrap_or(1000))
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, bucket, prefix))?;
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            keys.truncate(max);
            Ok(keys)
        })
    }
}

/// A directory standing in for buckets (`<root>/<bucket>/<key>`), for the embedded default.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        let bad = |s: &str| {
            s.is_empty() || s.split('/').any(|p| p == ".." || p == ".") || s.starts_with('/')
        };
        if bad(bucket) || bucket.contains('/') || bad(key) {
            return Err(ObjectError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok(self.root.join(bucket).join(key))
    }
}

/// The local store's ETag: size and modification time (it keeps no content hash).
fn local_etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", meta.len(), mtime)
}

/// Refuses a file that is not the pinned ETag (a version id cannot be checked: no versions).
fn check_pin(
    meta: &std::fs::Metadata,
    pin: ObjectPin<'_>,
    bucket: &str,
    key: &str,
) -> Result<(), ObjectError> {
    match pin.etag {
        Some(e) if e.trim_matches('"') != local_etag(meta) => Err(ObjectError::Changed {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn io_error(e: std::io::Error, bucket: &str, key: &str) -> ObjectError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ObjectError::NotFound {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        std::io::ErrorKind::PermissionDenied => ObjectError::Denied {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        _ => ObjectError::Unavailable(e.to_string()),
    }
}

/// A content type from a key's extension (local store only; S3 stores their own).
pub fn guess_content_type(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "wav" => "audio/wav",
        "mp3" | "mpga" | "mpeg" => "audio/mpeg",
        "m4a" | "mp4" => "audio/mp4",
        "aac" => "audio/aac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "flac" => "audio/flac",
        "webm" => "audio/webm",
        "amr" => "audio/amr",
        "json" => "application/json",
        "txt" => "text/plain",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => return None,
    })
}

impl ObjectStore for LocalStore {
    fn head<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<ObjectMeta, ObjectError>> {
        Box::pin(async move {
            let path = self.path(bucket, key)?;
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| io_error(e, bucket, key))?;
            if !meta.is_file() {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                });
            }
            check_pin(&meta, pin, bucket, key)?;
            Ok(ObjectMeta {
                size: meta.len(),
                content_type: guess_content_type(key).map(str::to_owned),
                etag: Some(local_etag(&meta)),
                version_id: None,
                duration_seconds: None,
            })
        })
    }

    fn get<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        pin: ObjectPin<'a>,
    ) -> BoxFuture<'a, Result<Vec<u8>, ObjectError>> {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let path = self.path(bucket, key)?;
            let io = |e| io_error(e, bucket, key);
            if pin.etag.is_none() {
                return tokio::fs::read(&path).await.map_err(io);
            }
            // The open file is checked before and after reading: a file renamed over the key
            // leaves this one whole; one rewritten in place changes its modification time.
            let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
            check_pin(&file.metadata().await.map_err(io)?, pin, bucket, key)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).await.map_err(io)?;
            check_pin(&file.metadata().await.map_err(io)?, pin, bucket, key)?;
            Ok(bytes)
        })
    }

    fn put<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Vec<u8>,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            let path = self.path(bucket, key)?;
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| io_error(e, bucket, key))?;
            }
            tokio::fs::write(&path, body)
                .await
                .map_err(|e| io_error(e, bucket, key))
        })
    }

    fn presign_get<'a>(
        &'a self,
        _bucket: &'a str,
        _key: &'a str,
        _pin: ObjectPin<'a>,
        _expires: Duration,
    ) -> BoxFuture<'a, Result<String, ObjectError>> {
        Box::pin(async {
            Err(ObjectError::Unsupported(
                "a local directory store cannot presign URLs; use MEDIA_MODE=inline or an S3-protocol store",
            ))
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move {
            let path = self.path(bucket, key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(e, bucket, key)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(async move {
            // A key under the bucket checks the bucket name (no escapes); its parent is the bucket.
            let root = self
                .path(bucket, "k")?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let mut keys = Vec::new();
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let mut rd = match tokio::fs::read_dir(&dir).await {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(e, bucket, prefix)),
                };
                while let Some(entry) = rd
                    .next_entry()
                    .await
                    .map_err(|e| io_error(e, bucket, prefix))?
                {
                    let path = entry.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel
                            .to_string_lossy()
                            .replace(std::path::MAIN_SEPARATOR, "/");
                        if key.starts_with(prefix) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            keys.truncate(max);
            Ok(keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_store_round_trips_and_refuses_path_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("b", "a/x.wav", b"RIFF".to_vec(), "audio/wav")
            .await
            .unwrap();
        assert_eq!(
            s.get("b", "a/x.wav", ObjectPin::NONE).await.unwrap(),
            b"RIFF"
        );
        let m = s.head("b", "a/x.wav", ObjectPin::NONE).await.unwrap();
        assert_eq!((m.size, m.content_type.as_deref()), (4, Some("audio/wav")));
        assert_eq!(
            s.head("b", "../b/a/x.wav", ObjectPin::NONE)
                .await
                .unwrap_err()
                .code(),
            "OBJECT_NOT_FOUND"
        );
        assert_eq!(
            s.get("b", "missing", ObjectPin::NONE)
                .await
                .unwrap_err()
                .code(),
            "OBJECT_NOT_FOUND"
        );
        assert_eq!(
            s.presign_get("b", "a/x.wav", ObjectPin::NONE, Duration::from_secs(1))
                .await
                .unwrap_err()
                .code(),
            "OBJECT_OPERATION_UNSUPPORTED"
        );
    }

    #[tokio::test]
    async fn the_local_store_refuses_a_file_that_is_no_longer_the_pinned_etag() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("b", "k.wav", b"first".to_vec(), "audio/wav")
            .await
            .unwrap();
        let first = s.head("b", "k.wav", ObjectPin::NONE).await.unwrap().etag;
        let pin = ObjectPin {
            version_id: None,
            etag: first.as_deref(),
        };
        assert_eq!(s.get("b", "k.wav", pin).await.unwrap(), b"first");
        // Another length: the ETag differs whatever the clock's resolution.
        s.put("b", "k.wav", b"second!".to_vec(), "audio/wav")
            .await
            .unwrap();
        assert_eq!(
            s.head("b", "k.wav", pin).await.unwrap_err().code(),
            "OBJECT_CHANGED"
        );
        assert_eq!(
            s.get("b", "k.wav", pin).await.unwrap_err().code(),
            "OBJECT_CHANGED"
        );
        // It keeps no versions: a version id alone cannot be checked and reads the file.
        let version_only = ObjectPin {
            version_id: Some("v1"),
            etag: None,
        };
        assert_eq!(s.get("b", "k.wav", version_only).await.unwrap(), b"second!");
    }
}
