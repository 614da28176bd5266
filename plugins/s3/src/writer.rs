//! Streaming writes with bounded memory: bytes gather in one part-sized buffer. An object
//! that fits in it is one PUT at `finish`; a larger one becomes a multipart upload, a part
//! sent each time the buffer fills. Nothing is visible until `finish` completes the upload;
//! `abort`, a failure or dropping the writer aborts it, so no parts are left behind.
//!
//! Bodies are sent unsigned (`UNSIGNED-PAYLOAD`; headers stay signed): SigV4 would otherwise
//! hash every part inside the sandbox, where sha256 runs without CPU extensions, while the
//! host already measures the object's sha256 and TLS protects the bytes in transit.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use stowage_plugin_sdk::Describe;
use stowage_plugin_sdk::driver::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::driver::stowage::storage::types::{Digest, Error, ObjectInfo, WriteOptions};
use stowage_plugin_sdk::parts::{Part, PartHooks, PartWriter};
use stowage_plugin_sdk::path::ObjectPath;

use crate::attempts::Attempts;
use crate::client::{run, s3};
use crate::error::{Op, from_sdk};
use crate::object::{IN_COMPANION, SHA256_KEY, companion_body, companion_path};

/// A multipart upload in progress.
pub struct Upload {
    pub(crate) id: String,
    pub(crate) parts: Vec<CompletedPart>,
}

/// The driver's writer.
pub type S3Writer = PartWriter<S3Parts>;

/// How an object reaches the bucket: one PUT, or a multipart upload.
pub struct S3Parts {
    pub(crate) disk: String,
    pub(crate) path: ObjectPath,
    pub(crate) key: String,
    options: WriteOptions,
    part_size: usize,
    /// Names this write's companion, if it becomes a multipart upload (see `object`), and
    /// its suspended tails (`resume`).
    pub(crate) nonce: String,
}

/// A writer for `path` on `disk`.
pub fn writer(disk: String, path: ObjectPath, options: WriteOptions) -> Result<S3Writer, Error> {
    let random = stowage_plugin_sdk::wasip2::random::random::get_random_u64;
    let nonce = format!("{:016x}{:016x}", random(), random());
    Ok(PartWriter::new(parts(disk, path, options, nonce)?))
}

/// How a write of `path` on `disk` named `nonce` reaches the bucket.
pub(crate) fn parts(disk: String, path: ObjectPath, options: WriteOptions, nonce: String) -> Result<S3Parts, Error> {
    let s3 = s3()?;
    if options.metadata.iter().any(|(k, _)| k.eq_ignore_ascii_case(SHA256_KEY)) {
        return Err(Error::Unsupported(format!(
            "metadata key `{SHA256_KEY}` is reserved for the sha256 the host measures"
        )));
    }
    let key = s3.settings.key(&path);
    Ok(S3Parts { disk, path, key, options, part_size: s3.settings.part_size, nonce })
}

impl S3Parts {
    pub(crate) fn op(&self, what: &'static str) -> Op<'_> {
        Op { disk: &self.disk, path: &self.path, what }
    }

    /// The object's metadata, with `sha256` (the digest, or [`IN_COMPANION`]) under its key.
    fn metadata(&self, sha256: &str) -> HashMap<String, String> {
        let mut m: HashMap<String, String> =
            self.options.metadata.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        m.insert(SHA256_KEY.into(), sha256.into());
        m
    }

    /// Puts the companion holding this write's nonce and digest (see `object`). A failure
    /// leaves the object without a retrievable sha256, which is logged, not the write's
    /// failure: the object is complete and the caller has its digest.
    fn put_companion(&self, digest: &Digest) {
        let put = s3().and_then(|s3| {
            run(s3
                .client
                .put_object()
                .bucket(&s3.settings.bucket)
                .key(s3.settings.key(&companion_path(&self.path)))
                .content_type("text/plain")
                .body(ByteStream::from(companion_body(&self.nonce, &digest.sha256).into_bytes()))
                .send())
            .map_err(|e| from_sdk(&self.op("store the sha256 of"), e))
        });
        if let Err(e) = put {
            log(Level::Warn, &format!("disk `{}`: the sha256 of a multipart object was not stored: {e:?}", self.disk));
        }
    }

    /// A create-only write that the server refused (412) on the SDK's retry is ambiguous:
    /// the earlier attempt may have stored the object and lost only its answer. It is this
    /// write's object if the stored object has its size and says `marked` (this write's
    /// sha256, or a multipart upload's companion mark with this write's nonce); any other
    /// failure, or another object, stays `error`.
    fn settle(&self, error: Error, attempts: &Attempts, digest: &Digest, marked: &str) -> Result<ObjectInfo, Error> {
        if !(self.options.create_only && matches!(error, Error::AlreadyExists(_)) && attempts.retried()) {
            return Err(error);
        }
        match crate::object::head_raw(&self.disk, &self.path) {
            Ok(stored) if stored.size == digest.size && stored.sha256.as_deref() == Some(marked) => {
                log(Level::Info, &format!("disk `{}`: a create-only write refused on a retry had landed", self.disk));
                Ok(self.info(digest, stored.etag))
            }
            _ => Err(error),
        }
    }

    fn create_only(&self) -> Option<String> {
        self.options.create_only.then(|| "*".to_string())
    }

    fn info(&self, digest: &Digest, etag: Option<String>) -> ObjectInfo {
        ObjectInfo {
            path: self.path.to_string(),
            size: digest.size,
            sha256: Some(digest.sha256.clone()),
            content_type: self.options.content_type.clone(),
            modified: None,
            etag,
            metadata: crate::object::sorted(self.options.metadata.clone()),
        }
    }
}

impl PartHooks for S3Parts {
    type Upload = Upload;

    fn part_size(&self) -> usize {
        self.part_size
    }

    fn write_once(&self, bytes: Vec<u8>, digest: &Digest) -> Result<ObjectInfo, Error> {
        let s3 = s3()?;
        let attempts = Attempts::default();
        let put = run(s3
            .client
            .put_object()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .set_content_type(self.options.content_type.clone())
            .set_metadata(Some(self.metadata(&digest.sha256)))
            .set_if_none_match(self.create_only())
            .body(ByteStream::from(bytes))
            .customize()
            .interceptor(attempts.clone())
            .disable_payload_signing()
            .send());
        match put {
            Ok(put) => Ok(self.info(digest, put.e_tag)),
            Err(e) => self.settle(from_sdk(&self.op("write"), e), &attempts, digest, &digest.sha256),
        }
    }

    fn initiate(&self) -> Result<Upload, Error> {
        let s3 = s3()?;
        let created = run(s3
            .client
            .create_multipart_upload()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .set_content_type(self.options.content_type.clone())
            .set_metadata(Some(self.metadata(&format!("{IN_COMPANION} {}", self.nonce))))
            .customize()
            .interceptor(crate::compat::InitiateRoot)
            .send())
        .map_err(|e| from_sdk(&self.op("start an upload of"), e))?;
        let id = created.upload_id.ok_or_else(|| Error::Io("the S3 server started an upload without an id".into()))?;
        Ok(Upload { id, parts: Vec::new() })
    }

    fn write_part(&self, upload: &mut Upload, part: Part<Vec<u8>>) -> Result<(), Error> {
        if part.number > 10_000 {
            return Err(Error::Io(format!(
                "`{}` needs more than 10000 parts: raise the disk's part_size_mib",
                self.path
            )));
        }
        let number = i32::try_from(part.number).map_err(|_| Error::Io("too many parts".into()))?;
        let s3 = s3()?;
        let sent = run(s3
            .client
            .upload_part()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(ByteStream::from(part.bytes))
            .customize()
            .disable_payload_signing()
            .send())
        .map_err(|e| from_sdk(&self.op("upload a part of"), e))?;
        upload.parts.push(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag).build());
        Ok(())
    }

    fn complete(&self, upload: &mut Upload, digest: &Digest) -> Result<ObjectInfo, Error> {
        let s3 = s3()?;
        let parts = CompletedMultipartUpload::builder().set_parts(Some(upload.parts.clone())).build();
        let attempts = Attempts::default();
        let done = run(s3
            .client
            .complete_multipart_upload()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .multipart_upload(parts)
            .set_if_none_match(self.create_only())
            .customize()
            .interceptor(attempts.clone())
            .send());
        let done = match done {
            Ok(done) => self.info(digest, done.e_tag),
            Err(e) => {
                let marked = format!("{IN_COMPANION} {}", self.nonce);
                self.settle(from_sdk(&self.op("complete the upload of"), e), &attempts, digest, &marked)?
            }
        };
        self.put_companion(digest);
        crate::tails::remove_tails(&self.disk, &self.nonce);
        Ok(done)
    }

    fn resumable(&self) -> bool {
        true
    }

    fn suspend(&self, upload: &mut Upload, tail: Part<&[u8]>) -> Result<String, Error> {
        let w = crate::tails::Suspending {
            key: &self.key,
            nonce: &self.nonce,
            upload_id: &upload.id,
            parts: &upload.parts,
        };
        crate::tails::suspend(&self.op("keep the unfinished part of"), &w, tail)
    }

    fn abort(&self, upload: Upload) -> Result<(), Error> {
        let s3 = s3()?;
        let r = run(s3
            .client
            .abort_multipart_upload()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .send())
        .map(|_| ())
        .map_err(|e| from_sdk(&self.op("abort the upload of"), e));
        crate::tails::remove_tails(&self.disk, &self.nonce);
        if let Err(e) = &r {
            // Its parts stay on the server until a bucket lifecycle rule removes them.
            log(
                Level::Error,
                &format!("disk `{}`: an unfinished upload could not be aborted: {}", self.disk, Describe(e)),
            );
        }
        r
    }
}
