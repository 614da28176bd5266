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
use crate::driver::{Digest, ObjectWriter};
use crate::error::StorageError;
use crate::fallback::{QueuedOp, Reroute};
use crate::ledger::{Effect, Intent, Ledger, Record};
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
    /// On a disk with a fallback: how the write can move there (or that it went there).
    reroute: Option<Reroute>,
    request: OperationRequest,
    pipeline: Pipeline,
    ledger: Arc<Ledger>,
    started: Instant,
    /// Suspended at least once: dropped, it is left for its session (the policies learn
    /// nothing; the write is not over).
    suspended: bool,
}

impl Upload {
    pub(crate) fn new(
        inner: ObjectWriter,
        reservation: Option<Reservation>,
        reroute: Option<Reroute>,
        request: OperationRequest,
        pipeline: Pipeline,
        ledger: Arc<Ledger>,
        started: Instant,
    ) -> Upload {
        Upload {
            inner: Some(inner),
            reservation,
            failed: None,
            reroute,
            request,
            pipeline,
            ledger,
            started,
            suspended: false,
        }
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
        if let Some(reroute) = self.reroute.as_mut() {
            reroute.keep(&chunk);
        }
        let result = match self.inner.as_mut() {
            Some(w) => w.write(chunk).await,
            None => Err(StorageError::Io("the write was already finished or aborted".into())),
        };
        let result = match result {
            Err(e) => match self.relocate(&e).await {
                Ok(true) => return Ok(()),
                Ok(false) => Err(e),
                Err(fallback) => Err(fallback),
            },
            ok => ok,
        };
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| e.clone());
        }
        result
    }

    /// Moves the write to its disk's fallback after the disk's failure `e`, if it can (the
    /// failure is one a fallback is for, and every byte is still in hand); whether it did, or
    /// why the fallback could not take it (the answer the client should get: the fallback's
    /// refusal, e.g. its quota, says more than the disk's absence). The primary's writer is
    /// dropped, which aborts it.
    async fn relocate(&mut self, e: &StorageError) -> Result<bool, StorageError> {
        let Some(reroute) = self.reroute.as_mut().filter(|r| r.moves_on(e)) else { return Ok(false) };
        let (writer, reservation) = reroute.relocate().await.inspect_err(|moved| {
            tracing::warn!(kind = moved.kind().as_str(), "the fallback could not take a write either");
        })?;
        self.inner = Some(writer);
        self.reservation = reservation;
        Ok(true)
    }

    /// Makes the bytes so far durable with the driver and returns what resumes the write from
    /// here (`Storage::resumable_writer`); the write also goes on here. `unsupported` (and the
    /// write goes on) if it cannot be suspended; any other failure leaves it only to abort.
    pub async fn suspend(&mut self) -> Result<crate::driver::Suspended, StorageError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(StorageError::Io("the write was already finished or aborted".into()));
        };
        let suspended = inner.suspend().await;
        match &suspended {
            Ok(_) => self.suspended = true,
            Err(StorageError::Unsupported(_)) => {}
            Err(e) => {
                self.failed.get_or_insert_with(|| e.clone());
            }
        }
        suspended
    }

    /// Marks a write resumed from a token as its session's: dropped, it is released, never
    /// aborted.
    pub(crate) fn resumed(mut self) -> Upload {
        self.suspended = true;
        self
    }

    /// Lets a suspended write go between requests: it is not over, so the policies learn
    /// nothing and the driver keeps it for its session (bytes after the last suspend are
    /// dropped when it resumes). What it took of the disk's limits is given back; the resumed
    /// write takes it again.
    pub async fn release(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release().await;
        }
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
        let mut sealed = inner.seal(expected_sha256).await;
        if let Err(e) = &sealed {
            match self.relocate(e).await {
                Ok(true) => {
                    if let Some(moved) = self.inner.take() {
                        inner = moved;
                        sealed = inner.seal(expected_sha256).await;
                    }
                }
                Ok(false) => {}
                Err(fallback) => sealed = Err(fallback),
            }
        }
        let digest = match sealed {
            Ok(d) => d,
            Err(e) => {
                // (Upload is not Sync: no `&self` may live across an await.)
                let outcome = self.outcome(Some(inner.written()), None, Some(e.clone()));
                self.pipeline.observe(&outcome, Phase::After, None).await;
                return Err(e);
            }
        };
        let mut outcome = self.outcome(Some(digest.size), Some(digest.sha256.clone()), None);
        let intent = self.intent(&digest, inner.owner());
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
        let mut result = self.commit(inner, &intent).await;
        audit::settle(&self.ledger, &self.request, &intent, &before.appended, result.as_ref().map(|_| ()));
        if let Err(e) = &result {
            match self.relocate(e).await {
                // The disk went away at the commit, with every byte still in hand: the write
                // is committed on the fallback instead, under the host's own write-ahead record.
                Ok(true) => {
                    if let Some(moved) = self.inner.take() {
                        result = self.commit_moved(moved, expected_sha256).await;
                    }
                }
                Ok(false) => {}
                Err(fallback) => result = Err(fallback),
            }
        }
        outcome.error = result.as_ref().err().cloned();
        outcome.duration = self.started.elapsed();
        self.pipeline.observe(&outcome, Phase::After, None).await;
        result
    }

    /// The write-ahead intent of the sealed write: its disk and path, or its fallback entry's.
    fn intent(&self, digest: &Digest, owner: &str) -> Intent {
        let mut intent =
            audit::intent(Effect::Put, &self.request, Some(digest.size), Some(digest.sha256.clone()), owner);
        if let Some(fallback) = self.reroute.as_ref().and_then(Reroute::landed)
            && let Some(entry) = self.reroute.as_ref().and_then(|r| fallback.entry_path(r.path()).ok())
        {
            intent.disk = fallback.disk().name().to_string();
            intent.path = entry.into_string();
        }
        intent
    }

    /// Commits `inner`; on the fallback, under the path's lock, noting the entry and recording
    /// `fallback_written`. The info names the object's path on its disk.
    async fn commit(&mut self, inner: ObjectWriter, intent: &Intent) -> Result<ObjectInfo, StorageError> {
        let landed = self.reroute.as_ref().and_then(|r| r.landed().cloned().map(|f| (f, r.path().clone())));
        let Some((fallback, path)) = landed else {
            let result = inner.commit().await;
            if let (Ok(_), Some(reservation)) = (&result, self.reservation.take()) {
                reservation.commit();
            }
            pause_point("after-commit").await;
            return result;
        };
        let guard = fallback.lock().await?;
        let result = inner.commit().await;
        if let (Ok(_), Some(reservation)) = (&result, self.reservation.take()) {
            reservation.commit();
        }
        let info = result?;
        fallback.noted(
            &path,
            Some(crate::fallback::Queued {
                op: QueuedOp::Put,
                size: info.size,
                sha256: info.sha256.clone(),
                queued_ms: info.modified.or_else(|| Some(crate::ledger::now_ms())),
            }),
        );
        drop(guard);
        pause_point("after-commit").await;
        let record = fallback.written_record(&self.request.ctx, &path, &intent.path, QueuedOp::Put, &info);
        // The intent is durable and its settle names the entry; this says why it is there.
        if let Err(e) = self.ledger.append(&record).await {
            tracing::warn!(error = %e, "a write that went to the fallback could not be recorded as such");
        }
        Ok(fallback.as_primary(info, &path))
    }

    /// Commits a write that moved at its commit: sealed again on the fallback, announced by
    /// the host's own write-ahead record (the policies' named the disk, and is settled as
    /// failed), then committed as any write on the fallback.
    async fn commit_moved(
        &mut self,
        mut moved: ObjectWriter,
        expected_sha256: Option<&str>,
    ) -> Result<ObjectInfo, StorageError> {
        let digest = moved.seal(expected_sha256).await?;
        let intent = self.intent(&digest, moved.owner());
        let ahead = Record {
            action: "fallback_write_intent".into(),
            path: self.request.path.clone(),
            disk: self.request.ctx.disk.clone(),
            actor: self.request.ctx.actor.clone(),
            size: Some(digest.size),
            sha256: Some(digest.sha256.clone()),
            request_id: self.request.ctx.request_id.clone(),
            key: self.request.ctx.authenticated_as.clone(),
            intent: Some(intent.clone()),
            ..Record::default()
        };
        let index = match self.ledger.append(&ahead).await {
            Ok(index) => index,
            Err(e) => {
                let e = StorageError::AuditUnavailable(e.to_string());
                if let Err(abort) = moved.abort().await {
                    tracing::warn!(kind = abort.kind().as_str(), "aborting a write the ledger could not record failed");
                }
                return Err(e);
            }
        };
        let result = self.commit(moved, &intent).await;
        audit::settle(&self.ledger, &self.request, &intent, &[index], result.as_ref().map(|_| ()));
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
        if self.suspended {
            // Released, not aborted (see `DriverWriter`): the session goes on.
            drop(inner);
            return;
        }
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
