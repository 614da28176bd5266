//! A write to a disk with a fallback, which can still move there. The host keeps the write's
//! first bytes (up to [`WINDOW`], clones of the chunks, not copies): if the primary answers a
//! retryable `unavailable` while every byte is still in hand (at a chunk, when the stream
//! ends, or at the commit), the write is replayed onto the fallback and the client never
//! notices. A larger write that fails later fails as before (retryable); its retry goes
//! straight to the fallback, since the primary is then skipped for a while.
//!
//! [`WINDOW`] matches the S3 driver's default part size: S3 first reaches its server when a
//! part fills or at the commit, so every failure of a first contact is still in the window.

use std::sync::Arc;

use bytes::Bytes;
use stowage_path::ObjectPath;

use super::{Fallback, QueuedOp};
use crate::driver::ObjectWriter;
use crate::error::StorageError;
use crate::types::{RequestContext, WriteOptions};
use crate::usage::{Reservation, Usage};

/// Bytes of a write kept so that it can move to the fallback.
pub(crate) const WINDOW: u64 = 8 << 20;

/// How a write can reach its disk's fallback.
pub(crate) struct Reroute {
    fallback: Fallback,
    /// The write's context on the fallback disk.
    ctx: RequestContext,
    /// The object's path on the primary.
    path: ObjectPath,
    /// The client's write options.
    options: WriteOptions,
    /// The fallback disk's limits.
    usage: Option<Arc<Usage>>,
    /// Every chunk so far, while they fit in the window; `None` once they do not.
    window: Option<Vec<Bytes>>,
    kept: u64,
    /// The write goes to the fallback.
    landed: bool,
}

impl Reroute {
    pub(crate) fn new(
        fallback: Fallback,
        ctx: RequestContext,
        path: ObjectPath,
        options: WriteOptions,
        usage: Option<Arc<Usage>>,
    ) -> Reroute {
        // A create-only write cannot move: the fallback cannot tell whether the primary
        // holds the path.
        let window = (!options.create_only).then(Vec::new);
        Reroute { fallback, ctx, path, options, usage, window, kept: 0, landed: false }
    }

    /// The fallback, if the write goes there.
    pub(crate) fn landed(&self) -> Option<&Fallback> {
        self.landed.then_some(&self.fallback)
    }

    /// The object's path on the primary.
    pub(crate) fn path(&self) -> &ObjectPath {
        &self.path
    }

    /// Keeps `chunk` (about to go to the primary) while the write still fits in the window.
    pub(crate) fn keep(&mut self, chunk: &Bytes) {
        if self.landed {
            return;
        }
        self.kept = self.kept.saturating_add(chunk.len() as u64);
        match &mut self.window {
            Some(window) if self.kept <= WINDOW => window.push(chunk.clone()),
            _ => self.window = None,
        }
    }

    /// Whether the primary's failure `e` moves the write to the fallback (noting the failure).
    pub(crate) fn moves_on(&self, e: &StorageError) -> bool {
        // Noted even when the write can no longer move: its retry then goes straight there.
        !self.landed && self.fallback.primary_failed(e) && self.window.is_some()
    }

    /// Opens the write's entry on the fallback disk.
    pub(crate) async fn open(&mut self) -> Result<(ObjectWriter, Option<Reservation>), StorageError> {
        let entry = self.fallback.entry_path(&self.path)?;
        let options = Fallback::entry_options(&self.options, QueuedOp::Put)?;
        let opened =
            crate::usage::open_writer(self.fallback.disk(), self.usage.as_ref(), &self.ctx, &entry, &options).await?;
        self.landed = true;
        Ok(opened)
    }

    /// Moves the write: opens its entry on the fallback and replays every byte written so far.
    pub(crate) async fn relocate(&mut self) -> Result<(ObjectWriter, Option<Reservation>), StorageError> {
        let window = self.window.take().unwrap_or_default();
        let (mut writer, mut reservation) = self.open().await?;
        for chunk in window {
            if let Some(r) = reservation.as_mut() {
                r.take(chunk.len() as u64)?;
            }
            writer.write(chunk).await?;
        }
        tracing::info!(
            disk = %self.fallback.primary,
            fallback = self.fallback.disk().name(),
            bytes = self.kept,
            "a write moved to the fallback"
        );
        Ok((writer, reservation))
    }
}
