//! A write that went through the policy pipeline. Its end is audited in order:
//!
//! 1. the bytes end: the host knows their size and sha256 (`seal`);
//! 2. the policies are told `before` the commit: their write-ahead records, naming size and
//!    sha256, are durable now; if a required policy could not record, the write is aborted
//!    and nothing becomes visible;
//! 3. the driver commits;
//! 4. the host settles the write-ahead records (committed or failed) and the policies learn
//!    the outcome `after`.
//!
//! A crash between 2 and 4 leaves an intent without an outcome, which the next host settles
//! by looking at the object (`Storage::reconcile`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::audit::{self, pause_point};
use crate::driver::ObjectWriter;
use crate::error::StorageError;
use crate::ledger::{Effect, Ledger};
use crate::policy::{OperationOutcome, OperationRequest, Phase, Pipeline};
use crate::types::ObjectInfo;
use crate::usage::Reservation;

/// An object being written through [`crate::Storage`]. Nothing is visible until `finish`.
pub struct Upload {
    inner: Option<ObjectWriter>,
    /// The bytes it takes of the disk's limits (none: the disk has none).
    reservation: Option<Reservation>,
    /// Why a chunk failed (a limit refused it, or the driver could not write it, e.g. a full
    /// disk): what the policies learn when the write is aborted.
    failed: Option<StorageError>,
    request: OperationRequest,
    pipeline: Pipeline,
    ledger: Arc<Ledger>,
    started: Instant,
}

impl Upload {
    pub(crate) fn new(
        inner: ObjectWriter,
        reservation: Option<Reservation>,
        request: OperationRequest,
        pipeline: Pipeline,
        ledger: Arc<Ledger>,
        started: Instant,
    ) -> Upload {
        Upload { inner: Some(inner), reservation, failed: None, request, pipeline, ledger, started }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, ObjectWriter::written)
    }

    /// Appends `chunk`, unless it would break the disk's size limit or quota (then nothing
    /// more is taken, and the write should be aborted).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if let Some(reservation) = self.reservation.as_mut()
            && let Err(e) = reservation.take(chunk.len() as u64)
        {
            self.failed = Some(e.clone());
            return Err(e);
        }
        let result = match self.inner.as_mut() {
            Some(w) => w.write(chunk).await,
            None => Err(StorageError::Io("the write was already finished or aborted".into())),
        };
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| e.clone());
        }
        result
    }

    /// Commits the object; the policies learn its size and sha256 before and after.
    pub async fn finish(self) -> Result<ObjectInfo, StorageError> {
        self.finish_verified(None).await
    }

    /// Commits the object if its sha256 is `expected_sha256` (when given); else stores nothing
    /// and fails with [`StorageError::DigestMismatch`]. See the module's docs for the order.
    pub async fn finish_verified(mut self, expected_sha256: Option<&str>) -> Result<ObjectInfo, StorageError> {
        let Some(mut inner) = self.inner.take() else {
            return Err(StorageError::Io("the write was already finished or aborted".into()));
        };
        let digest = match inner.seal(expected_sha256).await {
            Ok(d) => d,
            Err(e) => {
                // (Upload is not Sync: no `&self` may live across an await.)
                let outcome = self.outcome(Some(inner.written()), None, Some(e.clone()));
                self.pipeline.observe(&outcome, Phase::After, None).await;
                return Err(e);
            }
        };
        let mut outcome = self.outcome(Some(digest.size), Some(digest.sha256.clone()), None);
        let intent =
            audit::intent(Effect::Put, &self.request, Some(digest.size), Some(digest.sha256.clone()), inner.owner());
        pause_point("before-intent").await;
        let before = self.pipeline.observe(&outcome, Phase::Before, Some(&intent)).await;
        if let Some(e) = before.error() {
            // Not recorded, so not stored.
            if let Err(abort) = inner.abort().await {
                tracing::warn!(kind = abort.kind().as_str(), "aborting a write the ledger could not record failed");
            }
            audit::settle(&self.ledger, &self.request, &intent, &before.appended, Err(&e));
            outcome.error = Some(e.clone());
            self.pipeline.observe(&outcome, Phase::After, None).await;
            return Err(e);
        }
        pause_point("after-intent").await;
        let result = inner.commit().await;
        if let (Ok(_), Some(reservation)) = (&result, self.reservation.take()) {
            reservation.commit();
        }
        pause_point("after-commit").await;
        audit::settle(&self.ledger, &self.request, &intent, &before.appended, result.as_ref().map(|_| ()));
        outcome.error = result.as_ref().err().cloned();
        outcome.duration = self.started.elapsed();
        self.pipeline.observe(&outcome, Phase::After, None).await;
        result
    }

    /// Discards the object; the policies learn it failed.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let Some(inner) = self.inner.take() else { return Ok(()) };
        let written = inner.written();
        let result = inner.abort().await;
        let why =
            self.failed.take().unwrap_or_else(|| StorageError::Io("the write was aborted; nothing was stored".into()));
        let outcome = self.outcome(Some(written), None, Some(why));
        self.pipeline.observe(&outcome, Phase::After, None).await;
        result
    }

    fn outcome(&self, size: Option<u64>, sha256: Option<String>, error: Option<StorageError>) -> OperationOutcome {
        OperationOutcome { size, sha256, error, ..OperationOutcome::of(self.request.clone(), self.started) }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        // The inner writer aborts itself on drop; the policies still learn of the failure.
        let why = self
            .failed
            .take()
            .unwrap_or_else(|| StorageError::Io("the write was abandoned; nothing was stored".into()));
        let outcome = self.outcome(Some(inner.written()), None, Some(why));
        drop(inner);
        let pipeline = self.pipeline.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { pipeline.observe(&outcome, Phase::After, None).await });
        }
    }
}

#[cfg(test)]
mod tests {
    #[allow(dead_code, reason = "compile-time check only")]
    fn finishing_is_send(u: super::Upload) {
        fn send<T: Send>(_: T) {}
        send(u.finish_verified(None));
    }
}
