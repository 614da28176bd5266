//! Streaming writes with bounded memory: bytes gather in one part-sized buffer. An object
//! that fits in it is one PUT at `finish`; a larger one becomes a multipart upload, a part
//! sent each time the buffer fills. Nothing is visible until `finish` completes the upload;
//! `abort`, a failure or dropping the writer aborts it, so no parts are left behind.
//!
//! Bodies are sent unsigned (`UNSIGNED-PAYLOAD`; headers stay signed): SigV4 would otherwise
//! hash every part inside the sandbox, where sha256 runs without CPU extensions, while the
//! host already measures the object's sha256 and TLS protects the bytes in transit.

use std::cell::RefCell;
use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestWriter;
use stowage_plugin_sdk::driver::stowage::storage::types::{Digest, Error, ObjectInfo, WriteOptions};
use stowage_plugin_sdk::wasip2::io::streams::OutputStream;

use stowage_plugin_sdk::driver::stowage::storage::log::{Level, log};

use crate::client::{S3, run, s3};
use crate::errors::{Op, from_sdk};
use crate::object::SHA256_KEY;

struct Upload {
    id: String,
    parts: Vec<CompletedPart>,
}

struct State {
    buf: Vec<u8>,
    upload: Option<Upload>,
    /// Bytes sent in parts so far.
    sent: u64,
    done: bool,
}

pub struct S3Writer {
    disk: String,
    path: String,
    key: String,
    options: WriteOptions,
    state: RefCell<State>,
}

impl S3Writer {
    pub fn new(disk: String, path: String, options: WriteOptions) -> Result<S3Writer, Error> {
        let s3 = s3()?;
        if options.metadata.iter().any(|(k, _)| k.eq_ignore_ascii_case(SHA256_KEY)) {
            return Err(Error::Unsupported(format!(
                "metadata key `{SHA256_KEY}` is reserved for the sha256 the host measures"
            )));
        }
        Ok(S3Writer {
            disk,
            key: s3.settings.key(&path),
            path,
            options,
            state: RefCell::new(State { buf: Vec::new(), upload: None, sent: 0, done: false }),
        })
    }

    fn op(&self, what: &'static str) -> Op<'_> {
        Op { disk: &self.disk, path: &self.path, what }
    }

    fn metadata(&self, sha256: Option<&str>) -> HashMap<String, String> {
        let mut m: HashMap<String, String> =
            self.options.metadata.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        if let Some(sha) = sha256 {
            m.insert(SHA256_KEY.into(), sha.into());
        }
        m
    }

    /// Sends the buffer as the next part, starting the multipart upload if needed.
    fn send_part(&self, s3: &S3, state: &mut State) -> Result<(), Error> {
        if state.upload.is_none() {
            let created = run(s3
                .client
                .create_multipart_upload()
                .bucket(&s3.settings.bucket)
                .key(&self.key)
                .set_content_type(self.options.content_type.clone())
                .set_metadata(Some(self.metadata(None)))
                .send())
            .map_err(|e| from_sdk(&self.op("start an upload of"), e))?;
            let id =
                created.upload_id.ok_or_else(|| Error::Io("the S3 server started an upload without an id".into()))?;
            state.upload = Some(Upload { id, parts: Vec::new() });
        }
        let Some(upload) = state.upload.as_mut() else { return Err(Error::Io("no upload".into())) };
        let number = i32::try_from(upload.parts.len() + 1).map_err(|_| Error::Io("too many parts".into()))?;
        if number > 10_000 {
            return Err(Error::Io(format!(
                "`{}` needs more than 10000 parts: raise the disk's part_size_mib",
                self.path
            )));
        }
        let len = state.buf.len() as u64;
        let body = ByteStream::from(std::mem::take(&mut state.buf));
        let sent = run(s3
            .client
            .upload_part()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(body)
            .customize()
            .disable_payload_signing()
            .send())
        .map_err(|e| from_sdk(&self.op("upload a part of"), e))?;
        upload.parts.push(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag).build());
        state.sent += len;
        Ok(())
    }

    fn abort_upload(&self, state: &mut State) -> Result<(), Error> {
        state.buf = Vec::new();
        state.done = true;
        let Some(upload) = state.upload.take() else { return Ok(()) };
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
        if let Err(e) = &r {
            // Its parts stay on the server until a bucket lifecycle rule removes them.
            log(Level::Error, &format!("disk `{}`: an unfinished upload could not be aborted: {e:?}", self.disk));
        }
        r
    }

    fn write_inner(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let s3 = s3()?;
        let mut state = self.state.borrow_mut();
        if state.done {
            return Err(Error::Io("the writer is already finished".into()));
        }
        if state.buf.is_empty() && state.buf.capacity() < s3.settings.part_size {
            state.buf.reserve_exact(s3.settings.part_size);
        }
        state.buf.extend_from_slice(&chunk);
        if state.buf.len() >= s3.settings.part_size {
            self.send_part(s3, &mut state)?;
        }
        Ok(())
    }

    fn finish_inner(&self, digest: &Digest) -> Result<Option<String>, Error> {
        let s3 = s3()?;
        let mut state = self.state.borrow_mut();
        if state.done {
            return Err(Error::Io("the writer is already finished".into()));
        }
        let create_only = self.options.create_only.then_some("*");
        if state.upload.is_none() {
            if state.buf.len() as u64 != digest.size {
                return Err(Error::Io(format!(
                    "the host counted {} bytes but the driver got {}",
                    digest.size,
                    state.buf.len()
                )));
            }
            let body = ByteStream::from(std::mem::take(&mut state.buf));
            let put = run(s3
                .client
                .put_object()
                .bucket(&s3.settings.bucket)
                .key(&self.key)
                .set_content_type(self.options.content_type.clone())
                .set_metadata(Some(self.metadata(Some(&digest.sha256))))
                .set_if_none_match(create_only.map(str::to_string))
                .body(body)
                .customize()
                .disable_payload_signing()
                .send())
            .map_err(|e| from_sdk(&self.op("write"), e))?;
            state.done = true;
            return Ok(put.e_tag);
        }
        if state.sent + state.buf.len() as u64 != digest.size {
            return Err(Error::Io(format!(
                "the host counted {} bytes but the driver got {}",
                digest.size,
                state.sent + state.buf.len() as u64
            )));
        }
        if !state.buf.is_empty() {
            self.send_part(s3, &mut state)?;
        }
        let Some(upload) = state.upload.take() else { return Err(Error::Io("no upload".into())) };
        let parts = CompletedMultipartUpload::builder().set_parts(Some(upload.parts.clone())).build();
        let completed = run(s3
            .client
            .complete_multipart_upload()
            .bucket(&s3.settings.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .multipart_upload(parts)
            .set_if_none_match(create_only.map(str::to_string))
            .send());
        state.upload = Some(upload);
        match completed {
            Ok(done) => {
                state.upload = None;
                state.done = true;
                Ok(done.e_tag)
            }
            Err(e) => Err(from_sdk(&self.op("complete the upload of"), e)),
        }
    }
}

impl GuestWriter for S3Writer {
    fn sink(&self) -> Option<OutputStream> {
        // Parts need their length up front: the host hands chunks to `write` instead.
        None
    }

    fn write(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let r = self.write_inner(chunk);
        if r.is_err() {
            let _ = self.abort_upload(&mut self.state.borrow_mut());
        }
        r
    }

    fn finish(&self, digest: Digest) -> Result<ObjectInfo, Error> {
        match self.finish_inner(&digest) {
            Ok(etag) => Ok(ObjectInfo {
                path: self.path.clone(),
                size: digest.size,
                sha256: Some(digest.sha256),
                content_type: self.options.content_type.clone(),
                modified: None,
                etag,
                metadata: crate::object::sorted(self.options.metadata.clone()),
            }),
            Err(e) => {
                let _ = self.abort_upload(&mut self.state.borrow_mut());
                Err(e)
            }
        }
    }

    fn abort(&self) -> Result<(), Error> {
        self.abort_upload(&mut self.state.borrow_mut())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Dropped unfinished (the host gave up on the write): leave no parts behind.
        let state = self.state.get_mut();
        if !state.done && state.upload.is_some() {
            let mut state = std::mem::replace(state, State { buf: Vec::new(), upload: None, sent: 0, done: true });
            let _ = self.abort_upload(&mut state);
        }
    }
}
