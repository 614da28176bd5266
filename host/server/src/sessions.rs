//! The resumable upload sessions in progress (`uploads.rs` serves them): each one's driver
//! writer and offset, the key that owns it, and its slot. At most `max_uploads` are open, at
//! most `max_uploads_per_key` of one key; a slot is given back whenever its session goes, and a
//! session idle for [`IDLE_LIMIT`] is discarded.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage_runtime::{StorageError, Upload};

use crate::errors::ApiError;

/// A session this long without a request is discarded.
pub const IDLE_LIMIT: Duration = Duration::from_secs(3600);

/// One upload in progress.
pub struct Session {
    /// The driver's writer; none once the session is completed, discarded or broken.
    pub upload: Option<Upload>,
    /// Bytes the driver has taken (readable without the lock, for `HEAD`).
    pub offset: Arc<AtomicU64>,
    /// The sha256 the session was opened with, if any.
    pub expected_sha256: Option<String>,
    /// A tus session's length (`Upload-Length`): the PATCH that reaches it commits.
    pub length: Option<u64>,
    /// The last time a request used it.
    pub last_used: Instant,
    /// The storage name, for metrics.
    pub name: String,
    /// Kept in the ledger's database (`durable.rs`): its request's hold on the session, checked
    /// before each chunk; a failed write is let go, not aborted, so the session resumes from
    /// its last recorded offset.
    pub fence: Option<Arc<crate::leases::Fence>>,
}

/// A session found in the table: what is readable without its lock, and the lock.
pub struct Handle {
    /// Bytes the driver has taken.
    pub offset: Arc<AtomicU64>,
    /// A tus session's length.
    pub length: Option<u64>,
    /// The rest.
    pub session: Arc<tokio::sync::Mutex<Session>>,
}

/// A session: the key that owns it, its offset outside the lock, the rest inside, and its
/// slot (released when the entry goes).
struct Entry {
    owner: String,
    offset: Arc<AtomicU64>,
    length: Option<u64>,
    session: Arc<tokio::sync::Mutex<Session>>,
    _slot: Slot,
}

/// A place among the open sessions, overall and of one key; given back on drop.
pub struct Slot {
    sessions: Arc<Counts>,
    owner: String,
}

/// Sessions open or being opened, overall and per key.
#[derive(Default)]
struct Counts {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.1.remove(&self.owner);
                }
            }
        }
    }
}

/// A session whose object was committed: what a client that lost the last answer learns.
struct Completed {
    owner: String,
    length: u64,
    at: Instant,
}

/// The open sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    /// Sessions committed in the last [`IDLE_LIMIT`], by id.
    completed: Mutex<HashMap<String, Completed>>,
    counts: Arc<Counts>,
    max: usize,
    max_per_key: usize,
}

impl Sessions {
    /// At most `max` sessions, `max_per_key` of one key.
    pub fn new(max: usize, max_per_key: usize) -> Sessions {
        Sessions { map: Mutex::default(), completed: Mutex::default(), counts: Arc::default(), max, max_per_key }
    }

    /// The session `id`, if `owner` owns it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Handle> {
        let map = self.map.lock().ok()?;
        let e = map.get(id).filter(|e| e.owner == owner)?;
        Some(Handle { offset: e.offset.clone(), length: e.length, session: e.session.clone() })
    }

    /// The session `id`'s object was committed, `length` bytes: forgets the session (its slot is
    /// given back) and remembers the commit for its owner (a tus client that lost the answer
    /// asks the offset, and must learn the upload is whole).
    pub fn completed(&self, id: &str, length: u64) {
        let Ok(mut map) = self.map.lock() else { return };
        let Some(entry) = map.remove(id) else { return };
        if let Ok(mut done) = self.completed.lock() {
            done.insert(id.to_string(), Completed { owner: entry.owner, length, at: Instant::now() });
        }
    }

    /// The length of `owner`'s session `id`, if it was committed recently.
    pub fn committed(&self, id: &str, owner: &str) -> Option<u64> {
        let done = self.completed.lock().ok()?;
        done.get(id).filter(|c| c.owner == owner).map(|c| c.length)
    }

    /// Forgets the session `id` (its slot is given back).
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }

    /// A slot for a new session of `owner`, or why there is none: the key's own limit
    /// (`429`) or the host's (`503`).
    pub fn reserve(&self, owner: &str) -> Result<Slot, ApiError> {
        let mut open = self
            .counts
            .open
            .lock()
            .map_err(|_| ApiError::from(StorageError::Io("the upload table is unusable".into())))?;
        let mine = open.1.get(owner).copied().unwrap_or(0);
        if mine >= self.max_per_key {
            return Err(ApiError::too_many(format!(
                "this key has {} uploads open; complete or discard one",
                self.max_per_key
            )));
        }
        if open.0 >= self.max {
            return Err(StorageError::Unavailable {
                reason: format!("{} uploads are open; try again later", self.max),
                retryable: true,
            }
            .into());
        }
        open.0 += 1;
        *open.1.entry(owner.to_string()).or_default() += 1;
        Ok(Slot { sessions: self.counts.clone(), owner: owner.to_string() })
    }

    /// Puts `session` of `owner` in the table as `id`, in `slot`.
    pub fn insert(&self, id: String, owner: String, session: Session, slot: Slot) -> Result<(), StorageError> {
        let entry = Entry {
            owner,
            offset: session.offset.clone(),
            length: session.length,
            session: Arc::new(tokio::sync::Mutex::new(session)),
            _slot: slot,
        };
        match self.map.lock() {
            Ok(mut map) => {
                map.insert(id, entry);
                Ok(())
            }
            Err(_) => Err(StorageError::Io("the upload table is unusable".into())),
        }
    }

    /// Discards sessions idle for longer than `limit` (their writes are aborted), and forgets
    /// commits older than it.
    pub async fn reap(&self, limit: Duration) {
        if let Ok(mut done) = self.completed.lock() {
            done.retain(|_, c| c.at.elapsed() <= limit);
        }
        let sessions: Vec<(String, Arc<tokio::sync::Mutex<Session>>)> = self
            .map
            .lock()
            .map(|m| m.iter().map(|(k, e)| (k.clone(), e.session.clone())).collect())
            .unwrap_or_default();
        for (id, session) in sessions {
            // A session in use is not idle.
            let Ok(mut s) = session.try_lock() else { continue };
            if s.last_used.elapsed() > limit {
                if let Some(upload) = s.upload.take() {
                    let _ = upload.abort().await;
                }
                self.remove(&id);
                tracing::info!(upload = %id, "discarded an idle upload session");
            }
        }
    }
}
