//! What the host does for itself after a crash and from time to time: settles write-ahead
//! records no outcome settled (`reconcile`), removes the temp objects of writes that will
//! never finish (`sweep_orphans`), and copies signed checkpoints to the checkpoint disk. All
//! of it is recorded in the ledger, and none of it goes through the policies (it is not a
//! user's operation).

use sha2::Digest as _;
use stowage_path::ObjectPath;

use crate::driver::{Disk, MAX_CHUNK};
use crate::error::StorageError;
use crate::ledger::{Effect, Entry, Record};
use crate::owner::{Liveness, owners};
use crate::request::Request;
use crate::storage::Storage;
use crate::types::{RequestContext, WriteOptions};

/// What `reconcile` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Intents found committed (index of each).
    pub committed: Vec<u64>,
    /// Intents found not to have happened.
    pub failed: Vec<u64>,
    /// Intents whose operation is still running, or whose object could not be looked at now.
    pub left: Vec<u64>,
}

/// What `sweep_orphans` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// (disk, temp id, bytes) of each temp object removed.
    pub removed: Vec<(String, String, Option<u64>)>,
    /// Temp objects left: their writes are live (or too recent to judge).
    pub kept: usize,
}

fn audit_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::AuditUnavailable(e.to_string())
}

impl Storage {
    /// A context for the host's own work on `disk`.
    pub(crate) fn own_context(&self, disk: &Disk, actor: &str) -> RequestContext {
        let req = Request { actor: Some(actor.to_string()), authenticated_as: Some("host".into()), ..Request::new() };
        self.context(disk, None, &req)
    }

    /// Settles every write-ahead record whose operation is gone (its host crashed, or it was
    /// dropped mid-call) by looking at the object: a write whose object is there with the
    /// announced sha256 happened, a delete whose object is gone happened, anything else did
    /// not. Each finding is a durable outcome record (`reconciled`).
    pub async fn reconcile(&self) -> Result<Reconciled, StorageError> {
        let mut done = Reconciled::default();
        for entry in self.ledger().open_intents().map_err(audit_error)? {
            let Some(intent) = &entry.record.intent else { continue };
            // In a ledger several hosts share, each host settles only its own: another host's
            // operation may still be running, and only that host can tell.
            let another_host = entry.record.host.is_some() && entry.record.host.as_deref() != self.ledger().host();
            if another_host || owners().liveness(&intent.owner) == Liveness::Live {
                done.left.push(entry.index);
                continue;
            }
            let Some(disk) = self.disk(&intent.disk) else {
                tracing::warn!(index = entry.index, "an open intent names a disk this host does not have; left open");
                done.left.push(entry.index);
                continue;
            };
            let ctx = self.own_context(disk, "stowage-reconcile");
            let looked = async {
                let path = ObjectPath::parse(&intent.path)?;
                match intent.op {
                    Effect::Put => put_happened(disk, &ctx, &path, intent.size, intent.sha256.as_deref()).await,
                    // A delete of a queued path is a tombstone on the fallback: seen through
                    // the queue, the path is gone even before the syncer reaches the disk.
                    Effect::Delete => {
                        let target = crate::storage::Target { disk: disk.clone(), class: None, path };
                        self.exists_routed(&target, &ctx).await.map(|exists| !exists)
                    }
                }
            };
            let happened = match looked.await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(
                        index = entry.index,
                        kind = e.kind().as_str(),
                        "cannot look at the object of an open intent now; left open"
                    );
                    done.left.push(entry.index);
                    continue;
                }
            };
            self.ledger().append(&reconciled(&entry, happened)).await.map_err(audit_error)?;
            if happened { done.committed.push(entry.index) } else { done.failed.push(entry.index) }
        }
        if !(done.committed.is_empty() && done.failed.is_empty()) {
            tracing::info!(
                committed = done.committed.len(),
                failed = done.failed.len(),
                "reconciled write-ahead records a crash left open"
            );
        }
        Ok(done)
    }

    /// Removes, on every disk, the temp objects of writes that will never finish (their host
    /// is gone, or the write was dropped; with no owner to ask, older than the disk's
    /// `orphan_after_secs`), recording each removal. Refused while the ledger cannot record.
    pub async fn sweep_orphans(&self) -> Result<Swept, StorageError> {
        self.ledger().health().map_err(audit_error)?;
        // Upload sessions outlive any host process: a temp object an open session's token
        // names is never an orphan, whatever its age or owner says.
        let sessions = match self.ledger().sessions() {
            Ok(s) => std::sync::Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "the upload sessions cannot be read; temp objects are not swept now");
                return Ok(Swept::default());
            }
        };
        let mut swept = Swept::default();
        for (name, disk) in self.disks() {
            let ctx = self.own_context(disk, "stowage-sweep");
            let max_age_ms = u64::try_from(self.orphan_after(name).as_millis()).unwrap_or(u64::MAX);
            let mut cursor: Option<String> = None;
            loop {
                let page = match disk.list_temps(&ctx, cursor.as_deref(), 1000).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(disk = %name, kind = e.kind().as_str(), "cannot list the disk's temp objects; not swept now");
                        break;
                    }
                };
                for temp in page.items {
                    let orphan = match temp.owner.as_deref().map(|o| owners().liveness(o)) {
                        Some(Liveness::Live) => false,
                        Some(Liveness::Gone) => true,
                        Some(Liveness::Unknown) | None => {
                            temp.modified.is_some_and(|m| crate::ledger::now_ms().saturating_sub(m) >= max_age_ms)
                        }
                    };
                    if !orphan || session_keeps(&sessions, &temp.id).await {
                        swept.kept += 1;
                        continue;
                    }
                    match disk.remove_temp(&ctx, &temp.id).await {
                        Ok(()) => {}
                        // Its write finished or aborted meanwhile.
                        Err(StorageError::NotFound(_)) => continue,
                        Err(e) => {
                            tracing::warn!(disk = %name, kind = e.kind().as_str(), "cannot remove an orphaned temp object");
                            continue;
                        }
                    }
                    let record = Record {
                        action: "orphan_removed".into(),
                        path: temp.id.clone(),
                        disk: name.clone(),
                        size: temp.size,
                        actor: ctx.actor.clone(),
                        key: ctx.authenticated_as.clone(),
                        request_id: ctx.request_id.clone(),
                        ..Record::default()
                    };
                    self.ledger().append(&record).await.map_err(audit_error)?;
                    swept.removed.push((name.clone(), temp.id, temp.size));
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        if !swept.removed.is_empty() {
            tracing::info!(removed = swept.removed.len(), "removed temp objects of writes that never finished");
        }
        Ok(swept)
    }

    /// Copies the newest signed checkpoint to the checkpoint disk, if one is configured and
    /// does not hold it yet; returns the object path written.
    pub async fn copy_checkpoint(&self) -> Result<Option<String>, StorageError> {
        let (Some(disk), Some(latest)) = (self.checkpoint_disk(), self.ledger().latest_checkpoint()) else {
            return Ok(None);
        };
        let c = &latest.checkpoint;
        let path = ObjectPath::parse(&format!("ledger-checkpoints/{}/{:020}-{}.checkpoint", c.origin, c.size, c.time))?;
        let ctx = self.own_context(disk, "stowage-checkpoint");
        if disk.exists(&ctx, &path).await? {
            return Ok(None);
        }
        disk.put_bytes(&ctx, &path, bytes::Bytes::from(latest.note.clone()), &WriteOptions::default()).await?;
        Ok(Some(path.into_string()))
    }
}

/// Whether a write announced with `size` and `sha256` is what the disk holds at `path`.
async fn put_happened(
    disk: &Disk,
    ctx: &RequestContext,
    path: &ObjectPath,
    size: Option<u64>,
    sha256: Option<&str>,
) -> Result<bool, StorageError> {
    let info = match disk.stat(ctx, path).await {
        Ok(info) => info,
        Err(StorageError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if size.is_some_and(|s| s != info.size) {
        return Ok(false);
    }
    let Some(want) = sha256 else { return Ok(true) };
    if let Some(have) = &info.sha256 {
        return Ok(have.eq_ignore_ascii_case(want));
    }
    // The driver keeps no digest for it (a crash between its object and its metadata, say):
    // read it.
    let mut reader = disk.reader(ctx, path, None).await?;
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await? {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()) == want.to_ascii_lowercase())
}

/// The outcome record a reconcile writes for `entry`.
fn reconciled(entry: &Entry, happened: bool) -> Record {
    let r = &entry.record;
    let intent = r.intent.as_ref();
    Record {
        action: intent.map_or(Effect::Put, |i| i.op).outcome_action(happened).to_string(),
        path: intent.map_or_else(|| r.path.clone(), |i| i.path.clone()),
        disk: intent.map_or_else(|| r.disk.clone(), |i| i.disk.clone()),
        class: r.class.clone(),
        actor: r.actor.clone(),
        size: intent.and_then(|i| i.size),
        sha256: intent.and_then(|i| i.sha256.clone()),
        error: (!happened)
            .then(|| "the host stopped before the outcome was known; the object shows it did not happen".to_string()),
        request_id: r.request_id.clone(),
        key: r.key.clone(),
        settles: vec![entry.index],
        reconciled: true,
        ..Record::default()
    }
}

/// Whether an open upload session names the temp object `id` (if that cannot be told, it is
/// kept: a sweep never removes what may be a live session's).
async fn session_keeps(sessions: &std::sync::Arc<crate::ledger::sessions::Sessions>, id: &str) -> bool {
    let (sessions, id) = (sessions.clone(), id.to_string());
    match tokio::task::spawn_blocking(move || sessions.names_temp(&id)).await {
        Ok(Ok(named)) => named,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot tell whether an upload session keeps a temp object; it stays");
            true
        }
        Err(_) => true,
    }
}
