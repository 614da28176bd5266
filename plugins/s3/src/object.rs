//! Object info from S3's answers: user metadata as `x-amz-meta-*` (keys lower-cased by S3,
//! returned in key order), the host-measured sha256 kept under one reserved key.
//!
//! A single PUT carries the sha256 in that key. A multipart upload cannot (its metadata is
//! set when it starts, before the digest is known): its key holds [`IN_COMPANION`] and a
//! nonce drawn for that upload, and after the upload completes the writer puts a small
//! companion object (at [`companion_path`]) holding the nonce and the sha256. A companion is
//! believed only for the object whose metadata names its nonce, so an overwritten object
//! never shows an earlier digest. Design and cost: README.md.

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ObjectInfo};

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};

/// The user-metadata key holding the sha256 the host measured while writing.
pub const SHA256_KEY: &str = "stowage-sha256";

/// [`SHA256_KEY`]'s value on a multipart object, before a space and its nonce: the sha256
/// is in its companion.
pub const IN_COMPANION: &str = "companion";

/// Where companions live, under the disk's prefix: paths there are reserved (no object may be
/// written, read or listed there).
pub const COMPANIONS: &str = ".stowage-sha256/";

/// Where a suspended write keeps the bytes of its unfinished part (`resume.rs`), under the
/// disk's prefix; reserved like [`COMPANIONS`].
pub const TAILS: &str = ".stowage-tails/";

/// Whether `path` is reserved for companions or suspended writes' tails.
pub fn reserved(path: &str) -> bool {
    path.starts_with(COMPANIONS) || path.starts_with(TAILS)
}

/// The path of the companion of the object at `path`.
pub fn companion_path(path: &str) -> String {
    format!("{COMPANIONS}{path}")
}

/// A companion's body: the nonce of the upload it belongs to, a space, the sha256.
pub fn companion_body(nonce: &str, sha256: &str) -> String {
    format!("{nonce} {sha256}")
}

/// The sha256 in `body` if it names `nonce`.
fn sha256_for(body: &str, nonce: &str) -> Option<String> {
    let (named, sha256) = body.trim().split_once(' ')?;
    (named == nonce && sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha256.to_string())
}

/// The nonce in an object's [`SHA256_KEY`] value, if it says the digest is in a companion.
pub fn companion_nonce(sha256: Option<&str>) -> Option<&str> {
    sha256?.strip_prefix(IN_COMPANION)?.strip_prefix(' ')
}

/// `info` with its sha256 read from the companion when the object's metadata says it is
/// there; none when the companion is missing or names another ETag (an overwrite, or the
/// writer died before putting it).
pub fn resolve(disk: &str, info: ObjectInfo) -> Result<ObjectInfo, Error> {
    let Some(nonce) = companion_nonce(info.sha256.as_deref()).map(str::to_string) else {
        return Ok(info);
    };
    let s3 = s3()?;
    let op = Op { disk, path: &info.path, what: "read the sha256 of" };
    let key = s3.settings.key(&companion_path(&info.path));
    let body = match run(s3.client.get_object().bucket(&s3.settings.bucket).key(key).send()) {
        Ok(out) => run(out.body.collect())
            .map_err(|e| {
                crate::error::unavailable(format!("disk `{disk}`: the sha256 of `{}` was cut short: {e}", info.path))
            })?
            .into_bytes(),
        Err(e) => match from_sdk(&op, e) {
            Error::NotFound(_) => return Ok(ObjectInfo { sha256: None, ..info }),
            other => return Err(other),
        },
    };
    let sha256 = sha256_for(&String::from_utf8_lossy(&body), &nonce);
    Ok(ObjectInfo { sha256, ..info })
}

/// Metadata as S3 gives it back: keys lower-cased, in key order (so every answer agrees).
pub fn sorted(metadata: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut metadata: Vec<(String, String)> = metadata.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    metadata.sort();
    metadata
}

fn millis(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<u64> {
    t.and_then(|t| t.to_millis().ok()).and_then(|ms| u64::try_from(ms).ok())
}

pub fn info_from_head(path: &str, head: HeadObjectOutput) -> ObjectInfo {
    let mut metadata: Vec<(String, String)> = head.metadata.unwrap_or_default().into_iter().collect();
    let sha256 = metadata.iter().position(|(k, _)| k == SHA256_KEY).map(|i| metadata.swap_remove(i).1);
    ObjectInfo {
        path: path.to_string(),
        size: head.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        sha256,
        content_type: head.content_type,
        modified: millis(head.last_modified.as_ref()),
        etag: head.e_tag,
        metadata: sorted(metadata),
    }
}

/// Object info from the headers of a GET, and the offset of the first byte of its body
/// (`partial`: a 206, whose `content-range` holds both; a 200 may carry one too).
pub fn info_from_headers(path: &str, headers: &[(String, Vec<u8>)], partial: bool) -> Option<(ObjectInfo, u64)> {
    let text = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    // A range answer says where its bytes start in `content-range` (`bytes START-END/SIZE`).
    // Some servers (rclone's `serve s3`) answer a range with 200, not 206, and the header.
    let range = text("content-range");
    let (size, start) = match range {
        Some(range) => {
            let (span, size) = range.strip_prefix("bytes ")?.split_once('/')?;
            (size.parse().ok()?, span.split_once('-')?.0.parse().ok()?)
        }
        None if partial => return None,
        None => (text("content-length")?.parse().ok()?, 0),
    };
    let mut metadata: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            let key = key.strip_prefix("x-amz-meta-")?.to_string();
            Some((key, std::str::from_utf8(v).ok()?.to_string()))
        })
        .collect();
    let sha256 = metadata.iter().position(|(k, _)| k == SHA256_KEY).map(|i| metadata.swap_remove(i).1);
    let modified = text("last-modified").and_then(|t| {
        aws_sdk_s3::primitives::DateTime::from_str(&t, aws_sdk_s3::primitives::DateTimeFormat::HttpDate).ok()
    });
    let info = ObjectInfo {
        path: path.to_string(),
        size,
        sha256,
        content_type: text("content-type"),
        modified: millis(modified.as_ref()),
        etag: text("etag"),
        metadata: sorted(metadata),
    };
    Some((info, start))
}

pub fn list_item(path: &str, object: &aws_sdk_s3::types::Object) -> ObjectInfo {
    ObjectInfo {
        path: path.to_string(),
        size: object.size.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        sha256: None,
        content_type: None,
        modified: millis(object.last_modified.as_ref()),
        etag: object.e_tag.clone(),
        metadata: Vec::new(),
    }
}

/// HEAD of a (checked) object path, its sha256 read from the companion if it is there.
pub fn head(disk: &str, path: &str) -> Result<ObjectInfo, Error> {
    resolve(disk, head_raw(disk, path)?)
}

/// HEAD of a (checked) object path; a multipart object's sha256 is [`IN_COMPANION`].
pub fn head_raw(disk: &str, path: &str) -> Result<ObjectInfo, Error> {
    let s3 = s3()?;
    let op = Op { disk, path, what: "read the info of" };
    let out = run(s3.client.head_object().bucket(&s3.settings.bucket).key(s3.settings.key(path)).send())
        .map_err(|e| from_sdk(&op, e))?;
    Ok(info_from_head(path, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_companion_is_believed_only_for_the_upload_it_names() {
        let sha = "ab".repeat(32);
        let body = companion_body("n1", &sha);
        assert_eq!(sha256_for(&body, "n1"), Some(sha.clone()));
        assert_eq!(sha256_for(&body, "n2"), None, "another upload's companion");
        assert_eq!(sha256_for("n1 not-a-digest", "n1"), None);
        assert_eq!(sha256_for("", "n1"), None);
        assert_eq!(companion_nonce(Some("companion n1")), Some("n1"));
        assert_eq!(companion_nonce(Some(&sha)), None);
        assert_eq!(companion_nonce(Some("companion")), None);
        assert!(reserved(&companion_path("a/b.bin")) && !reserved("a/.stowage-sha256/b"));
    }
}
