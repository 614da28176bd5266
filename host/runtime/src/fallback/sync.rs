//! The syncer: moves each queue entry to its disk once the disk answers again. A queued write
//! is streamed from the fallback to the disk and committed there only if the bytes have the
//! sha256 the host measured when it queued them; a queued delete removes the path. Then,
//! under the entry lock and only if the entry is still the one it moved, the syncer records
//! `fallback_synced` (durably) and removes the entry. A crash between the steps leaves the
//! entry, and the next pass moves the same bytes again: nothing is lost, and an entry a
//! client replaced meanwhile is never removed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;

use stowage_path::ObjectPath;

use super::{Fallback, MARKER, Queued, QueuedOp};
use crate::audit::pause_point;
use crate::driver::{Disk, MAX_CHUNK};
use crate::error::StorageError;
use crate::ledger::Record;
use crate::storage::Storage;
use crate::types::{ObjectInfo, RequestContext, WriteOptions};

/// Entries one disk's sync pass moves at a time.
const CONCURRENCY: usize = 4;

/// What one sync pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// (disk, path) of each entry moved to its disk.
    pub synced: Vec<(String, String)>,
    /// (disk, path, why) of each entry that could not be moved; it stays queued.
    pub failed: Vec<(String, String, String)>,
    /// Entries still queued after the pass.
    pub waiting: usize,
    /// Another process of this host was syncing: this pass did nothing.
    pub busy: bool,
}

/// One queued entry, as `stowage sync status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The disk it waits for.
    pub disk: String,
    /// The disk holding it.
    pub fallback: String,
    /// Its path on the disk.
    pub path: String,
    /// The entry.
    pub queued: Queued,
    /// How long it has waited, when the fallback disk says when it was written.
    pub age: Option<Duration>,
}

/// How moving one entry ended.
enum Moved {
    /// Moved and removed from the queue.
    Synced,
    /// Not moved now: the disk is away (retryable `unavailable`); nothing to record.
    Away(StorageError),
    /// The entry changed or vanished meanwhile; the next pass looks again.
    Changed,
}

impl Storage {
    /// One pass over every disk's queue: moves what it can, records each step, and stops a
    /// disk's pass at its first `unavailable`. Refused while the ledger cannot record.
    pub async fn sync_fallbacks(&self) -> Result<SyncReport, StorageError> {
        self.ledger().health().map_err(StorageError::AuditUnavailable)?;
        let mut report = SyncReport::default();
        let Some(locks) = self.fallbacks().next().map(|(_, f)| f.locks()) else { return Ok(report) };
        let Some(_lease) = locks.try_sync()? else {
            report.busy = true;
            return Ok(report);
        };
        for (name, fallback) in self.fallbacks() {
            let Some(primary) = self.disk(name) else { continue };
            let ctx = self.own_context(primary, "stowage-sync");
            if let Err(e) = fallback.refresh(&ctx).await {
                report.failed.push((name.clone(), String::new(), format!("cannot list the fallback's queue: {e}")));
                continue;
            }
            let entries = fallback.queued_under(&ctx, "").await?;
            // A few entries at a time (their ledger records share the ledger's group commits);
            // once the disk is found away, no new one starts.
            let away = AtomicBool::new(false);
            let mut moves = futures::stream::iter(entries)
                .map(|(path, _)| {
                    let away = &away;
                    async move {
                        if away.load(Ordering::Relaxed) {
                            return (path, None);
                        }
                        let moved = self.move_entry(fallback, primary, &path).await;
                        if matches!(moved, Ok(Moved::Away(_))) {
                            away.store(true, Ordering::Relaxed);
                        }
                        (path, Some(moved))
                    }
                })
                .buffer_unordered(CONCURRENCY);
            while let Some((path, moved)) = moves.next().await {
                match moved {
                    None | Some(Ok(Moved::Changed)) => {}
                    Some(Ok(Moved::Synced)) => report.synced.push((name.clone(), path)),
                    Some(Ok(Moved::Away(e))) => report.failed.push((name.clone(), path, e.to_string())),
                    Some(Err(e)) => {
                        self.record_sync_failure(fallback, &ctx, &path, &e).await?;
                        report.failed.push((name.clone(), path, e.to_string()));
                    }
                }
            }
            report.waiting += fallback.length_and_oldest().0;
        }
        Ok(report)
    }

    /// Every queued entry of every disk, oldest first.
    pub async fn fallback_status(&self) -> Result<Vec<Waiting>, StorageError> {
        let mut out = Vec::new();
        let now = crate::ledger::now_ms();
        for (name, fallback) in self.fallbacks() {
            let Some(primary) = self.disk(name) else { continue };
            let ctx = self.own_context(primary, "stowage-sync-status");
            fallback.refresh(&ctx).await?;
            for (path, queued) in fallback.queued_under(&ctx, "").await? {
                let age = queued.queued_ms.map(|ms| Duration::from_millis(now.saturating_sub(ms)));
                out.push(Waiting {
                    disk: name.clone(),
                    fallback: fallback.disk().name().to_string(),
                    path,
                    queued,
                    age,
                });
            }
        }
        out.sort_by(|a, b| b.age.cmp(&a.age).then_with(|| a.path.cmp(&b.path)));
        Ok(out)
    }

    /// (disk, entries queued, the oldest one's age) for every disk with a fallback, as this
    /// process knows them (what `/metrics` shows).
    pub fn fallback_queues(&self) -> Vec<(&str, usize, Option<Duration>)> {
        self.fallbacks()
            .map(|(name, f)| {
                let (length, oldest) = f.length_and_oldest();
                (name.as_str(), length, oldest)
            })
            .collect()
    }

    async fn move_entry(&self, fallback: &Fallback, primary: &Disk, path: &str) -> Result<Moved, StorageError> {
        let pctx = self.own_context(primary, "stowage-sync");
        let fctx = self.own_context(fallback.disk(), "stowage-sync");
        let entry = fallback.entry_path(path)?;
        let target = ObjectPath::parse(path)?;
        let info = match fallback.disk().stat(&fctx, &entry).await {
            Ok(info) => info,
            Err(StorageError::NotFound(_)) => {
                fallback.noted(path, None);
                return Ok(Moved::Changed);
            }
            Err(e) => return Err(e),
        };
        let Some(queued) = Queued::from_info(&info) else { return Ok(Moved::Changed) };
        let copied = match queued.op {
            QueuedOp::Put => {
                let Some(sha256) = queued.sha256.as_deref() else {
                    return Err(StorageError::Io(
                        "the queued copy has no recorded sha256, so its bytes cannot be verified; it stays queued"
                            .into(),
                    ));
                };
                let options = WriteOptions {
                    content_type: info.content_type.clone(),
                    metadata: info.metadata.iter().filter(|(k, _)| k != MARKER).cloned().collect(),
                    create_only: false,
                };
                let from = Side { disk: fallback.disk(), ctx: &fctx, path: &entry };
                let to = Side { disk: primary, ctx: &pctx, path: &target };
                copy_verified(from, to, self.usage_of(primary.name()), &options, sha256).await
            }
            QueuedOp::Delete => match primary.delete(&pctx, &target).await {
                Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
                Err(e) => Err(CopyError::Disk(e)),
            },
        };
        match copied {
            Ok(()) => fallback.primary_answered(),
            Err(CopyError::Disk(e)) if fallback.primary_failed(&e) => return Ok(Moved::Away(e)),
            Err(CopyError::Disk(e) | CopyError::Fallback(e)) => return Err(e),
        }
        pause_point("sync-after-copy").await;
        let _entries = fallback.lock().await?;
        // Still the entry that was moved? A write or delete may have replaced it meanwhile (with
        // other bytes, or the same bytes under other metadata).
        match fallback.disk().stat(&fctx, &entry).await {
            Ok(now) if same_version(&now, &info) => {}
            Ok(_) | Err(StorageError::NotFound(_)) => return Ok(Moved::Changed),
            Err(e) => return Err(e),
        }
        // Recorded before the entry goes: a crash between them moves the same bytes again,
        // rather than leaving a move nobody recorded.
        let record = sync_record("fallback_synced", fallback, &pctx, path, &queued, None);
        self.ledger().append(&record).await.map_err(|e| StorageError::AuditUnavailable(e.to_string()))?;
        pause_point("sync-after-record").await;
        match fallback.disk().delete(&fctx, &entry).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        fallback.noted(path, None);
        tracing::info!(disk = primary.name(), op = queued.op.as_str(), "a queued entry was synced to its disk");
        Ok(Moved::Synced)
    }

    /// Records that `path`'s entry could not be moved (once per reason and process: a pass
    /// every few seconds must not fill the ledger with the same failure).
    async fn record_sync_failure(
        &self,
        fallback: &Fallback,
        ctx: &RequestContext,
        path: &str,
        e: &StorageError,
    ) -> Result<(), StorageError> {
        if !fallback.failure_is_new(path, &e.to_string()) {
            return Ok(());
        }
        tracing::warn!(disk = %ctx.disk, kind = e.kind().as_str(), "a queued entry could not be synced");
        let queued = fallback.queued(ctx, path).await?.unwrap_or(Queued {
            op: QueuedOp::Put,
            size: 0,
            sha256: None,
            queued_ms: None,
        });
        let record = sync_record("fallback_sync_failed", fallback, ctx, path, &queued, Some(e.to_string()));
        self.ledger().append(&record).await.map_err(|e| StorageError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }
}

/// Whether the entry is still the version that was moved: the same bytes, metadata and
/// content type, written at the same time.
fn same_version(now: &ObjectInfo, moved: &ObjectInfo) -> bool {
    now.size == moved.size
        && now.sha256 == moved.sha256
        && now.modified == moved.modified
        && now.etag == moved.etag
        && now.content_type == moved.content_type
        && now.metadata == moved.metadata
}

/// Which disk of a copy failed.
enum CopyError {
    /// The fallback (reading the entry): not a reason to skip the disk.
    Fallback(StorageError),
    /// The disk the entry goes to.
    Disk(StorageError),
}

/// One end of a copy.
struct Side<'a> {
    disk: &'a Disk,
    ctx: &'a RequestContext,
    path: &'a ObjectPath,
}

/// Streams `from`'s object to `to` (within `to`'s limits), committing only if its bytes have
/// `sha256`.
async fn copy_verified(
    from: Side<'_>,
    to: Side<'_>,
    usage: Option<&std::sync::Arc<crate::usage::Usage>>,
    options: &WriteOptions,
    sha256: &str,
) -> Result<(), CopyError> {
    let mut reader = from.disk.reader(from.ctx, from.path, None).await.map_err(CopyError::Fallback)?;
    let (mut writer, mut reservation) =
        crate::usage::open_writer(to.disk, usage, to.ctx, to.path, options).await.map_err(CopyError::Disk)?;
    while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await.map_err(CopyError::Fallback)? {
        if let Some(r) = reservation.as_mut() {
            r.take(chunk.len() as u64).map_err(CopyError::Disk)?;
        }
        writer.write(chunk).await.map_err(CopyError::Disk)?;
    }
    // A mismatch means the entry's bytes are not the ones queued: the fallback's fault.
    writer.finish_verified(Some(sha256)).await.map_err(|e| match e {
        StorageError::DigestMismatch { .. } => CopyError::Fallback(e),
        e => CopyError::Disk(e),
    })?;
    if let Some(r) = reservation {
        r.commit();
    }
    Ok(())
}

/// A sync record of `path`'s entry (`error`: why it failed).
fn sync_record(
    action: &str,
    fallback: &Fallback,
    ctx: &RequestContext,
    path: &str,
    queued: &Queued,
    error: Option<String>,
) -> Record {
    Record {
        action: action.to_string(),
        path: path.to_string(),
        disk: fallback.primary.clone(),
        actor: ctx.actor.clone(),
        size: (queued.op == QueuedOp::Put).then_some(queued.size),
        sha256: queued.sha256.clone().filter(|_| queued.op == QueuedOp::Put),
        metadata: vec![
            ("fallback".to_string(), fallback.disk().name().to_string()),
            ("entry".to_string(), fallback.entry_path(path).map(|p| p.into_string()).unwrap_or_default()),
            ("op".to_string(), queued.op.as_str().to_string()),
        ],
        error,
        request_id: ctx.request_id.clone(),
        key: ctx.authenticated_as.clone(),
        ..Record::default()
    }
}
