//! Unfinished multipart uploads under the disk's prefix: what a write leaves in S3 when its
//! host dies before it could abort. `list-temps` reports them (S3 keeps no owner tag, so the
//! host judges them by age), and `remove-temp` aborts one, which frees its parts.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, TempObject, TempPage};

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};

/// The id of an upload: `<upload id> <key>` (upload ids hold no spaces; keys may).
fn id(upload_id: &str, key: &str) -> String {
    format!("{upload_id} {key}")
}

/// Unfinished uploads after `cursor` (the last id of the previous page).
pub fn list(disk: &str, cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
    let s3 = s3()?;
    let (upload_marker, key_marker) = match cursor.as_deref().and_then(|c| c.split_once(' ')) {
        Some((u, k)) => (Some(u.to_string()), Some(k.to_string())),
        None => (None, None),
    };
    let op = Op { disk, path: "", what: "list the unfinished uploads of" };
    let page = match run(s3
        .client
        .list_multipart_uploads()
        .bucket(&s3.settings.bucket)
        .prefix(&s3.settings.prefix)
        .set_key_marker(key_marker)
        .set_upload_id_marker(upload_marker)
        .max_uploads(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
        .send())
    {
        Ok(page) => page,
        Err(e) => match from_sdk(&op, e) {
            // A listing names no object: some servers (rclone's `serve s3`) answer "no such
            // upload" when the bucket has none. A missing bucket is an i/o error, not this.
            Error::NotFound(_) => return Ok(TempPage { items: Vec::new(), next_cursor: None }),
            other => return Err(other),
        },
    };
    let items: Vec<TempObject> = page
        .uploads()
        .iter()
        .filter_map(|u| {
            let (key, upload) = (u.key()?, u.upload_id()?);
            Some(TempObject {
                id: id(upload, key),
                owner: None,
                size: None,
                modified: u.initiated().and_then(|t| u64::try_from(t.to_millis().ok()?).ok()),
            })
        })
        .collect();
    let next_cursor = match (page.is_truncated(), page.next_upload_id_marker(), page.next_key_marker()) {
        (Some(true), Some(u), Some(k)) => Some(id(u, k)),
        _ => None,
    };
    Ok(TempPage { items, next_cursor })
}

/// Aborts the upload `temp` names.
pub fn remove(disk: &str, temp: &str) -> Result<(), Error> {
    let s3 = s3()?;
    let Some((upload_id, key)) = temp.split_once(' ').filter(|(_, k)| k.starts_with(s3.settings.prefix.as_str()))
    else {
        return Err(Error::InvalidPath(format!("`{temp}` is not an unfinished upload of this disk")));
    };
    let op = Op { disk, path: key, what: "abort the unfinished upload of" };
    match run(s3.client.abort_multipart_upload().bucket(&s3.settings.bucket).key(key).upload_id(upload_id).send()) {
        Ok(_) => Ok(()),
        Err(e) => Err(match from_sdk(&op, e) {
            // S3 answers NoSuchUpload for one finished or aborted meanwhile.
            Error::NotFound(_) => Error::NotFound(temp.to_string()),
            other => other,
        }),
    }
}
