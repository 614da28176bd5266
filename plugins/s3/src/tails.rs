//! What a suspended write keeps besides its multipart upload (`resume.rs` says why): the
//! bytes of the part being filled, as tail objects under `.stowage-tails/<nonce>/`, and the
//! token naming the upload, its parts and the tail. The writer makes both at a suspend and
//! removes the tails when the upload completes or aborts.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedPart;
use stowage_plugin_sdk::Describe;
use stowage_plugin_sdk::driver::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::parts::Part;

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};
use crate::object::TAILS;

/// A suspended write as its token names it.
pub struct Suspending<'a> {
    pub key: &'a str,
    pub nonce: &'a str,
    pub upload_id: &'a str,
    pub parts: &'a [CompletedPart],
}

/// The path (under the disk's prefix) of the tail that begins at `offset`.
pub(crate) fn tail_path(nonce: &str, offset: u64) -> String {
    format!("{TAILS}{nonce}/{offset:020}")
}

/// Stores `tail` and returns the token of the upload as it stands.
pub fn suspend(op: &Op<'_>, w: &Suspending<'_>, tail: Part<&[u8]>) -> Result<String, Error> {
    if w.upload_id.contains(['\n', ' ']) {
        return Err(Error::Io("the S3 server gave an upload id that cannot be resumed (it holds a newline)".into()));
    }
    if !tail.bytes.is_empty() {
        let s3 = s3()?;
        run(s3
            .client
            .put_object()
            .bucket(&s3.settings.bucket)
            .key(s3.settings.key(&tail_path(w.nonce, tail.offset)))
            .body(ByteStream::from(tail.bytes.to_vec()))
            .customize()
            .disable_payload_signing()
            .send())
        .map_err(|e| from_sdk(op, e))?;
    }
    let mut token =
        format!("s3v1 {}\nupload {} {}\nstored {} tail {}", w.nonce, w.upload_id, w.key, tail.offset, tail.bytes.len());
    for part in w.parts {
        let etag = part.e_tag().unwrap_or_default();
        if etag.contains('\n') {
            return Err(Error::Io("the S3 server gave a part an ETag that cannot be resumed".into()));
        }
        token.push_str(&format!("\npart {} {etag}", part.part_number().unwrap_or_default()));
    }
    Ok(token)
}

/// Removes the tails a write kept (once it completed or was aborted). A failure is logged:
/// the object is stored (or not) either way.
pub fn remove_tails(disk: &str, nonce: &str) {
    remove_prefix(disk, &format!("{TAILS}{nonce}/"));
}

/// Removes every object under `prefix` (a suspended write's tails: a handful).
pub(crate) fn remove_prefix(disk: &str, prefix: &str) {
    let removed = s3().and_then(|s3| {
        let op = Op { disk, path: prefix, what: "remove the tails of" };
        let mut next: Option<String> = None;
        loop {
            let page = run(s3
                .client
                .list_objects_v2()
                .bucket(&s3.settings.bucket)
                .prefix(s3.settings.key(prefix))
                .set_continuation_token(next.take())
                .send())
            .map_err(|e| from_sdk(&op, e))?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                run(s3.client.delete_object().bucket(&s3.settings.bucket).key(key).send())
                    .map_err(|e| from_sdk(&op, e))?;
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => next = Some(token.to_string()),
                _ => return Ok(()),
            }
        }
    });
    if let Err(e) = removed {
        log(Level::Warn, &format!("disk `{disk}`: a suspended write's tails were not removed: {}", Describe(&e)));
    }
}
