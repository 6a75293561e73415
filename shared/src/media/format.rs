//! What an uploaded object is to a model: its audio format (by extension, type and size), a WAV
//! file's duration, and the media variables a route is given for it (a presigned `MEDIA_URL` or
//! the inline `MEDIA_DATA`), read at the version its event named.
//!
//! Invariants: an object that is not audio within `MEDIA_MAX_BYTES` is refused with its code
//! before anything is read; what must not be stored (a URL's signature, inline data) is named in
//! `redact`.

use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::code::Code;
use crate::config::ObjectSettings;
use crate::model::media::ObjectRef;
use crate::ports::{ObjectError, ObjectPin, ObjectStore};

/// Audio extensions accepted, with the `format` name sent to the model.
pub const AUDIO_FORMATS: &[(&str, &str)] = &[
    ("wav", "wav"),
    ("mp3", "mp3"),
    ("mpga", "mp3"),
    ("mpeg", "mp3"),
    ("m4a", "m4a"),
    ("mp4", "mp4"),
    ("aac", "aac"),
    ("ogg", "ogg"),
    ("oga", "ogg"),
    ("opus", "opus"),
    ("flac", "flac"),
    ("webm", "webm"),
    ("amr", "amr"),
];

/// Sets an object's media variables, as the upload pipeline and evaluation cases pass them:
/// `MEDIA_FORMAT`, `MEDIA_KEY`, `MEDIA_BUCKET`, `MEDIA_SIZE`, and a presigned `MEDIA_URL` (or,
/// `inline`, the base64 `MEDIA_DATA`). What must not be stored (the URL's signature, the data)
/// is added to `redact`. Both read `obj`'s version and ETag ([`ObjectPin::of`]). Returns the
/// recording's length in seconds when the bytes read say it (an inline WAV file).
#[allow(clippy::too_many_arguments)]
pub async fn media_vars(
    objects: &dyn ObjectStore,
    cfg: &ObjectSettings,
    obj: &ObjectRef,
    size: u64,
    format: &str,
    inline: bool,
    vars: &mut Map<String, Value>,
    redact: &mut Vec<String>,
) -> Result<Option<f64>, ObjectError> {
    vars.insert("MEDIA_FORMAT".into(), json!(format));
    vars.insert("MEDIA_KEY".into(), json!(obj.key));
    vars.insert("MEDIA_BUCKET".into(), json!(obj.bucket));
    vars.insert("MEDIA_SIZE".into(), json!(size));
    if inline {
        let bytes = objects
            .get(&obj.bucket, &obj.key, ObjectPin::of(obj))
            .await?;
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        redact.push(data.clone());
        vars.insert("MEDIA_DATA".into(), json!(data));
        return Ok(wav_seconds(&bytes));
    } else {
        let expiry = cfg.media_url_expiry.max(Duration::from_secs(60));
        let url = objects
            .presign_get(&obj.bucket, &obj.key, ObjectPin::of(obj), expiry)
            .await?;
        if let Some((_, query)) = url.split_once('?') {
            redact.push(query.to_owned());
        }
        vars.insert("MEDIA_URL".into(), json!(url));
    }
    Ok(None)
}

/// The length of a WAV recording in seconds, from its RIFF header (`None`: not a WAV file, or
/// its header does not say): the data chunk's size over the format chunk's byte rate.
pub fn wav_seconds(bytes: &[u8]) -> Option<f64> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let le32 = |at: usize| -> Option<u32> {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    let (mut at, mut byte_rate) = (12usize, None);
    while at + 8 <= bytes.len() {
        let size = le32(at + 4)? as usize;
        match &bytes[at..at + 4] {
            b"fmt " => byte_rate = le32(at + 16).filter(|r| *r > 0),
            b"data" => {
                // A streamed WAV may say 0 or 0xFFFFFFFF: then the rest of the file is data.
                let data = if size == 0 || size == u32::MAX as usize {
                    bytes.len().saturating_sub(at + 8)
                } else {
                    size.min(bytes.len().saturating_sub(at + 8))
                };
                return byte_rate.map(|r| data as f64 / f64::from(r));
            }
            _ => {}
        }
        at = at.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// The format name for a key, if its extension is accepted audio.
pub fn audio_format(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.')?.1.to_ascii_lowercase();
    AUDIO_FORMATS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, f)| *f)
}

/// Accepts or rejects an object as audio: `(format)` or `(code, message)`.
pub fn check_media(
    key: &str,
    content_type: Option<&str>,
    size: u64,
    max: u64,
) -> Result<&'static str, (Code, String)> {
    let Some(format) = audio_format(key) else {
        return Err((
            Code::MediaUnsupported,
            format!("{key:?} does not have an accepted audio extension"),
        ));
    };
    if let Some(ct) =
        content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        && !(ct.starts_with("audio/")
            || ct == "video/webm"
            || ct == "video/mp4"
            || ct == "application/octet-stream"
            || ct == "binary/octet-stream"
            || ct.is_empty())
    {
        return Err((
            Code::MediaUnsupported,
            format!("content type {ct:?} is not audio"),
        ));
    }
    if size > max {
        return Err((
            Code::MediaTooLarge,
            format!("{size} bytes is over the {max}-byte limit (MEDIA_MAX_BYTES)"),
        ));
    }
    if size == 0 {
        return Err((Code::MediaUnsupported, "the object is empty".to_owned()));
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_audio_within_the_limit_is_accepted() {
        assert_eq!(
            check_media("a/b.WAV", Some("audio/wav"), 10, 100),
            Ok("wav")
        );
        assert_eq!(check_media("a/b.mp3", None, 10, 100), Ok("mp3"));
        assert_eq!(
            check_media("a/b.m4a", Some("application/octet-stream"), 10, 100),
            Ok("m4a")
        );
        assert_eq!(
            check_media("a/b.png", Some("image/png"), 10, 100)
                .unwrap_err()
                .0,
            Code::MediaUnsupported
        );
        assert_eq!(
            check_media("a/b.wav", Some("text/html"), 10, 100)
                .unwrap_err()
                .0,
            Code::MediaUnsupported
        );
        assert_eq!(
            check_media("a/b.wav", Some("audio/wav"), 101, 100)
                .unwrap_err()
                .0,
            Code::MediaTooLarge
        );
        assert_eq!(
            check_media("a/b.wav", Some("audio/wav"), 0, 100)
                .unwrap_err()
                .0,
            Code::MediaUnsupported
        );
        assert_eq!(
            check_media("noext", None, 1, 100).unwrap_err().0,
            Code::MediaUnsupported
        );
    }
}
