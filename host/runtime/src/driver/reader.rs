//! Streaming reads: chunks come from the stream the driver handed over (read by the host
//! directly) or from the driver's `read`, and the host stops at the end of the range.

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi_io::streams::{DynInputStream, StreamError};

use super::lease::Lease;
use super::writer::drop_resource;
use crate::error::StorageError;
use crate::pool::cleanup_later;
use crate::types::ObjectInfo;

/// Largest chunk the host asks for at a time.
pub const MAX_CHUNK: usize = 1 << 20;

/// An object being read.
pub struct DriverReader {
    lease: Option<Lease>,
    reader: ResourceAny,
    source: Option<Resource<DynInputStream>>,
    info: ObjectInfo,
    remaining: u64,
    path: String,
}

impl DriverReader {
    pub(crate) async fn new(
        mut lease: Lease,
        reader: ResourceAny,
        info: ObjectInfo,
        remaining: u64,
        path: String,
    ) -> Result<Self, StorageError> {
        let (store, guest) = lease.begin()?;
        let source = crate::pool::bounded(store.data().deadline, guest.reader().call_source(&mut *store, reader)).await;
        let source = lease.end_infallible(source)?;
        Ok(DriverReader { lease: Some(lease), reader, source, info, remaining, path })
    }

    /// The object's info (its whole size, not the range's).
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// Replaces the object's info (a queued object answers as its disk's, see `fallback`).
    pub(crate) fn set_info(&mut self, info: ObjectInfo) {
        self.info = info;
    }

    /// Bytes of the requested range not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk of at most `max` bytes, or `None` at the end of the range.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StorageError> {
        if self.remaining == 0 {
            self.close().await;
            return Ok(None);
        }
        let want = (max.clamp(1, MAX_CHUNK) as u64).min(self.remaining) as usize;
        let lease = self.lease.as_mut().ok_or_else(closed)?;
        let chunk = match &self.source {
            Some(source) => {
                let limit = lease.call_timeout();
                let store = lease.store()?;
                let stream = store
                    .data_mut()
                    .table()
                    .get_mut(source)
                    .map_err(|e| StorageError::Io(format!("driver's read stream is gone: {e}")))?;
                let Ok(read) = tokio::time::timeout(limit, stream.blocking_read(want)).await else {
                    // The backend stopped sending: the stream (and its instance) are abandoned.
                    lease.discard();
                    self.lease = None;
                    return Err(StorageError::Unavailable {
                        reason: format!("the backend sent nothing for {} s", limit.as_secs_f64()),
                        retryable: true,
                    });
                };
                match read {
                    Ok(bytes) => bytes,
                    Err(StreamError::Closed) => Bytes::new(),
                    Err(StreamError::LastOperationFailed(e)) => {
                        self.close().await;
                        return Err(StorageError::Io(format!("read of `{}` failed: {e}", self.path)));
                    }
                    Err(StreamError::Trap(e)) => {
                        return Err(lease.protocol_fault(format!("read stream trapped: {e}")));
                    }
                }
            }
            None => {
                let (store, guest) = lease.begin()?;
                let r = crate::pool::bounded(
                    store.data().deadline,
                    guest.reader().call_read(&mut *store, self.reader, want as u64),
                )
                .await;
                Bytes::from(lease.end(r)?)
            }
        };
        if chunk.is_empty() {
            // The object shrank under us (changed outside Stowage) or the driver miscounted.
            let missing = self.remaining;
            self.close().await;
            return Err(StorageError::Io(format!(
                "`{}` ended {missing} bytes before its recorded size (changed outside Stowage?)",
                self.path
            )));
        }
        if chunk.len() as u64 > self.remaining || chunk.len() > want {
            let lease = self.lease.as_mut().ok_or_else(closed)?;
            return Err(lease.protocol_fault(format!("read of `{}` returned more bytes than asked", self.path)));
        }
        self.remaining -= chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Releases the driver's reader (also done at the end of the range, or on drop).
    pub async fn close(&mut self) {
        let Some(mut lease) = self.lease.take() else { return };
        release(&mut lease, self.source.take(), self.reader).await;
    }
}

impl Drop for DriverReader {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        let (source, reader) = (self.source.take(), self.reader);
        cleanup_later(lease, move |mut lease| async move { release(&mut lease, source, reader).await });
    }
}

async fn release(lease: &mut Lease, source: Option<Resource<DynInputStream>>, reader: ResourceAny) {
    if let Some(source) = source
        && let Ok(store) = lease.store()
    {
        match store.data_mut().table().delete(source) {
            Ok(mut stream) => stream.cancel().await,
            Err(_) => lease.discard(),
        }
    }
    drop_resource(lease, reader).await;
}

fn closed() -> StorageError {
    StorageError::Io("the reader was already closed".into())
}
