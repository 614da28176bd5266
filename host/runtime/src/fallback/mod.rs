//! Fallback disks: the original's `save_with_fallback`, made durable. A disk configured with
//! `fallback = "F"` whose driver answers a retryable `unavailable` has its writes land on F,
//! and a syncer moves them back when it answers again.
//!
//! **The queue is the fallback disk itself.** A queued write is the object at
//! `stowage-fallback/<disk>/<path>` on F, carrying its content type, its user metadata and
//! the marker `stowage-queued = put`; a queued delete (of a path whose write was queued) is an
//! empty object there marked `delete`. Each entry is therefore exactly as durable as F's
//! commit, and there is no second store that a crash could leave disagreeing with it.
//!
//! **The newest version of a queued path is its entry.** While a path is queued, every write
//! to it goes to F as well (replacing the entry) and a delete replaces the entry with a
//! tombstone; the syncer removes an entry only if it is still the version it moved, so what it
//! finally leaves on the disk is never older than what a client wrote (a copy it makes while a
//! client replaces the entry is overwritten by the next pass, and no reader sees it meanwhile:
//! reads, stats and listings through the disk's address see the entry first).
//!
//! **The entry on F is the authority.** Every operation on a path asks F for the path's entry
//! (one `stat`), so `serve` and the command line beside it agree on what is queued. Changes of
//! entries, and the syncer's removal of one it moved, hold a lock shared by every process of
//! the host, and one syncer runs at a time (`lease.rs`). Each process also keeps an index of
//! the entries in memory, listed from F on first use and again on every sync pass: what
//! listings merge and `/metrics` counts.

mod lease;
mod reroute;
mod route;
mod sync;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage_path::{ObjectPath, Prefix};

pub(crate) use lease::{EntryLock, QueueLocks};
pub(crate) use reroute::Reroute;
pub(crate) use route::Seen;
pub use sync::{SyncReport, Waiting};

use crate::driver::Disk;
use crate::error::StorageError;
use crate::types::{ObjectInfo, RequestContext, WriteOptions};

/// The metadata key that marks a queue entry, with its operation as the value.
pub const MARKER: &str = "stowage-queued";
/// Where queue entries live on a fallback disk: `stowage-fallback/<disk>/<path>`.
const ROOT: &str = "stowage-fallback";
/// How long writes go straight to the fallback after the primary answered `unavailable`
/// (a sync pass that reaches the primary ends it sooner).
const SKIP_PRIMARY_FOR: Duration = Duration::from_secs(10);

/// Whether `path` (on a fallback disk) lies in the queue of any disk.
pub(crate) fn in_queue(path: &str) -> bool {
    path.strip_prefix(ROOT).is_some_and(|p| p.starts_with('/'))
}

/// What a queue entry does to its path when it is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedOp {
    /// Store the entry's bytes at the path.
    Put,
    /// Remove the path.
    Delete,
}

impl QueuedOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            QueuedOp::Put => "put",
            QueuedOp::Delete => "delete",
        }
    }
}

/// One queue entry, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// What syncing it does.
    pub op: QueuedOp,
    /// The entry's size (0 for a delete).
    pub size: u64,
    /// The sha256 the host measured when it was written.
    pub sha256: Option<String>,
    /// When it was written (ms since the Unix epoch), when the fallback disk says.
    pub queued_ms: Option<u64>,
}

impl Queued {
    /// The entry an object on the fallback disk is, from its info (`None`: not an entry).
    fn from_info(info: &ObjectInfo) -> Option<Queued> {
        let op = match info.metadata.iter().find(|(k, _)| k == MARKER).map(|(_, v)| v.as_str()) {
            Some("put") => QueuedOp::Put,
            Some("delete") => QueuedOp::Delete,
            _ => return None,
        };
        Some(Queued { op, size: info.size, sha256: info.sha256.clone(), queued_ms: info.modified })
    }
}

/// An index entry: the entry, and when this process noted it.
#[derive(Debug, Clone)]
struct Noted {
    queued: Queued,
    at: Instant,
}

/// The state of one disk's queue that outlives a reload of the same pair of disks.
#[derive(Default)]
pub(crate) struct QueueState {
    /// The entries by path; `None` until listed from the fallback disk.
    index: Mutex<Option<BTreeMap<String, Noted>>>,
    /// Until when writes skip the primary.
    skip_until: Mutex<Option<Instant>>,
    /// The last failure recorded for each path (each is recorded once per process).
    failures: Mutex<std::collections::HashMap<String, String>>,
}

/// One disk's fallback: the disk that takes its writes, and the queue of what waits there.
#[derive(Clone)]
pub(crate) struct Fallback {
    /// The disk whose writes it takes.
    primary: String,
    /// The fallback disk.
    disk: Disk,
    state: Arc<QueueState>,
    locks: Arc<QueueLocks>,
}

impl Fallback {
    pub(crate) fn new(primary: &str, disk: Disk, state: Arc<QueueState>, locks: Arc<QueueLocks>) -> Fallback {
        Fallback { primary: primary.to_string(), disk, state, locks }
    }

    /// The host's queue locks.
    pub(crate) fn locks(&self) -> &QueueLocks {
        &self.locks
    }

    /// The fallback disk.
    pub(crate) fn disk(&self) -> &Disk {
        &self.disk
    }

    /// The queue's state (kept across a reload that keeps both disks).
    pub(crate) fn state(&self) -> &Arc<QueueState> {
        &self.state
    }

    /// The prefix holding this disk's entries on the fallback disk.
    fn prefix(&self) -> String {
        format!("{ROOT}/{}/", self.primary)
    }

    /// Where `path`'s entry lives on the fallback disk.
    pub(crate) fn entry_path(&self, path: &str) -> Result<ObjectPath, StorageError> {
        Ok(ObjectPath::parse(&format!("{}{path}", self.prefix()))?)
    }

    /// The options an entry for a write with `options` is written with: the same, marked.
    pub(crate) fn entry_options(options: &WriteOptions, op: QueuedOp) -> Result<WriteOptions, StorageError> {
        if options.metadata.iter().any(|(k, _)| k.eq_ignore_ascii_case(MARKER)) {
            return Err(StorageError::Unsupported(format!(
                "metadata key `{MARKER}` is reserved on a disk with a fallback (it marks queued writes)"
            )));
        }
        let mut metadata = options.metadata.clone();
        metadata.push((MARKER.to_string(), op.as_str().to_string()));
        metadata.sort();
        Ok(WriteOptions { metadata, create_only: false, ..options.clone() })
    }

    /// An entry's info as the primary's object: its path, without the marker, and saying
    /// where it is.
    pub(crate) fn as_primary(&self, mut info: ObjectInfo, path: &str) -> ObjectInfo {
        info.path = path.to_string();
        info.metadata.retain(|(k, _)| k != MARKER);
        info.fallback = Some(self.disk.name().to_string());
        info
    }

    /// The `fallback_written` record of `path`'s entry `entry` (its info), queued by `ctx`'s
    /// request: the disk's path, and the entry it is now.
    pub(crate) fn written_record(
        &self,
        ctx: &RequestContext,
        path: &str,
        entry: &str,
        op: QueuedOp,
        info: &ObjectInfo,
    ) -> crate::ledger::Record {
        crate::ledger::Record {
            action: "fallback_written".into(),
            path: path.to_string(),
            disk: self.primary.clone(),
            class: ctx.class.map(|c| c.as_str().to_string()),
            actor: ctx.actor.clone(),
            size: Some(info.size),
            sha256: info.sha256.clone(),
            metadata: vec![
                ("fallback".into(), self.disk.name().into()),
                ("entry".into(), entry.to_string()),
                ("op".into(), op.as_str().into()),
            ],
            request_id: ctx.request_id.clone(),
            key: ctx.authenticated_as.clone(),
            ..crate::ledger::Record::default()
        }
    }

    /// Whether writes skip the primary now (it answered `unavailable` moments ago).
    pub(crate) fn skipping_primary(&self) -> bool {
        lock(&self.state.skip_until).is_some_and(|until| Instant::now() < until)
    }

    /// Notes the primary's failure `e`; whether it is one a fallback is for (a retryable
    /// `unavailable`: the backend is away, not refusing).
    pub(crate) fn primary_failed(&self, e: &StorageError) -> bool {
        let away = matches!(e, StorageError::Unavailable { retryable: true, .. });
        if away {
            *lock(&self.state.skip_until) = Some(Instant::now() + SKIP_PRIMARY_FOR);
            tracing::warn!(disk = %self.primary, fallback = self.disk.name(), "the disk is unavailable; its writes go to its fallback");
        }
        away
    }

    /// Notes that the primary answered.
    pub(crate) fn primary_answered(&self) {
        lock(&self.state.skip_until).take();
    }

    /// The lock held while an entry changes (see `lease.rs`).
    pub(crate) async fn lock(&self) -> Result<EntryLock<'_>, StorageError> {
        self.locks.entry().await
    }

    /// `path`'s entry, if it is queued: asked of the fallback disk itself (the index learns
    /// the answer).
    pub(crate) async fn queued(&self, ctx: &RequestContext, path: &str) -> Result<Option<Queued>, StorageError> {
        let ctx = RequestContext { disk: self.disk.name().to_string(), ..ctx.clone() };
        let queued = match self.disk.stat(&ctx, &self.entry_path(path)?).await {
            Ok(info) => Queued::from_info(&info),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.noted(path, queued.clone());
        Ok(queued)
    }

    /// Every entry whose path starts with `prefix`, in path order.
    pub(crate) async fn queued_under(
        &self,
        ctx: &RequestContext,
        prefix: &str,
    ) -> Result<Vec<(String, Queued)>, StorageError> {
        self.load(ctx).await?;
        let index = lock(&self.state.index);
        let Some(index) = index.as_ref() else { return Ok(Vec::new()) };
        Ok(index
            .range(prefix.to_string()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .map(|(p, n)| (p.clone(), n.queued.clone()))
            .collect())
    }

    /// The entries with paths under `prefix`, after `after` and up to `upto` (each bound
    /// optional), in path order.
    pub(crate) async fn queued_between(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<(String, Queued)>, StorageError> {
        use std::ops::Bound;
        self.load(ctx).await?;
        let index = lock(&self.state.index);
        let Some(index) = index.as_ref() else { return Ok(Vec::new()) };
        let low = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        Ok(index
            .range((low, Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(prefix) && upto.is_none_or(|u| p.as_str() <= u))
            .map(|(p, n)| (p.clone(), n.queued.clone()))
            .collect())
    }

    /// Notes `path`'s entry (`None`: it is gone).
    /// (An index not listed yet stays so: its first listing will show the entry.)
    pub(crate) fn noted(&self, path: &str, queued: Option<Queued>) {
        let mut index = lock(&self.state.index);
        let Some(index) = index.as_mut() else { return };
        match queued {
            Some(queued) => index.insert(path.to_string(), Noted { queued, at: Instant::now() }),
            None => index.remove(path),
        };
    }

    /// Whether `reason` is news for `path` (not the failure last recorded for it).
    pub(crate) fn failure_is_new(&self, path: &str, reason: &str) -> bool {
        lock(&self.state.failures).insert(path.to_string(), reason.to_string()).as_deref() != Some(reason)
    }

    /// (entries, the oldest one's age) as this process knows them.
    pub(crate) fn length_and_oldest(&self) -> (usize, Option<Duration>) {
        let index = lock(&self.state.index);
        let Some(index) = index.as_ref() else { return (0, None) };
        let now = crate::ledger::now_ms();
        let oldest = index.values().filter_map(|n| n.queued.queued_ms).min();
        (index.len(), oldest.map(|ms| Duration::from_millis(now.saturating_sub(ms))))
    }

    /// Lists the entries from the fallback disk once per process.
    async fn load(&self, ctx: &RequestContext) -> Result<(), StorageError> {
        if lock(&self.state.index).is_some() {
            return Ok(());
        }
        self.refresh(ctx).await
    }

    /// Lists the entries from the fallback disk again: entries another process wrote appear,
    /// and entries it synced disappear (unless this process noted them during the listing).
    pub(crate) async fn refresh(&self, ctx: &RequestContext) -> Result<(), StorageError> {
        let started = Instant::now();
        let listed = self.list_entries(ctx).await?;
        let mut index = lock(&self.state.index);
        let index = index.get_or_insert_with(BTreeMap::new);
        index.retain(|path, noted| noted.at >= started || listed.contains_key(path));
        for (path, queued) in listed {
            index.entry(path).or_insert(Noted { queued, at: started });
        }
        Ok(())
    }

    /// Every entry on the fallback disk.
    async fn list_entries(&self, ctx: &RequestContext) -> Result<BTreeMap<String, Queued>, StorageError> {
        let prefix = Prefix::parse(&self.prefix())?;
        let ctx = RequestContext { disk: self.disk.name().to_string(), ..ctx.clone() };
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.disk.list(&ctx, &prefix, cursor.as_deref(), 1000).await?;
            for item in page.items {
                let Some(path) = item.path.strip_prefix(prefix.as_str()).map(str::to_string) else { continue };
                let queued = match Queued::from_info(&item) {
                    Some(q) => Some(q),
                    // A listing may leave metadata out: ask for the entry's own info.
                    None => {
                        let entry = ObjectPath::parse(&item.path)?;
                        Queued::from_info(&self.disk.stat(&ctx, &entry).await?)
                    }
                };
                match queued {
                    Some(q) => {
                        out.insert(path, q);
                    }
                    None => tracing::warn!(
                        fallback = self.disk.name(),
                        "an object under the fallback queue's prefix is not a queue entry; left alone"
                    ),
                }
            }
            match page.next_cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A std mutex's guard, whether or not a holder panicked (the data is a plain index).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
