//! Suspended writes (`wit/resumable.wit`): an upload session's multipart upload stays open
//! between requests. A suspend stores the part being filled as a tail object at
//! `.stowage-tails/<nonce>/<offset>` (the offset the tail begins at) and returns a token naming
//! the upload, its parts and the tail:
//!
//! ```text
//! s3v1 <nonce>
//! upload <upload id> <key>
//! stored <bytes in parts> tail <bytes in the tail>
//! part <number> <etag>          (one line per part)
//! ```
//!
//! Resuming reads the tail back into the part buffer; parts a crashed request stored after the
//! suspend are left out of the completion, and the next part gets a number higher than any
//! the upload holds (ListParts), so no part is ever replaced. A token grows by one line per
//! part (about 45 bytes: some 450 KB at 10,000 parts). A later suspend at the
//! same offset writes a tail that extends the earlier one (the bytes before the token's end
//! never change), so a token always reads the first bytes of its tail object. Tails go when the
//! upload completes, aborts or is discarded.

use aws_sdk_s3::types::CompletedPart;
use stowage_plugin_sdk::driver::stowage::storage::types::{Error, WriteOptions};
use stowage_plugin_sdk::parts::Resumed;
use stowage_plugin_sdk::path::ObjectPath;

use crate::client::{run, s3};
use crate::error::{Op, from_sdk};
use crate::object::TAILS;
use crate::tails::{remove_prefix, tail_path};
use crate::writer::{S3Parts, S3Writer, Upload};

/// A token, read.
struct Token {
    nonce: String,
    upload_id: String,
    key: String,
    stored: u64,
    tail: u64,
    parts: Vec<(i32, String)>,
}

fn invalid(what: &str) -> Error {
    Error::Io(format!("not an s3 resume token: {what}"))
}

impl Token {
    fn parse(token: &str) -> Result<Token, Error> {
        let mut lines = token.lines();
        let nonce = lines
            .next()
            .and_then(|l| l.strip_prefix("s3v1 "))
            .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| invalid("no `s3v1` line with a nonce"))?;
        let (upload_id, key) = lines
            .next()
            .and_then(|l| l.strip_prefix("upload "))
            .and_then(|l| l.split_once(' '))
            .filter(|(u, k)| !u.is_empty() && !k.is_empty())
            .ok_or_else(|| invalid("no upload id and key"))?;
        let counts: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
        let (stored, tail) = match counts.as_slice() {
            ["stored", stored, "tail", tail] => (
                stored.parse().map_err(|_| invalid("a bad stored count"))?,
                tail.parse().map_err(|_| invalid("a bad tail length"))?,
            ),
            _ => return Err(invalid("no `stored … tail …` line")),
        };
        let mut parts = Vec::new();
        for line in lines {
            let (number, etag) = line
                .strip_prefix("part ")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(n, e)| Some((n.parse::<i32>().ok()?, e)))
                .ok_or_else(|| invalid("a bad part line"))?;
            if parts.last().is_some_and(|(last, _)| *last >= number) || number < 1 {
                return Err(invalid("parts out of order"));
            }
            parts.push((number, etag.to_string()));
        }
        Ok(Token {
            nonce: nonce.to_string(),
            upload_id: upload_id.to_string(),
            key: key.to_string(),
            stored,
            tail,
            parts,
        })
    }
}

/// A writer continuing the suspended upload `token` names.
pub fn resume(disk: String, path: ObjectPath, options: WriteOptions, token: &str) -> Result<S3Writer, Error> {
    let token = Token::parse(token)?;
    let hooks = crate::writer::parts(disk, path, options, token.nonce.clone())?;
    if hooks.key != token.key {
        return Err(Error::Denied(format!("the resume token of `{}` belongs to another object's write", hooks.path)));
    }
    // The upload must still be there (a discarded one is not-found), and parts a lost request
    // stored after the token are never replaced: the next part gets a number none has had
    // (some servers, rclone's, refuse to replace a part with other bytes).
    let highest = highest_part(&hooks, &token)?;
    let tail = if token.tail == 0 { Vec::new() } else { read_tail(&hooks, &token)? };
    let parts = token
        .parts
        .iter()
        .map(|(number, etag)| CompletedPart::builder().part_number(*number).e_tag(etag).build())
        .collect();
    let resumed = Resumed {
        upload: Upload { id: token.upload_id, parts },
        parts: highest.max(token.parts.last().map_or(0, |(n, _)| *n)).unsigned_abs(),
        stored: token.stored,
        tail,
    };
    Ok(S3Writer::resumed(hooks, resumed))
}

/// The highest part number the upload holds; `not-found` if the upload is gone.
fn highest_part(hooks: &S3Parts, token: &Token) -> Result<i32, Error> {
    let s3 = s3()?;
    let op = hooks.op("resume the upload of");
    let mut highest = 0;
    let mut marker: Option<String> = None;
    loop {
        let page = run(s3
            .client
            .list_parts()
            .bucket(&s3.settings.bucket)
            .key(&token.key)
            .upload_id(&token.upload_id)
            .set_part_number_marker(marker.clone())
            .send())
        .map_err(|e| match from_sdk(&op, e) {
            Error::NotFound(_) => {
                Error::NotFound(format!("the suspended write of `{}` (its upload is gone)", hooks.path))
            }
            other => other,
        })?;
        highest = page.parts().iter().filter_map(|p| p.part_number()).fold(highest, i32::max);
        match (page.is_truncated(), page.next_part_number_marker()) {
            (Some(true), Some(next)) if marker.as_deref() != Some(next) => marker = Some(next.to_string()),
            _ => return Ok(highest),
        }
    }
}

/// The first `token.tail` bytes of the token's tail object.
fn read_tail(hooks: &S3Parts, token: &Token) -> Result<Vec<u8>, Error> {
    let s3 = s3()?;
    let op = hooks.op("read the unfinished part of");
    let got = run(s3
        .client
        .get_object()
        .bucket(&s3.settings.bucket)
        .key(s3.settings.key(&tail_path(&token.nonce, token.stored)))
        .range(format!("bytes=0-{}", token.tail - 1))
        .send())
    .map_err(|e| match from_sdk(&op, e) {
        Error::NotFound(_) => Error::NotFound(format!("the suspended write of `{}` (its tail is gone)", hooks.path)),
        other => other,
    })?;
    let bytes = run(got.body.collect()).map_err(|e| Error::Io(format!("reading a suspended write's tail: {e}")))?;
    let bytes = bytes.into_bytes().to_vec();
    if bytes.len() as u64 != token.tail {
        return Err(Error::Io(format!(
            "the suspended write of `{}` kept {} bytes of its last part, not the {} its token names",
            hooks.path,
            bytes.len(),
            token.tail
        )));
    }
    Ok(bytes)
}

/// Aborts the suspended upload `token` names and removes its tails.
pub fn discard(disk: &str, token: &str) -> Result<(), Error> {
    let token = Token::parse(token)?;
    let s3 = s3()?;
    let tails = format!("{TAILS}{}/", token.nonce);
    remove_prefix(disk, &tails);
    if !token.key.starts_with(s3.settings.prefix.as_str()) {
        return Err(invalid("its key is not under this disk's prefix"));
    }
    let op = Op { disk, path: &token.key, what: "discard the suspended upload of" };
    run(s3
        .client
        .abort_multipart_upload()
        .bucket(&s3.settings.bucket)
        .key(&token.key)
        .upload_id(&token.upload_id)
        .send())
    .map(|_| ())
    .map_err(|e| from_sdk(&op, e))
}
