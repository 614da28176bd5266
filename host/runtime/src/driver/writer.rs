//! Streaming writes: the host measures size and sha256 of every byte on its way to the driver,
//! and moves the bytes into the stream the driver handed over (a file, an HTTP body) when it
//! has one, so they never pass through the plugin's memory.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi_io::streams::{DynOutputStream, StreamError};

use super::digest::{Digest, DigestState, Digester};
use super::lease::Lease;
use crate::bindings::wit;
use crate::convert::info_from_wit;
use crate::error::StorageError;
use crate::pool::cleanup_later;
use crate::types::ObjectInfo;

/// `finish` may take this much longer than the call timeout per byte written: it flushes the
/// whole object to stable storage, at no less than 32 MiB/s.
const FINISH_BYTES_PER_SEC: u64 = 32 << 20;

/// An object being written. Nothing is visible at its path until [`ObjectWriter::finish`]
/// succeeds; [`ObjectWriter::abort`], or dropping it unfinished, discards it. After a failed
/// `write` the writer only accepts `abort`.
pub struct DriverWriter {
    /// Names the write's temp objects; live until the write is committed or aborted.
    owner: Option<crate::owner::OwnerTag>,
    lease: Option<Lease>,
    writer: ResourceAny,
    sink: Option<Resource<DynOutputStream>>,
    digester: Digester,
    failed: bool,
    /// What was written, once the stream ended (`seal`).
    sealed: Option<Digest>,
    /// The driver gave a token for this write: dropped unfinished, it is released (left for
    /// its session), not aborted.
    suspended: bool,
}

/// A write suspended so that another instance, or host, can continue it
/// (`wit/resumable.wit`): the driver's token and where the host's digest stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspended {
    /// What the driver's `resume` takes.
    pub token: String,
    /// Bytes written, and the sha256 state after them.
    pub digest: DigestState,
}

impl DriverWriter {
    pub(crate) async fn new(
        lease: Lease,
        writer: ResourceAny,
        owner: crate::owner::OwnerTag,
    ) -> Result<Self, StorageError> {
        Self::with_digester(lease, writer, owner, Digester::new(), false).await
    }

    /// A writer whose digest continues from `digester` (a resumed write's, which is
    /// `suspended`: dropped, it is released, never aborted).
    pub(crate) async fn with_digester(
        mut lease: Lease,
        writer: ResourceAny,
        owner: crate::owner::OwnerTag,
        digester: Digester,
        suspended: bool,
    ) -> Result<Self, StorageError> {
        let sink = ask_sink(&mut lease, writer).await?;
        Ok(DriverWriter {
            owner: Some(owner),
            lease: Some(lease),
            writer,
            sink,
            digester,
            failed: false,
            sealed: None,
            suspended,
        })
    }

    /// Makes the bytes written so far durable with the driver and says how to continue: the
    /// write stays open here too. `unsupported` (and the write goes on) if the driver cannot
    /// suspend it; any other failure leaves the write only to be aborted.
    pub async fn suspend(&mut self) -> Result<Suspended, StorageError> {
        if self.failed || self.sealed.is_some() {
            return Err(StorageError::Io("this write failed or was sealed; it cannot be suspended".into()));
        }
        let lease = self.lease.as_mut().ok_or_else(gone)?;
        if !lease.prelinked().resumable() {
            return Err(StorageError::Unsupported(format!(
                "disk `{}`: its driver was built against a contract without `resumable` (before 0.3.1)",
                lease.disk()
            )));
        }
        // The driver makes durable what it holds: every byte of the sink goes first.
        if let Err(e) = close_sink(lease, self.sink.take()).await {
            self.failed = true;
            return Err(e);
        }
        let flush_time = Duration::from_secs(self.digester.size() / FINISH_BYTES_PER_SEC);
        let (store, bindings) = lease.begin_bindings(flush_time)?;
        let r = match bindings.resumable() {
            Some(resumable) => {
                crate::pool::bounded(store.data().deadline, resumable.call_suspend(&mut *store, self.writer)).await
            }
            None => Ok(Err(wit::Error::Unsupported("suspend".into()))),
        };
        let token = lease.end(r);
        if token.is_ok() {
            // The driver gave a token: from now on this write is its session's.
            self.suspended = true;
        }
        // Bytes go on into a new sink (the driver gives one again after a suspend).
        let sink = ask_sink(lease, self.writer).await;
        let (token, sink) = match (token, sink) {
            (Ok(token), Ok(sink)) => (token, sink),
            (Err(e @ StorageError::Unsupported(_)), Ok(sink)) => {
                self.sink = sink;
                return Err(e);
            }
            (Err(e), _) | (_, Err(e)) => {
                self.failed = true;
                return Err(e);
            }
        };
        self.sink = sink;
        let Some(digest) = self.digester.snapshot() else {
            self.failed = true;
            return Err(StorageError::Io("the host could not keep the sha256 of a suspended write".into()));
        };
        Ok(Suspended { token, digest })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.size()
    }

    /// The write's owner tag (what its temp objects and write-ahead records carry).
    pub fn owner(&self) -> &str {
        self.owner.as_ref().map_or("", |o| o.as_str())
    }

    /// Appends `chunk` to the object.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Io("an earlier write failed; this write can only be aborted".into()));
        }
        if self.sealed.is_some() {
            return Err(StorageError::Io("the write's bytes were sealed; it can only be committed or aborted".into()));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let lease = self.lease.as_mut().ok_or_else(gone)?;
        let hashed = chunk.clone();
        let result = match &self.sink {
            Some(sink) => write_to_sink(lease, sink, chunk).await,
            None => {
                let (store, guest) = lease.begin()?;
                let r = crate::pool::bounded(
                    store.data().deadline,
                    guest.writer().call_write(&mut *store, self.writer, &chunk),
                )
                .await;
                lease.end(r)
            }
        };
        match result {
            Ok(()) => {
                self.digester.update(hashed);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Like [`ObjectWriter::finish`], but when `expected_sha256` is given and the bytes'
    /// sha256 differs, aborts instead: nothing is stored.
    pub async fn finish_verified(mut self, expected_sha256: Option<&str>) -> Result<ObjectInfo, StorageError> {
        self.seal(expected_sha256).await?;
        self.commit().await
    }

    /// Ends the stream of bytes without committing: the size and sha256 of what was written
    /// (what a write-ahead record names before the commit). When `expected_sha256` is given
    /// and differs, aborts instead and nothing is stored. After it, only `commit` and `abort`.
    pub async fn seal(&mut self, expected_sha256: Option<&str>) -> Result<Digest, StorageError> {
        self.seal_with(expected_sha256, None).await
    }

    /// Stops measuring: the caller measures the bytes and seals with [`DriverWriter::seal_as`]
    /// (a mirror hashes once for all its copies). Before the first write only.
    pub(crate) fn unhashed(mut self) -> Self {
        if self.digester.size() == 0 {
            self.digester = Digester::counting();
        }
        self
    }

    /// Seals with the digest the caller measured of the same bytes (see
    /// [`DriverWriter::unhashed`]); refused if the sizes differ.
    pub(crate) async fn seal_as(&mut self, digest: Digest) -> Result<Digest, StorageError> {
        self.seal_with(None, Some(digest)).await
    }

    async fn seal_with(
        &mut self,
        expected_sha256: Option<&str>,
        given: Option<Digest>,
    ) -> Result<Digest, StorageError> {
        if let Some(digest) = &self.sealed {
            return Ok(digest.clone());
        }
        let mut lease = self.lease.take().ok_or_else(gone)?;
        if self.failed {
            abort(lease, self.sink.take(), self.writer).await;
            return Err(StorageError::Io("an earlier write failed; nothing was stored".into()));
        }
        let measured = match given {
            Some(d) if d.size == self.digester.size() => Some(d),
            Some(d) => {
                abort(lease, self.sink.take(), self.writer).await;
                return Err(StorageError::Io(format!(
                    "the copy took {} bytes but {} were measured; nothing was stored",
                    self.digester.size(),
                    d.size
                )));
            }
            None => self.digester.finish(),
        };
        let Some(digest) = measured else {
            abort(lease, self.sink.take(), self.writer).await;
            return Err(StorageError::Io("the host could not compute the sha256; nothing was stored".into()));
        };
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&digest.sha256)
        {
            // The mismatch is the answer; a failed abort only adds a log line.
            if let Err(e) = abort_checked(lease, self.sink.take(), self.writer).await {
                tracing::warn!(kind = e.kind().as_str(), "discarding a write whose sha256 did not match failed");
            }
            return Err(StorageError::DigestMismatch { expected: expected.to_string(), actual: digest.sha256 });
        }
        if let Err(e) = close_sink(&mut lease, self.sink.take()).await {
            lease.discard();
            return Err(e);
        }
        self.lease = Some(lease);
        self.sealed = Some(digest.clone());
        Ok(digest)
    }

    /// Commits a sealed write atomically and returns its info, with the size and sha256 the
    /// host measured.
    pub async fn commit(mut self) -> Result<ObjectInfo, StorageError> {
        let digest = match self.sealed.clone() {
            Some(d) => d,
            None => self.seal(None).await?,
        };
        let mut lease = self.lease.take().ok_or_else(gone)?;
        let flush_time = Duration::from_secs(digest.size / FINISH_BYTES_PER_SEC);
        let (store, guest) = lease.begin_with(flush_time)?;
        let wit_digest = wit::Digest { size: digest.size, sha256: digest.sha256.clone() };
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.writer().call_finish(&mut *store, self.writer, &wit_digest),
        )
        .await;
        let info = lease.end(r);
        drop_resource(&mut lease, self.writer).await;
        let mut info = info_from_wit(info?);
        if info.size != digest.size {
            return Err(
                lease.protocol_fault(format!("finish reported {} bytes but the host wrote {}", info.size, digest.size))
            );
        }
        info.sha256 = Some(digest.sha256);
        Ok(info)
    }

    /// Throws the driver's instance away mid-write without telling the driver: what a host
    /// crash does to a write. Whatever the write kept stays for `list-temps` to report (the
    /// conformance kit checks that it does).
    pub fn crash(mut self) {
        if let Some(mut lease) = self.lease.take() {
            lease.discard();
        }
        self.sink = None;
        // The owner tag ends now: the write is gone, as after a crash.
        drop(self.owner.take());
    }

    /// Lets a suspended write go without aborting it: its session resumes it later, here or on
    /// another host, from its last token (bytes written since are dropped then). The driver's
    /// writer is dropped, which leaves a suspended write in place.
    pub async fn release(mut self) {
        let Some(mut lease) = self.lease.take() else { return };
        if let Err(e) = close_sink(&mut lease, self.sink.take()).await {
            tracing::warn!(kind = e.kind().as_str(), "closing a released write's stream failed");
        }
        drop_resource(&mut lease, self.writer).await;
    }

    /// Discards the object; nothing becomes visible.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let lease = self.lease.take().ok_or_else(gone)?;
        abort_checked(lease, self.sink.take(), self.writer).await
    }
}

impl Drop for DriverWriter {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        let (sink, writer, owner) = (self.sink.take(), self.writer, self.owner.take());
        if self.suspended {
            // Its session resumes it from the last token: only the driver's writer goes.
            cleanup_later(lease, move |mut lease| async move {
                let _ = close_sink(&mut lease, sink).await;
                drop_resource(&mut lease, writer).await;
                drop(owner);
            });
            return;
        }
        // The write stays live until its abort has run, so no sweep races it.
        cleanup_later(lease, move |lease| async move {
            abort(lease, sink, writer).await;
            drop(owner);
        });
    }
}

async fn write_to_sink(lease: &mut Lease, sink: &Resource<DynOutputStream>, chunk: Bytes) -> Result<(), StorageError> {
    let limit = lease.call_timeout();
    let store = lease.store()?;
    let stream = store
        .data_mut()
        .table()
        .get_mut(sink)
        .map_err(|e| StorageError::Io(format!("driver's write stream is gone: {e}")))?;
    let written = match tokio::time::timeout(limit, stream.blocking_write_and_flush(chunk)).await {
        Ok(written) => written,
        Err(_) => {
            // The backend stopped taking bytes: the stream (and its instance) are abandoned.
            lease.discard();
            return Err(StorageError::Unavailable {
                reason: format!("the backend took no bytes for {} s", limit.as_secs_f64()),
                retryable: true,
            });
        }
    };
    match written {
        Ok(()) => Ok(()),
        // A backend failure (e.g. disk full): the instance is fine; the caller aborts, which
        // lets the driver remove what was written.
        Err(StreamError::LastOperationFailed(e)) => {
            let full = e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
            Err(if full {
                StorageError::NoSpace { disk: lease.disk().to_string() }
            } else {
                StorageError::Io(format!("write failed: {e}"))
            })
        }
        Err(StreamError::Closed) => Err(lease.protocol_fault("the driver's write stream closed early".into())),
        Err(StreamError::Trap(e)) => Err(lease.protocol_fault(format!("write stream trapped: {e}"))),
    }
}

/// The stream the driver offers for the bytes, if any.
async fn ask_sink(lease: &mut Lease, writer: ResourceAny) -> Result<Option<Resource<DynOutputStream>>, StorageError> {
    let (store, guest) = lease.begin()?;
    let sink = crate::pool::bounded(store.data().deadline, guest.writer().call_sink(&mut *store, writer)).await;
    lease.end_infallible(sink)
}

/// Aborts, logging (not returning) a failure: for drops and paths that already failed.
async fn abort(lease: Lease, sink: Option<Resource<DynOutputStream>>, writer: ResourceAny) {
    if let Err(e) = abort_checked(lease, sink, writer).await {
        tracing::warn!(kind = e.kind().as_str(), "aborting an unfinished write failed");
    }
}

async fn abort_checked(
    mut lease: Lease,
    sink: Option<Resource<DynOutputStream>>,
    writer: ResourceAny,
) -> Result<(), StorageError> {
    let closed = close_sink(&mut lease, sink).await;
    let (store, guest) = lease.begin()?;
    let r = crate::pool::bounded(store.data().deadline, guest.writer().call_abort(&mut *store, writer)).await;
    let aborted = lease.end(r);
    drop_resource(&mut lease, writer).await;
    closed.and(aborted)
}

/// Drops the driver's stream (after the last write, all bytes are flushed).
async fn close_sink(lease: &mut Lease, sink: Option<Resource<DynOutputStream>>) -> Result<(), StorageError> {
    let Some(sink) = sink else { return Ok(()) };
    let store = lease.store()?;
    match store.data_mut().table().delete(sink) {
        Ok(mut stream) => {
            stream.cancel().await;
            Ok(())
        }
        Err(e) => Err(StorageError::Io(format!("driver's write stream is gone: {e}"))),
    }
}

/// Drops a resource the driver handed out (running its destructor under the call deadline);
/// a failure means the instance is unusable and it is thrown away.
pub(crate) async fn drop_resource(lease: &mut Lease, resource: ResourceAny) {
    let Ok((store, _)) = lease.begin() else { return };
    let dropped = crate::pool::bounded(store.data().deadline, resource.resource_drop_async(&mut *store)).await;
    if lease.end_infallible(dropped).is_err() {
        tracing::warn!("dropping a plugin resource failed; instance replaced");
    }
}

fn gone() -> StorageError {
    StorageError::Io("the write was already finished or aborted".into())
}
