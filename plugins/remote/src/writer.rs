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

use std::cell::RefCell;

use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestWriter;
use stowage_plugin_sdk::driver::stowage::storage::log::{Level, log};
use stowage_plugin_sdk::driver::stowage::storage::types::{Digest, Error, ObjectInfo, Unavailable, WriteOptions};
use stowage_plugin_sdk::wasip2::http::types::Method;
use stowage_plugin_sdk::wasip2::io::streams::OutputStream;

use crate::api::{Api, InfoJson, SHA256, json, metadata_headers};
use crate::errors::{Op, from_failure, from_response, unavailable};
use crate::http::Streaming;

/// The offset header of upload sessions.
const OFFSET: &str = "upload-offset";
/// Largest JSON answer read (an object's info).
const MAX_INFO: usize = 1 << 20;

struct State {
    /// Bytes the services host has not acknowledged yet (at most about one segment).
    pending: Vec<u8>,
    /// The upload session (`/v1/upload-sessions/ID`), once the object outgrew one segment.
    session: Option<String>,
    /// Bytes the services host has acknowledged.
    acked: u64,
    /// The append request `pending` is streaming on.
    append: Option<Streaming>,
    done: bool,
}

pub struct RemoteWriter {
    api: Api,
    path: String,
    options: WriteOptions,
    /// Content type, metadata and create-only, as headers.
    write_headers: Vec<(String, String)>,
    state: RefCell<State>,
}

impl RemoteWriter {
    pub fn new(api: Api, path: String, options: WriteOptions) -> Result<RemoteWriter, Error> {
        let mut write_headers = metadata_headers(&options.metadata)?;
        if let Some(ct) = &options.content_type {
            write_headers.push(("content-type".into(), ct.clone()));
        }
        if options.create_only {
            write_headers.push(("if-none-match".into(), "*".into()));
        }
        Ok(RemoteWriter {
            api,
            path,
            options,
            write_headers,
            state: RefCell::new(State { pending: Vec::new(), session: None, acked: 0, append: None, done: false }),
        })
    }

    fn op(&self, what: &'static str) -> Op<'_> {
        Op { what, path: &self.path }
    }

    fn segment(&self) -> usize {
        self.api.settings.segment
    }

    fn write_inner(&self, st: &mut State, chunk: &[u8]) -> Result<(), Error> {
        if st.done {
            return Err(Error::Io("the writer is already finished".into()));
        }
        if st.session.is_none() {
            if st.pending.is_empty() {
                st.pending.reserve(self.segment().min(chunk.len().max(64 << 10)));
            }
            st.pending.extend_from_slice(chunk);
            if st.pending.len() >= self.segment() {
                self.open_session(st)?;
                self.send_pending(st, true)?;
            }
            return Ok(());
        }
        st.pending.extend_from_slice(chunk);
        if self.stream(st, chunk).is_err() {
            // What did not arrive is still in `pending`: send it again from where the
            // services host stands.
            st.append = None;
            return self.send_pending(st, false);
        }
        if st.pending.len() >= self.segment() {
            self.end_append(st)?;
        }
        Ok(())
    }

    /// Streams `chunk` on the current append request, opening one (at the acknowledged offset)
    /// if needed. A new append starts with `pending` holding only `chunk`: every path that ends
    /// one leaves nothing unacknowledged, and if that ever failed, the offset check at its end
    /// would resend what is missing.
    fn stream(&self, st: &mut State, chunk: &[u8]) -> Result<(), Error> {
        let append = match &mut st.append {
            Some(append) => append,
            None => {
                let session = st.session.as_deref().ok_or_else(|| Error::Io("no upload session".into()))?;
                let headers = self.api.headers(&[(OFFSET.into(), st.acked.to_string())]);
                let opened = Streaming::open(self.api.settings, Method::Patch, session, &headers)
                    .map_err(|f| from_failure(self.op("upload"), f))?;
                st.append.insert(opened)
            }
        };
        append.write(chunk).map_err(|f| from_failure(self.op("upload"), f))
    }

    /// Ends the current append request; on any failure, resends what was not acknowledged.
    fn end_append(&self, st: &mut State) -> Result<(), Error> {
        let Some(append) = st.append.take() else { return Ok(()) };
        let expected = st.acked + st.pending.len() as u64;
        let acknowledged = match append.finish() {
            Ok(r) if r.status == 204 => r.header(OFFSET).and_then(|v| v.parse::<u64>().ok()) == Some(expected),
            Ok(_) | Err(_) => false,
        };
        if acknowledged {
            st.acked = expected;
            st.pending.clear();
            return Ok(());
        }
        self.send_pending(st, false)
    }

    /// Opens the upload session.
    fn open_session(&self, st: &mut State) -> Result<(), Error> {
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
            .filter(|l| l.starts_with("/v1/upload-sessions/"))
            .ok_or_else(|| Error::Io("the services host opened an upload without saying where".into()))?;
        st.session = Some(location.to_string());
        st.acked = 0;
        Ok(())
    }

    /// Sends `pending` (in one sized append), first asking the services host where it stands
    /// unless `known`. Retries with backoff while it is unreachable.
    fn send_pending(&self, st: &mut State, known: bool) -> Result<(), Error> {
        let session = st.session.clone().ok_or_else(|| Error::Io("no upload session".into()))?;
        let mut ask = !known;
        let lost = self.api.retrying(|| {
            if ask {
                match self.session_offset(&session)? {
                    None => return Ok(Some(self.lost())),
                    Some(offset) => {
                        let end = st.acked + st.pending.len() as u64;
                        if offset < st.acked || offset > end {
                            return Ok(Some(Error::Io(format!(
                                "the services host reports {offset} bytes of `{}` where {}..={end} were expected",
                                self.path, st.acked
                            ))));
                        }
                        let arrived = usize::try_from(offset - st.acked).unwrap_or(usize::MAX);
                        st.pending.drain(..arrived.min(st.pending.len()));
                        st.acked = offset;
                    }
                }
            }
            ask = true;
            if st.pending.is_empty() {
                return Ok(None);
            }
            let headers = self.api.headers(&[(OFFSET.into(), st.acked.to_string())]);
            let sent = crate::http::send(self.api.settings, Method::Patch, &session, &headers, &st.pending)
                .map_err(|f| from_failure(self.op("upload"), f))?;
            match sent.status {
                204 if sent.header(OFFSET).and_then(|v| v.parse::<u64>().ok())
                    == Some(st.acked + st.pending.len() as u64) =>
                {
                    st.acked += st.pending.len() as u64;
                    st.pending.clear();
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

    fn finish_inner(&self, st: &mut State, digest: &Digest) -> Result<ObjectInfo, Error> {
        if st.done {
            return Err(Error::Io("the writer is already finished".into()));
        }
        let sha = (SHA256.to_string(), digest.sha256.clone());
        let Some(session) = st.session.clone() else {
            if st.pending.len() as u64 != digest.size {
                return Err(Error::Io(format!(
                    "the host counted {} bytes but the driver got {}",
                    digest.size,
                    st.pending.len()
                )));
            }
            let mut headers = self.write_headers.clone();
            headers.push(sha);
            let target = self.api.object(&self.path);
            let mut attempts = 0;
            let put = self.api.retrying(|| {
                attempts += 1;
                self.api.call_once(self.op("write"), Method::Put, &target, &headers, &st.pending, &[200])
            });
            let info = match put {
                Ok(response) => json::<InfoJson>(self.op("write"), response, MAX_INFO).map(ObjectInfo::from)?,
                // Create-only, tried again after an answer was lost: the object there may be
                // this very write.
                Err(Error::AlreadyExists(p)) if attempts > 1 => self.stored(digest).ok_or(Error::AlreadyExists(p))?,
                Err(e) => return Err(e),
            };
            st.pending = Vec::new();
            st.done = true;
            return Ok(info);
        };
        self.end_append(st)?;
        if !st.pending.is_empty() {
            self.send_pending(st, true)?;
        }
        if st.acked != digest.size {
            return Err(Error::Io(format!(
                "the host counted {} bytes but the services host has {}",
                digest.size, st.acked
            )));
        }
        let info = self.complete(&session, sha, digest)?;
        st.done = true;
        st.session = None;
        Ok(info)
    }

    /// Commits the session. Sent again only if it surely did not arrive; when the answer is
    /// lost, whether it committed is settled by looking at the object.
    fn complete(&self, session: &str, sha: (String, String), digest: &Digest) -> Result<ObjectInfo, Error> {
        let op = self.op("complete the upload of");
        let target = format!("{session}/complete");
        match self.api.call_not_twice(op, Method::Post, &target, &[sha], &[200]) {
            Ok(response) => json::<InfoJson>(op, response, MAX_INFO).map(ObjectInfo::from),
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

    fn abort_inner(&self, st: &mut State) -> Result<(), Error> {
        st.done = true;
        st.pending = Vec::new();
        st.append = None;
        let Some(session) = st.session.take() else { return Ok(()) };
        let headers = self.api.headers(&[]);
        match crate::http::send(self.api.settings, Method::Delete, &session, &headers, &[]) {
            Ok(r) if r.status == 204 || r.status == 404 => Ok(()),
            Ok(r) => Err(from_response(self.op("discard the upload of"), r)),
            Err(f) => {
                // The services host discards idle sessions itself after an hour.
                let e = from_failure(self.op("discard the upload of"), f);
                log(Level::Warn, &format!("an unfinished upload could not be discarded: {e:?}"));
                Err(e)
            }
        }
    }
}

impl GuestWriter for RemoteWriter {
    fn sink(&self) -> Option<OutputStream> {
        // Bytes pass through the driver, which keeps the current segment to resume from.
        None
    }

    fn write(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let r = self.write_inner(&mut st, &chunk);
        if r.is_err() {
            let _ = self.abort_inner(&mut st);
        }
        r
    }

    fn finish(&self, digest: Digest) -> Result<ObjectInfo, Error> {
        let mut st = self.state.borrow_mut();
        let r = self.finish_inner(&mut st, &digest);
        if r.is_err() && !st.done {
            let _ = self.abort_inner(&mut st);
        }
        r.map(|mut info| {
            // What this host was asked to store, whatever the services host's own view.
            info.path = self.path.clone();
            if info.content_type.is_none() {
                info.content_type = self.options.content_type.clone();
            }
            info
        })
    }

    fn abort(&self) -> Result<(), Error> {
        self.abort_inner(&mut self.state.borrow_mut())
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if !st.done && st.session.is_some() {
            let mut st =
                std::mem::replace(st, State { pending: Vec::new(), session: None, acked: 0, append: None, done: true });
            let _ = self.abort_inner(&mut st);
        }
    }
}
