//! The writer of a driver whose backend stores large objects in parts (S3's multipart uploads,
//! a services host's upload sessions): [`PartWriter`] keeps the one part-sized buffer, the
//! byte count the host checks at `finish` and the rule that nothing is left behind (a failure,
//! `abort` or dropping the writer aborts the upload), and calls the driver's [`PartHooks`] for
//! what talks to the backend. An object that fits in one part is one `write_once`.
//!
//! The shape is OpenDAL's `MultipartWrite`: write once / initiate / write part / complete /
//! abort, plus an optional hook that sees a part's bytes while it fills, for a backend that
//! streams them as they arrive.

use std::cell::RefCell;

use crate::driver::exports::stowage::storage::store::GuestWriter;
use crate::driver::stowage::storage::types::{Digest, Error, ObjectInfo};
use crate::wasip2::io::streams::OutputStream;

/// A part of an object: its `bytes` (owned when it is stored, borrowed while it fills) begin
/// at `offset` in the object; `number` counts from 1.
#[derive(Clone, Copy, Debug)]
pub struct Part<B> {
    pub number: u32,
    pub offset: u64,
    pub bytes: B,
}

/// What a driver does with its backend; [`PartWriter`] does the rest.
pub trait PartHooks {
    /// An upload in progress (its id, the parts stored so far, ...).
    type Upload;

    /// The size a part reaches before it is stored (the last part may be smaller).
    fn part_size(&self) -> usize;

    /// Stores the whole object in one request (it fit in one part).
    fn write_once(&self, bytes: Vec<u8>, digest: &Digest) -> Result<ObjectInfo, Error>;

    /// Starts an upload, just before its first part is stored.
    fn initiate(&self) -> Result<Self::Upload, Error>;

    /// The part being filled grew (`part.bytes` ends with the `new` bytes that just arrived),
    /// for a backend that streams a part while it fills; called once an upload has started.
    /// `Ok(true)` says the backend already holds all of `part`: the next bytes begin a new
    /// part. By default nothing is sent before the part is full.
    fn filling(&self, _upload: &mut Self::Upload, _part: Part<&[u8]>, _new: usize) -> Result<bool, Error> {
        Ok(false)
    }

    /// Stores a part (full, or the last one).
    fn write_part(&self, upload: &mut Self::Upload, part: Part<Vec<u8>>) -> Result<(), Error>;

    /// Makes the object visible, once every part is stored. On an error the upload is aborted.
    fn complete(&self, upload: &mut Self::Upload, digest: &Digest) -> Result<ObjectInfo, Error>;

    /// Gives the upload up: its parts are removed.
    fn abort(&self, upload: Self::Upload) -> Result<(), Error>;

    /// Whether [`PartHooks::suspend`] is implemented (by default not: `suspend` answers
    /// `unsupported` and the host keeps upload sessions in its memory).
    fn resumable(&self) -> bool {
        false
    }

    /// Makes the upload resumable as it stands (`wit/resumable.wit`): keeps `tail` (the part
    /// being filled, possibly empty) durably and returns a token naming the upload, its parts
    /// and the tail, from which the driver's `resume` rebuilds a [`Resumed`].
    fn suspend(&self, _upload: &mut Self::Upload, _tail: Part<&[u8]>) -> Result<String, Error> {
        Err(Error::Unsupported("suspend".into()))
    }
}

/// A suspended upload as the driver's `resume` found it again: the upload, how many parts
/// and bytes it had stored, and the bytes of the part that was filling.
pub struct Resumed<U> {
    pub upload: U,
    pub parts: u32,
    pub stored: u64,
    pub tail: Vec<u8>,
}

struct State<U> {
    /// The part being filled.
    buf: Vec<u8>,
    upload: Option<U>,
    /// Parts stored so far, and their bytes.
    parts: u32,
    stored: u64,
    done: bool,
    /// A token was given out: dropping the writer leaves the upload for its session.
    suspended: bool,
}

/// A driver's `writer` resource, over its [`PartHooks`].
pub struct PartWriter<H: PartHooks> {
    hooks: H,
    state: RefCell<State<H::Upload>>,
}

/// Smallest buffer reserved for the first bytes of an object.
const FIRST_RESERVE: usize = 64 << 10;

impl<H: PartHooks> PartWriter<H> {
    /// A writer that has stored nothing yet.
    pub fn new(hooks: H) -> PartWriter<H> {
        PartWriter {
            hooks,
            state: RefCell::new(State {
                buf: Vec::new(),
                upload: None,
                parts: 0,
                stored: 0,
                done: false,
                suspended: false,
            }),
        }
    }

    /// A writer continuing a suspended upload.
    pub fn resumed(hooks: H, resumed: Resumed<H::Upload>) -> PartWriter<H> {
        let mut buf = resumed.tail;
        buf.reserve_exact(hooks.part_size().saturating_sub(buf.len()));
        PartWriter {
            hooks,
            state: RefCell::new(State {
                buf,
                upload: Some(resumed.upload),
                parts: resumed.parts,
                stored: resumed.stored,
                done: false,
                suspended: true,
            }),
        }
    }

    /// Makes the bytes so far durable (the driver's [`PartHooks::suspend`]) and returns the
    /// token that resumes the write from here; an upload is started first if none was.
    pub fn suspend(&self) -> Result<String, Error> {
        if !self.hooks.resumable() {
            return Err(Error::Unsupported("suspend".into()));
        }
        let mut st = self.state.borrow_mut();
        if st.done {
            return Err(finished());
        }
        if st.upload.is_none() {
            st.upload = Some(self.hooks.initiate()?);
        }
        let st = &mut *st;
        let Some(upload) = st.upload.as_mut() else { return Err(Error::Io("no upload".into())) };
        let token =
            self.hooks.suspend(upload, Part { number: st.parts + 1, offset: st.stored, bytes: st.buf.as_slice() })?;
        st.suspended = true;
        Ok(token)
    }

    fn write_inner(&self, st: &mut State<H::Upload>, chunk: &[u8]) -> Result<(), Error> {
        if st.done {
            return Err(finished());
        }
        let part_size = self.hooks.part_size();
        let want = st.buf.len() + chunk.len();
        if want > st.buf.capacity() {
            // A small object's buffer grows as it needs; once an upload has started, each part
            // gets its whole size at once. Never past one part (plus the chunk that fills it).
            let grown = match st.upload {
                Some(_) => part_size,
                None => st.buf.capacity().saturating_mul(2).max(FIRST_RESERVE).min(part_size),
            };
            let target = grown.max(want);
            st.buf.reserve_exact(target - st.buf.len());
        }
        st.buf.extend_from_slice(chunk);
        if let Some(upload) = st.upload.as_mut() {
            let part = Part { number: st.parts + 1, offset: st.stored, bytes: st.buf.as_slice() };
            if self.hooks.filling(upload, part, chunk.len())? {
                Self::stored(st);
                return Ok(());
            }
        }
        if st.buf.len() >= part_size {
            if st.upload.is_none() {
                st.upload = Some(self.hooks.initiate()?);
            }
            self.store_part(st)?;
        }
        Ok(())
    }

    fn store_part(&self, st: &mut State<H::Upload>) -> Result<(), Error> {
        let Some(upload) = st.upload.as_mut() else { return Err(Error::Io("no upload".into())) };
        let bytes = std::mem::take(&mut st.buf);
        let len = bytes.len() as u64;
        self.hooks.write_part(upload, Part { number: st.parts + 1, offset: st.stored, bytes })?;
        st.parts += 1;
        st.stored += len;
        Ok(())
    }

    /// The part in the buffer is stored: the next bytes begin the next one.
    fn stored(st: &mut State<H::Upload>) {
        st.parts += 1;
        st.stored += st.buf.len() as u64;
        st.buf.clear();
    }

    fn finish_inner(&self, st: &mut State<H::Upload>, digest: &Digest) -> Result<ObjectInfo, Error> {
        if st.done {
            return Err(finished());
        }
        let got = st.stored + st.buf.len() as u64;
        if got != digest.size {
            return Err(Error::Io(format!("the host counted {} bytes but the driver got {got}", digest.size)));
        }
        if st.stored == 0 {
            // Every byte is in the buffer: one request stores it. An upload a suspend started
            // holds none of them (parts cannot be empty): it goes once the object is stored
            // (until then it is what the session's token names).
            // (A failure leaves the session its token: the tail is kept with the backend.)
            let info = self.hooks.write_once(std::mem::take(&mut st.buf), digest)?;
            st.done = true;
            if let Some(upload) = st.upload.take() {
                let _ = self.hooks.abort(upload);
            }
            return Ok(info);
        }
        if !st.buf.is_empty() {
            self.store_part(st)?;
        }
        let Some(upload) = st.upload.as_mut() else { return Err(Error::Io("no upload".into())) };
        let info = self.hooks.complete(upload, digest)?;
        st.upload = None;
        st.done = true;
        Ok(info)
    }

    /// A write or finish failed: the upload is aborted, unless it was suspended (its session
    /// resumes it from its last token, which the failure did not touch); either way this
    /// writer takes nothing more.
    fn failed(&self, st: &mut State<H::Upload>) {
        if st.suspended {
            st.done = true;
            st.buf = Vec::new();
            return;
        }
        let _ = self.abort_inner(st);
    }

    fn abort_inner(&self, st: &mut State<H::Upload>) -> Result<(), Error> {
        st.done = true;
        st.buf = Vec::new();
        match st.upload.take() {
            Some(upload) => self.hooks.abort(upload),
            None => Ok(()),
        }
    }
}

fn finished() -> Error {
    Error::Io("the writer is already finished".into())
}

impl<H: PartHooks + 'static> GuestWriter for PartWriter<H> {
    fn sink(&self) -> Option<OutputStream> {
        // Parts are gathered here: the host hands chunks to `write`.
        None
    }

    fn write(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let r = self.write_inner(&mut st, &chunk);
        if r.is_err() {
            self.failed(&mut st);
        }
        r
    }

    fn finish(&self, digest: Digest) -> Result<ObjectInfo, Error> {
        let mut st = self.state.borrow_mut();
        let r = self.finish_inner(&mut st, &digest);
        if r.is_err() && !st.done {
            self.failed(&mut st);
        }
        r
    }

    fn abort(&self) -> Result<(), Error> {
        self.abort_inner(&mut self.state.borrow_mut())
    }
}

impl<H: PartHooks> Drop for PartWriter<H> {
    fn drop(&mut self) {
        // Dropped unfinished (the host gave up on the write): leave no parts behind.
        let st = self.state.get_mut();
        // A suspended one is left to its session, which resumes or discards it.
        if !st.done && st.upload.is_some() && !st.suspended {
            let mut st = std::mem::replace(
                st,
                State { buf: Vec::new(), upload: None, parts: 0, stored: 0, done: true, suspended: false },
            );
            let _ = self.abort_inner(&mut st);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A backend kept in memory: what each hook was asked, and failures on demand.
    #[derive(Default)]
    struct Backend {
        calls: Vec<String>,
        /// Parts stored, by upload.
        parts: Vec<Vec<u8>>,
        object: Option<Vec<u8>>,
        fail_part: Option<u32>,
        stream: bool,
    }

    struct Hooks(Rc<RefCell<Backend>>);

    impl PartHooks for Hooks {
        type Upload = ();
        fn part_size(&self) -> usize {
            10
        }
        fn write_once(&self, bytes: Vec<u8>, digest: &Digest) -> Result<ObjectInfo, Error> {
            let mut b = self.0.borrow_mut();
            b.calls.push(format!("once {}", bytes.len()));
            b.object = Some(bytes);
            Ok(info(digest))
        }
        fn initiate(&self) -> Result<(), Error> {
            self.0.borrow_mut().calls.push("initiate".into());
            Ok(())
        }
        fn filling(&self, _: &mut (), part: Part<&[u8]>, new: usize) -> Result<bool, Error> {
            let mut b = self.0.borrow_mut();
            if !b.stream {
                return Ok(false);
            }
            b.calls.push(format!("filling {} +{new} at {}", part.number, part.offset));
            // Streams whatever arrives as its own part.
            b.parts.push(part.bytes.to_vec());
            Ok(true)
        }
        fn write_part(&self, _: &mut (), part: Part<Vec<u8>>) -> Result<(), Error> {
            let mut b = self.0.borrow_mut();
            b.calls.push(format!("part {} at {} ({})", part.number, part.offset, part.bytes.len()));
            if b.fail_part == Some(part.number) {
                return Err(Error::Io("part refused".into()));
            }
            b.parts.push(part.bytes);
            Ok(())
        }
        fn complete(&self, _: &mut (), digest: &Digest) -> Result<ObjectInfo, Error> {
            let mut b = self.0.borrow_mut();
            b.calls.push("complete".into());
            b.object = Some(b.parts.concat());
            Ok(info(digest))
        }
        fn abort(&self, _: ()) -> Result<(), Error> {
            let mut b = self.0.borrow_mut();
            b.calls.push("abort".into());
            b.parts.clear();
            Ok(())
        }
    }

    fn info(digest: &Digest) -> ObjectInfo {
        ObjectInfo {
            path: "p".into(),
            size: digest.size,
            sha256: Some(digest.sha256.clone()),
            content_type: None,
            modified: None,
            etag: None,
            metadata: Vec::new(),
        }
    }

    fn digest(size: u64) -> Digest {
        Digest { size, sha256: "00".into() }
    }

    fn writer(backend: Backend) -> (PartWriter<Hooks>, Rc<RefCell<Backend>>) {
        let b = Rc::new(RefCell::new(backend));
        (PartWriter::new(Hooks(b.clone())), b)
    }

    #[test]
    fn an_object_within_one_part_is_written_once() {
        let (w, b) = writer(Backend::default());
        w.write(b"hello".to_vec()).unwrap();
        w.write(b"abcd".to_vec()).unwrap();
        w.finish(digest(9)).unwrap();
        assert_eq!(b.borrow().calls, ["once 9"]);
        assert_eq!(b.borrow().object.as_deref(), Some(&b"helloabcd"[..]));
        assert!(w.write(b"x".to_vec()).is_err(), "a finished writer takes no more bytes");
    }

    #[test]
    fn a_larger_object_goes_in_parts_with_their_offsets() {
        let (w, b) = writer(Backend::default());
        let data: Vec<u8> = (0..25u8).collect();
        for chunk in data.chunks(4) {
            w.write(chunk.to_vec()).unwrap();
        }
        w.finish(digest(25)).unwrap();
        assert_eq!(
            b.borrow().calls,
            ["initiate", "part 1 at 0 (12)", "part 2 at 12 (12)", "part 3 at 24 (1)", "complete"]
        );
        assert_eq!(b.borrow().object.as_deref(), Some(&data[..]));
    }

    #[test]
    fn a_count_the_host_disagrees_with_fails_and_aborts() {
        let (w, b) = writer(Backend::default());
        w.write(vec![1; 15]).unwrap();
        let e = w.finish(digest(16)).unwrap_err();
        assert!(matches!(&e, Error::Io(m) if m == "the host counted 16 bytes but the driver got 15"), "{e:?}");
        assert_eq!(b.borrow().calls.last().map(String::as_str), Some("abort"));
        assert!(b.borrow().object.is_none());
    }

    #[test]
    fn a_failed_part_aborts_the_upload_and_the_writer_stays_finished() {
        let (w, b) = writer(Backend { fail_part: Some(2), ..Backend::default() });
        w.write(vec![1; 10]).unwrap();
        assert!(w.write(vec![2; 10]).is_err());
        assert_eq!(b.borrow().calls, ["initiate", "part 1 at 0 (10)", "part 2 at 10 (10)", "abort"]);
        assert!(b.borrow().parts.is_empty(), "the aborted upload's parts are removed");
        assert!(w.finish(digest(20)).is_err());
        assert!(b.borrow().object.is_none());
    }

    #[test]
    fn dropping_an_unfinished_upload_aborts_it_once() {
        let (w, b) = writer(Backend::default());
        w.write(vec![1; 11]).unwrap();
        drop(w);
        assert_eq!(b.borrow().calls, ["initiate", "part 1 at 0 (11)", "abort"]);

        // Nothing started: nothing to abort.
        let (w, b) = writer(Backend::default());
        w.write(vec![1; 3]).unwrap();
        drop(w);
        assert!(b.borrow().calls.is_empty());
    }

    #[test]
    fn a_streaming_backend_sees_each_part_while_it_fills() {
        let (w, b) = writer(Backend { stream: true, ..Backend::default() });
        w.write(vec![1; 10]).unwrap(); // fills the first part: starts the upload
        w.write(vec![2; 3]).unwrap();
        w.write(vec![3; 4]).unwrap();
        w.finish(digest(17)).unwrap();
        assert_eq!(
            b.borrow().calls,
            ["initiate", "part 1 at 0 (10)", "filling 2 +3 at 10", "filling 3 +4 at 13", "complete"]
        );
        assert_eq!(b.borrow().object.as_ref().map(Vec::len), Some(17));
    }
}
