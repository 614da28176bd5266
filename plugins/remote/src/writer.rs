//! Streaming writes that survive a dropped connection, with bounded memory.
//!
//! An object smaller than one segment (`segment_mib`) is one PUT at `finish`. A larger one opens
//! an upload session on the services host and streams into it: each segment's bytes go out on
//! an append request as they arrive, and are kept until the services host acknowledges the
//! segment. If the connection breaks, the writer asks the services host how far it got and
//! sends the rest of the segment again, with backoff. The object appears only when the session
//! completes, after the services host has checked the sha256 the host measured. Memory: about
//! one segment.
//!
//! If the services host loses the session itself (it restarted), the bytes before the current
//! segment are gone from both sides: the write fails as retryable, for the client to send again.

use stowage_plugin_sdk::Describe;
use stowage_plugin_sdk::driver::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::driver::stowage::storage::types::{Digest, Error, ObjectInfo, Unavailable, WriteOptions};
use stowage_plugin_sdk::parts::{Part, PartHooks, PartWriter};
use stowage_plugin_sdk::path::ObjectPath;
use stowage_plugin_sdk::wasip2::http::types::Method;

use crate::api::{Api, InfoJson, SHA256, json, metadata_headers};
use crate::error::{Op, from_failure, from_response, unavailable};
use crate::http::Streaming;

use stowage_api::header::UPLOAD_OFFSET as OFFSET;

/// Largest JSON answer read (an object's info).
const MAX_INFO: usize = 1 << 20;

/// The driver's writer: segments are the parts.
pub type RemoteWriter = PartWriter<RemoteParts>;

/// How an object reaches the services host: one PUT, or an upload session.
pub struct RemoteParts {
    api: Api,
    path: ObjectPath,
    options: WriteOptions,
    /// Content type, metadata and create-only, as headers.
    write_headers: Vec<(String, String)>,
}

/// An upload session on the services host.
pub struct Session {
    /// Where it is: `/v1/upload-sessions/ID`.
    location: String,
    /// Bytes the services host has acknowledged.
    acked: u64,
    /// The append request the current segment is streaming on.
    append: Option<Streaming>,
}

/// A writer for `path`.
pub fn writer(api: Api, path: ObjectPath, options: WriteOptions) -> Result<RemoteWriter, Error> {
    let mut write_headers = metadata_headers(&options.metadata)?;
    if let Some(ct) = &options.content_type {
        write_headers.push(("content-type".into(), ct.clone()));
    }
    if options.create_only {
        write_headers.push(("if-none-match".into(), "*".into()));
    }
    Ok(PartWriter::new(RemoteParts { api, path, options, write_headers }))
}

impl PartHooks for RemoteParts {
    type Upload = Session;

    fn part_size(&self) -> usize {
        self.api.settings.segment
    }

    fn write_once(&self, bytes: Vec<u8>, digest: &Digest) -> Result<ObjectInfo, Error> {
        let mut headers = self.write_headers.clone();
        headers.push((SHA256.to_string(), digest.sha256.clone()));
        let target = self.api.object(&self.path);
        let mut attempts = 0;
        let put = self.api.retrying(|| {
            attempts += 1;
            self.api.call_once(self.op("write"), Method::Put, &target, &headers, &bytes, &[200])
        });
        let info = match put {
            Ok(response) => json::<InfoJson>(self.op("write"), response, MAX_INFO).map(crate::api::info)?,
            // Create-only, tried again after an answer was lost: the object there may be
            // this very write.
            Err(Error::AlreadyExists(p)) if attempts > 1 => self.stored(digest).ok_or(Error::AlreadyExists(p))?,
            Err(e) => return Err(e),
        };
        Ok(self.ours(info))
    }

    fn initiate(&self) -> Result<Session, Error> {
        let target = self.api.uploads(&self.path);
        let response = self.api.call_not_twice(
            self.op("start an upload of"),
            Method::Post,
            &target,
            &self.write_headers,
            &[201],
        )?;
        let location = response
            .header("location")
            .filter(|l| l.strip_prefix(stowage_api::route::UPLOAD_SESSIONS).is_some_and(|id| id.starts_with('/')))
            .ok_or_else(|| Error::Io("the services host opened an upload without saying where".into()))?;
        Ok(Session { location: location.to_string(), acked: 0, append: None })
    }

    /// After the first segment, bytes go out as they arrive, on one append request per segment.
    fn filling(&self, session: &mut Session, part: Part<&[u8]>, new: usize) -> Result<bool, Error> {
        let chunk = &part.bytes[part.bytes.len() - new..];
        if self.stream(session, chunk).is_err() {
            // What did not arrive is still in the part: send it again from where the services
            // host stands. Then it holds the whole part.
            session.append = None;
            self.send(session, part, false)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn write_part(&self, session: &mut Session, part: Part<Vec<u8>>) -> Result<(), Error> {
        let part = Part { number: part.number, offset: part.offset, bytes: part.bytes.as_slice() };
        match session.append.take() {
            // The segment streamed while it filled: end its append.
            Some(append) => self.end_append(session, append, part),
            // The first segment, gathered before the session opened.
            None => self.send(session, part, true),
        }
    }

    fn complete(&self, session: &mut Session, digest: &Digest) -> Result<ObjectInfo, Error> {
        if session.acked != digest.size {
            return Err(Error::Io(format!(
                "the host counted {} bytes but the services host has {}",
                digest.size, session.acked
            )));
        }
        self.commit(&session.location, digest).map(|info| self.ours(info))
    }

    fn abort(&self, mut session: Session) -> Result<(), Error> {
        // Cut an append still streaming first: the services host holds the session for it
        // (until its body ends or idles out) and would make the discard wait.
        drop(session.append.take());
        let headers = self.api.headers(&[]);
        match crate::http::send(self.api.settings, Method::Delete, &session.location, &headers, &[]) {
            Ok(r) if r.status == 204 || r.status == 404 => Ok(()),
            Ok(r) => Err(from_response(self.op("discard the upload of"), r)),
            Err(f) => {
                // The services host discards idle sessions itself after an hour.
                let e = from_failure(self.op("discard the upload of"), f);
                log(Level::Warn, &format!("an unfinished upload could not be discarded: {}", Describe(&e)));
                Err(e)
            }
        }
    }
}

impl RemoteParts {
    fn op(&self, what: &'static str) -> Op<'_> {
        Op { what, path: &self.path }
    }

    /// What this host was asked to store, whatever the services host's own view.
    fn ours(&self, mut info: ObjectInfo) -> ObjectInfo {
        info.path = self.path.to_string();
        if info.content_type.is_none() {
            info.content_type = self.options.content_type.clone();
        }
        info
    }

    /// Streams `chunk` on the current append request, opening one (at the acknowledged offset)
    /// if needed. A new append starts with its segment holding only `chunk`: every path that
    /// ends one leaves nothing unacknowledged, and if that ever failed, the offset check at
    /// its end would resend what is missing.
    fn stream(&self, session: &mut Session, chunk: &[u8]) -> Result<(), Error> {
        let append = match &mut session.append {
            Some(append) => append,
            None => {
                let headers = self.api.headers(&[(OFFSET.into(), session.acked.to_string())]);
                let opened = Streaming::open(self.api.settings, Method::Patch, &session.location, &headers)
                    .map_err(|f| from_failure(self.op("upload"), f))?;
                session.append.insert(opened)
            }
        };
        append.write(chunk).map_err(|f| from_failure(self.op("upload"), f))
    }

    /// Ends a segment's append request; on any failure, resends what was not acknowledged.
    fn end_append(&self, session: &mut Session, append: Streaming, part: Part<&[u8]>) -> Result<(), Error> {
        let expected = part.offset + part.bytes.len() as u64;
        let acknowledged = match append.finish() {
            Ok(r) if r.status == 204 => r.header(OFFSET).and_then(|v| v.parse::<u64>().ok()) == Some(expected),
            Ok(_) | Err(_) => false,
        };
        if acknowledged {
            session.acked = expected;
            return Ok(());
        }
        self.send(session, part, false)
    }

    /// Sends what the services host lacks of `part` (in one sized append), first asking it
    /// where it stands unless `known`. Retries with backoff while it is unreachable.
    fn send(&self, session: &mut Session, part: Part<&[u8]>, known: bool) -> Result<(), Error> {
        let end = part.offset + part.bytes.len() as u64;
        let mut ask = !known;
        let lost = self.api.retrying(|| {
            if ask {
                match self.session_offset(&session.location)? {
                    None => return Ok(Some(self.lost())),
                    Some(offset) if offset < session.acked.max(part.offset) || offset > end => {
                        return Ok(Some(Error::Io(format!(
                            "the services host reports {offset} bytes of `{}` where {}..={end} were expected",
                            self.path, session.acked
                        ))));
                    }
                    Some(offset) => session.acked = offset,
                }
            }
            ask = true;
            if session.acked == end {
                return Ok(None);
            }
            let from = usize::try_from(session.acked - part.offset).unwrap_or(usize::MAX).min(part.bytes.len());
            let headers = self.api.headers(&[(OFFSET.into(), session.acked.to_string())]);
            let sent =
                crate::http::send(self.api.settings, Method::Patch, &session.location, &headers, &part.bytes[from..])
                    .map_err(|f| from_failure(self.op("upload"), f))?;
            match sent.status {
                204 if sent.header(OFFSET).and_then(|v| v.parse::<u64>().ok()) == Some(end) => {
                    session.acked = end;
                    Ok(None)
                }
                404 => Ok(Some(self.lost())),
                // Out of step (an earlier request was still landing, or the offset is not the
                // one expected): ask again.
                204 | 409 | 400 => {
                    Err(unavailable(format!("the upload of `{}` is out of step with the services host", self.path)))
                }
                _ => Err(from_response(self.op("upload"), sent)),
            }
        })?;
        match lost {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// The session's offset; `None` if the services host no longer has it.
    fn session_offset(&self, session: &str) -> Result<Option<u64>, Error> {
        let headers = self.api.headers(&[]);
        let r = crate::http::send(self.api.settings, Method::Head, session, &headers, &[])
            .map_err(|f| from_failure(self.op("resume"), f))?;
        match r.status {
            200 => Ok(r.header(OFFSET).and_then(|v| v.parse().ok())),
            404 => Ok(None),
            _ => Err(from_response(self.op("resume"), r)),
        }
    }

    fn lost(&self) -> Error {
        Error::Unavailable(Unavailable {
            reason: format!(
                "the services host no longer has the upload of `{}` (it restarted or discarded it): send the object again",
                self.path
            ),
            retryable: true,
        })
    }

    /// Commits the session. Sent again only if it surely did not arrive; when the answer is
    /// lost, whether it committed is settled by looking at the object.
    fn commit(&self, session: &str, digest: &Digest) -> Result<ObjectInfo, Error> {
        let op = self.op("complete the upload of");
        let target = format!("{session}/complete");
        let sha = (SHA256.to_string(), digest.sha256.clone());
        match self.api.call_not_twice(op, Method::Post, &target, &[sha], &[200]) {
            Ok(response) => json::<InfoJson>(op, response, MAX_INFO).map(crate::api::info),
            Err(e @ (Error::Unavailable(_) | Error::NotFound(_))) => {
                // Lost on the way back, or committed by an earlier request: is it there?
                let stored = self.api.retrying(|| match crate::reader::head(&self.api, &self.path) {
                    Ok(info) => Ok(Some(info)),
                    Err(Error::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                });
                match stored {
                    Ok(Some(info))
                        if info.size == digest.size && info.sha256.as_deref() == Some(digest.sha256.as_str()) =>
                    {
                        Ok(info)
                    }
                    Ok(_) if matches!(e, Error::NotFound(_)) => Err(self.lost()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The object's info if what is stored at the path is exactly what this writer wrote.
    fn stored(&self, digest: &Digest) -> Option<ObjectInfo> {
        let info = crate::reader::head(&self.api, &self.path).ok()?;
        (info.size == digest.size && info.sha256.as_deref() == Some(digest.sha256.as_str())).then_some(info)
    }
}
