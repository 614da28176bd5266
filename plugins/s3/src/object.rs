//! Object info from S3's answers: user metadata as `x-amz-meta-*` (keys lower-cased by S3,
//! returned in key order), the host-measured sha256 kept under one reserved key.

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ObjectInfo};

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};

/// The user-metadata key holding the sha256 the host measured while writing.
pub const SHA256_KEY: &str = "stowage-sha256";

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

/// HEAD of a (checked) object path.
pub fn head(disk: &str, path: &str) -> Result<ObjectInfo, Error> {
    let s3 = s3()?;
    let op = Op { disk, path, what: "read the info of" };
    let out = run(s3.client.head_object().bucket(&s3.settings.bucket).key(s3.settings.key(path)).send())
        .map_err(|e| from_sdk(&op, e))?;
    Ok(info_from_head(path, out))
}
