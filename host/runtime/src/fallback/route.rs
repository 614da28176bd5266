//! How each operation on a disk with a fallback sees its queue: a write goes to the fallback
//! when the disk is away or the path is queued; a read, stat or exists of a queued path is
//! answered from its entry; a delete of a queued path becomes a tombstone; a listing merges
//! the entries into the disk's pages.

use bytes::Bytes;
use stowage_path::{ObjectPath, Prefix};

use super::{Fallback, Queued, QueuedOp, Reroute};
use crate::driver::{ObjectReader, ObjectWriter};
use crate::error::StorageError;
use crate::storage::{Storage, Target};
use crate::types::{ByteRange, ListPage, ObjectInfo, RequestContext, WriteOptions};
use crate::usage::Reservation;

/// A listing cursor of a disk with a fallback: the last path the listing has passed (hex),
/// `.`, and the driver's own cursor.
const CURSOR_SEPARATOR: char = '.';

/// What a path is through its disk's queue.
pub(crate) enum Seen {
    /// Not queued: ask the disk.
    Disk,
    /// A queued write: its entry on the fallback.
    Entry(Fallback, ObjectPath),
    /// A queued delete: gone.
    Deleted,
}

impl Storage {
    /// What `path` of `t.disk` is through the disk's queue (`Disk` when it has no fallback).
    pub(crate) async fn seen(&self, t: &Target, ctx: &RequestContext) -> Result<Seen, StorageError> {
        let Some(fallback) = self.fallback_of(t.disk.name()) else { return Ok(Seen::Disk) };
        Ok(match fallback.queued(ctx, &t.path).await? {
            None => Seen::Disk,
            Some(Queued { op: QueuedOp::Delete, .. }) => Seen::Deleted,
            Some(_) => Seen::Entry(fallback.clone(), fallback.entry_path(&t.path)?),
        })
    }

    /// Opens the write of `t`: on its disk, or on the disk's fallback when the disk is away
    /// or the path is queued. With a fallback, the write can still move there ([`Reroute`]).
    pub(crate) async fn open_route(
        &self,
        t: &Target,
        ctx: &RequestContext,
        options: &WriteOptions,
    ) -> Result<(ObjectWriter, Option<Reservation>, Option<Reroute>), StorageError> {
        let usage = self.usage_of(t.disk.name());
        let Some(fallback) = self.fallback_of(t.disk.name()) else {
            let (writer, reservation) = crate::usage::open_writer(&t.disk, usage, ctx, &t.path, options).await?;
            return Ok((writer, reservation, None));
        };
        Fallback::entry_options(options, QueuedOp::Put)?;
        let queued = fallback.queued(ctx, &t.path).await?;
        let fctx = RequestContext { disk: fallback.disk().name().to_string(), ..ctx.clone() };
        let fusage = self.usage_of(fallback.disk().name()).cloned();
        let mut reroute = Reroute::new(fallback.clone(), fctx, t.path.clone(), options.clone(), fusage);
        if options.create_only {
            match (&queued, fallback.skipping_primary()) {
                (Some(Queued { op: QueuedOp::Put, .. }), _) => {
                    return Err(StorageError::AlreadyExists(t.path.to_string()));
                }
                (Some(_), _) => {
                    return Err(StorageError::Unavailable {
                        reason: "a delete of this path waits to be synced to the disk; try again".into(),
                        retryable: true,
                    });
                }
                (None, true) => {
                    return Err(StorageError::Unavailable {
                        reason: format!(
                            "disk `{}` is unavailable, and a create-only write cannot go to its fallback (the fallback cannot tell whether the path exists)",
                            t.disk.name()
                        ),
                        retryable: true,
                    });
                }
                (None, false) => {}
            }
        } else if queued.is_some() || fallback.skipping_primary() {
            let (writer, reservation) = reroute.open().await?;
            return Ok((writer, reservation, Some(reroute)));
        }
        match crate::usage::open_writer(&t.disk, usage, ctx, &t.path, options).await {
            Ok((writer, reservation)) => Ok((writer, reservation, Some(reroute))),
            Err(e) if reroute.moves_on(&e) => {
                let (writer, reservation) = reroute.open().await?;
                Ok((writer, reservation, Some(reroute)))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the read of `t`, from its queue entry if it has one.
    pub(crate) async fn open_reader(
        &self,
        t: &Target,
        ctx: &RequestContext,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, StorageError> {
        match self.seen(t, ctx).await? {
            Seen::Disk => t.disk.reader(ctx, &t.path, range).await,
            Seen::Deleted => Err(StorageError::NotFound(t.path.to_string())),
            Seen::Entry(fallback, entry) => {
                let fctx = RequestContext { disk: fallback.disk().name().to_string(), ..ctx.clone() };
                let mut reader = fallback.disk().reader(&fctx, &entry, range).await?;
                let info = fallback.as_primary(reader.info().clone(), &t.path);
                reader.set_info(info);
                Ok(reader)
            }
        }
    }

    /// `t`'s info, from its queue entry if it has one.
    pub(crate) async fn stat_routed(&self, t: &Target, ctx: &RequestContext) -> Result<ObjectInfo, StorageError> {
        match self.seen(t, ctx).await? {
            Seen::Disk => t.disk.stat(ctx, &t.path).await,
            Seen::Deleted => Err(StorageError::NotFound(t.path.to_string())),
            Seen::Entry(fallback, entry) => {
                let fctx = RequestContext { disk: fallback.disk().name().to_string(), ..ctx.clone() };
                Ok(fallback.as_primary(fallback.disk().stat(&fctx, &entry).await?, &t.path))
            }
        }
    }

    /// Whether `t` exists, through its queue.
    pub(crate) async fn exists_routed(&self, t: &Target, ctx: &RequestContext) -> Result<bool, StorageError> {
        match self.seen(t, ctx).await? {
            Seen::Disk => t.disk.exists(ctx, &t.path).await,
            Seen::Deleted => Ok(false),
            Seen::Entry(..) => Ok(true),
        }
    }

    /// Removes `t`. A queued path's entry becomes a tombstone (so no later sync brings it
    /// back), which the syncer applies to the disk: from now on, every reader finds it gone.
    pub(crate) async fn delete_routed(&self, t: &Target, ctx: &RequestContext) -> Result<(), StorageError> {
        let Some(fallback) = self.fallback_of(t.disk.name()) else { return t.disk.delete(ctx, &t.path).await };
        if fallback.queued(ctx, &t.path).await?.is_none() {
            return t.disk.delete(ctx, &t.path).await;
        }
        let fctx = RequestContext { disk: fallback.disk().name().to_string(), ..ctx.clone() };
        let entry = fallback.entry_path(&t.path)?;
        let options = Fallback::entry_options(&WriteOptions::default(), QueuedOp::Delete)?;
        let info = {
            let _entries = fallback.lock().await?;
            let info = fallback.disk().put_bytes(&fctx, &entry, Bytes::new(), &options).await?;
            let queued = Queued { op: QueuedOp::Delete, size: 0, sha256: None, queued_ms: info.modified };
            fallback.noted(&t.path, Some(queued));
            info
        };
        let record = fallback.written_record(ctx, &t.path, &entry, QueuedOp::Delete, &info);
        if let Err(e) = self.ledger().append(&record).await {
            tracing::warn!(error = %e, "a queued delete could not be recorded as such");
        }
        Ok(())
    }

    /// One page of `t`'s listing, with the queue's entries merged in path order: a queued
    /// write appears (once, with its entry's info), a queued delete hides the path. A page may
    /// hold more than `limit` items by the entries that fall into its range.
    pub(crate) async fn list_routed(
        &self,
        t: &Target<Prefix>,
        ctx: &RequestContext,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StorageError> {
        let Some(fallback) = self.fallback_of(t.disk.name()) else {
            return t.disk.list(ctx, &t.path, cursor, limit).await;
        };
        let (after, inner) = match cursor {
            None => (None, None),
            Some(c) => {
                let bad = || StorageError::InvalidRange(format!("listing cursor `{c}` is not one this disk gave"));
                let (after, inner) = c.split_once(CURSOR_SEPARATOR).ok_or_else(bad)?;
                let after = String::from_utf8(hex::decode(after).map_err(|_| bad())?).map_err(|_| bad())?;
                (Some(after), Some(inner.to_string()))
            }
        };
        let mut page = t.disk.list(ctx, &t.path, inner.as_deref(), limit).await?;
        let last = page.items.last().map(|i| i.path.clone());
        let upto = page.next_cursor.as_ref().map(|_| last.clone().unwrap_or_else(|| after.clone().unwrap_or_default()));
        let queued = fallback.queued_between(ctx, &t.path, after.as_deref(), upto.as_deref()).await?;
        let fctx = RequestContext { disk: fallback.disk().name().to_string(), ..ctx.clone() };
        for (path, entry) in queued {
            page.items.retain(|i| i.path != path);
            if entry.op == QueuedOp::Put {
                match fallback.disk().stat(&fctx, &fallback.entry_path(&path)?).await {
                    Ok(info) => page.items.push(fallback.as_primary(info, &path)),
                    // Synced since the disk's page was listed: the disk has it now.
                    Err(StorageError::NotFound(_)) => match t.disk.stat(ctx, &ObjectPath::parse(&path)?).await {
                        Ok(info) => page.items.push(info),
                        Err(StorageError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
        }
        page.items.sort_by(|a, b| a.path.cmp(&b.path));
        page.next_cursor = page.next_cursor.map(|next| {
            let passed = upto.unwrap_or_default();
            format!("{}{CURSOR_SEPARATOR}{next}", hex::encode(passed))
        });
        Ok(page)
    }
}
