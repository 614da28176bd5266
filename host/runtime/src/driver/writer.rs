//! Streaming writes: the host measures size and sha256 of every byte on its way to the driver,
//! and moves the bytes into the stream the driver handed over (a file, an HTTP body) when it
//! has one, so they never pass through the plugin's memory.

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi_io::streams::{DynOutputStream, StreamError};

use super::digest::Digester;
use super::pool::Lease;
use crate::bindings::wit;
use crate::convert::info_from_wit;
use crate::error::StorageError;
use crate::types::ObjectInfo;

/// An object being written. Nothing is visible at its path until [`ObjectWriter::finish`]
/// succeeds; dropping it unfinished aborts the write.
pub struct ObjectWriter {
    lease: Option<Lease>,
    writer: ResourceAny,
    sink: Option<Resource<DynOutputStream>>,
    digester: Digester,
    path: String,
}

impl ObjectWriter {
    pub(crate) async fn new(mut lease: Lease, writer: ResourceAny, path: String) -> Result<Self, StorageError> {
        let (store, guest) = lease.begin()?;
        let sink = guest.writer().call_sink(&mut *store, writer).await;
        let sink = lease.end_infallible(sink)?;
        Ok(ObjectWriter {
            lease: Some(lease),
            writer,
            sink,
            digester: Digester::new(),
            path,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.size()
    }

    /// Appends `chunk` to the object.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.digester.update(chunk.clone());
        let lease = self.lease.as_mut().ok_or_else(gone)?;
        match &self.sink {
            Some(sink) => {
                let store = lease.store()?;
                let stream = store
                    .data_mut()
                    .table()
                    .get_mut(sink)
                    .map_err(|e| StorageError::Io(format!("driver's write stream is gone: {e}")))?;
                match stream.blocking_write_and_flush(chunk).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(stream_error(lease, e)),
                }
            }
            None => {
                let (store, guest) = lease.begin()?;
                let r = guest.writer().call_write(&mut *store, self.writer, &chunk).await;
                lease.end(r)
            }
        }
    }

    /// Commits the object atomically and returns its info, with the size and sha256 the host
    /// measured.
    pub async fn finish(mut self) -> Result<ObjectInfo, StorageError> {
        let digest = self.digester.finish();
        let mut lease = self.lease.take().ok_or_else(gone)?;
        close_sink(&mut lease, self.sink.take()).await?;
        let (store, guest) = lease.begin()?;
        let wit_digest = wit::Digest {
            size: digest.size,
            sha256: digest.sha256.clone(),
        };
        let r = guest.writer().call_finish(&mut *store, self.writer, &wit_digest).await;
        let info = lease.end(r);
        drop_resource(&mut lease, self.writer).await;
        let mut info = info_from_wit(info?);
        if info.size != digest.size {
            return Err(lease.protocol_fault(format!(
                "finish reported {} bytes for `{}` but the host wrote {}",
                info.size, self.path, digest.size
            )));
        }
        info.sha256 = Some(digest.sha256);
        Ok(info)
    }

    /// Discards the object; nothing becomes visible.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let mut lease = self.lease.take().ok_or_else(gone)?;
        abort(&mut lease, self.sink.take(), self.writer).await
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else { return };
        let (sink, writer) = (self.sink.take(), self.writer);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = abort(&mut lease, sink, writer).await {
                        tracing::warn!(error = %e, "aborting a dropped write failed");
                    }
                });
            }
            // No runtime to abort on: the instance (and its unfinished temp state) is thrown
            // away; drivers ignore and clean up stale temporaries.
            Err(_) => lease.discard(),
        }
    }
}

async fn abort(
    lease: &mut Lease,
    sink: Option<Resource<DynOutputStream>>,
    writer: ResourceAny,
) -> Result<(), StorageError> {
    let closed = close_sink(lease, sink).await;
    let (store, guest) = lease.begin()?;
    let r = guest.writer().call_abort(&mut *store, writer).await;
    let aborted = lease.end(r);
    drop_resource(lease, writer).await;
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

/// Drops a resource the driver handed out; a failure means the instance is unusable.
pub(crate) async fn drop_resource(lease: &mut Lease, resource: ResourceAny) {
    let dropped = match lease.store() {
        Ok(store) => resource.resource_drop_async(&mut *store).await,
        Err(_) => return,
    };
    if lease.end_infallible(dropped).is_err() {
        tracing::warn!("dropping a plugin resource failed; instance replaced");
    }
}

fn stream_error(lease: &mut Lease, e: StreamError) -> StorageError {
    match e {
        StreamError::Closed => lease.protocol_fault("the driver's write stream closed early".into()),
        StreamError::LastOperationFailed(e) => {
            lease.discard();
            StorageError::Io(format!("write failed: {e}"))
        }
        StreamError::Trap(e) => lease.protocol_fault(format!("write stream trapped: {e}")),
    }
}

fn gone() -> StorageError {
    StorageError::Io("the write was already finished or aborted".into())
}
