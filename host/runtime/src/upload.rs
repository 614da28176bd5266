//! A write that went through the policy pipeline: the policies learn its outcome when it is
//! finished, aborted or abandoned.

use std::time::Instant;

use bytes::Bytes;

use crate::driver::ObjectWriter;
use crate::error::StorageError;
use crate::policy::{OperationOutcome, OperationRequest, Pipeline};
use crate::types::ObjectInfo;

/// An object being written through [`crate::Storage`]. Nothing is visible until `finish`.
pub struct Upload {
    inner: Option<ObjectWriter>,
    request: OperationRequest,
    pipeline: Pipeline,
    started: Instant,
}

impl Upload {
    pub(crate) fn new(inner: ObjectWriter, request: OperationRequest, pipeline: Pipeline, started: Instant) -> Upload {
        Upload { inner: Some(inner), request, pipeline, started }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, ObjectWriter::written)
    }

    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match self.inner.as_mut() {
            Some(w) => w.write(chunk).await,
            None => Err(StorageError::Io("the write was already finished or aborted".into())),
        }
    }

    /// Commits the object; the policies learn its size and sha256.
    pub async fn finish(self) -> Result<ObjectInfo, StorageError> {
        self.finish_verified(None).await
    }

    /// Commits the object if its sha256 is `expected_sha256` (when given); else stores nothing
    /// and fails with [`StorageError::DigestMismatch`]. The policies learn the outcome.
    pub async fn finish_verified(mut self, expected_sha256: Option<&str>) -> Result<ObjectInfo, StorageError> {
        let Some(inner) = self.inner.take() else {
            return Err(StorageError::Io("the write was already finished or aborted".into()));
        };
        let result = inner.finish_verified(expected_sha256).await;
        let (size, sha256) = result.as_ref().map_or((None, None), |i| (Some(i.size), i.sha256.clone()));
        let outcome = self.outcome(size, sha256, result.as_ref().err().cloned());
        self.pipeline.observe(&outcome).await;
        result
    }

    /// Discards the object; the policies learn it failed.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let Some(inner) = self.inner.take() else { return Ok(()) };
        let written = inner.written();
        let result = inner.abort().await;
        let outcome = self.outcome(Some(written), None, Some(StorageError::Io("the write was aborted; nothing was stored".into())));
        self.pipeline.observe(&outcome).await;
        result
    }

    fn outcome(&self, size: Option<u64>, sha256: Option<String>, error: Option<StorageError>) -> OperationOutcome {
        OperationOutcome { request: self.request.clone(), size, sha256, duration: self.started.elapsed(), error }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        // The inner writer aborts itself on drop; the policies still learn of the failure.
        let outcome = OperationOutcome {
            request: self.request.clone(),
            size: Some(inner.written()),
            sha256: None,
            duration: self.started.elapsed(),
            error: Some(StorageError::Io("the write was abandoned; nothing was stored".into())),
        };
        drop(inner);
        let pipeline = self.pipeline.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { pipeline.observe(&outcome).await });
        }
    }
}
