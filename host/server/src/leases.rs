//! The durable upload sessions' database and their leases (`durable.rs` serves them): a
//! request takes a session (waiting its turn), renews its lease while it streams, and records
//! the new offset or forgets the session; the writers this host keeps open between requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use stowage_runtime::ledger::sessions::{SessionRow, Sessions, Taken};
use stowage_runtime::{Address, DigestState, Request, Storage, StorageError, Suspended, Upload, WriteOptions};

use crate::errors::ApiError;

/// How long a request holds a session without renewing.
pub const LEASE: Duration = Duration::from_secs(30);

/// How often a request renews its lease while the body streams.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The sessions in the database, and the writers this host keeps open between requests.
pub struct Durable {
    store: Arc<Sessions>,
    /// Names this process in leases: `<host id>/<random>`; each request adds `-<n>`.
    pub(crate) holder: String,
    /// Counts this process's requests.
    requests: AtomicU64,
    /// Writers kept open between requests, by session id (at most [`KEPT`], none longer than
    /// [`KEEP_FOR`]).
    writers: Mutex<HashMap<String, Kept>>,
}

/// How many writers a host keeps open between requests (each holds a driver instance).
const KEPT: usize = 16;

/// How long a host keeps a writer no request uses.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// Lets go of the kept writers older than [`KEEP_FOR`], then of the oldest beyond [`KEPT`]:
/// released, not aborted (each session resumes from its token, elsewhere or later).
fn let_go(writers: &mut HashMap<String, Kept>) {
    let mut gone: Vec<String> =
        writers.iter().filter(|(_, k)| k.at.elapsed() > KEEP_FOR).map(|(id, _)| id.clone()).collect();
    let mut by_age: Vec<(&String, Instant)> =
        writers.iter().filter(|(_, k)| k.at.elapsed() <= KEEP_FOR).map(|(id, k)| (id, k.at)).collect();
    by_age.sort_by_key(|(_, at)| *at);
    let over = by_age.len().saturating_sub(KEPT);
    gone.extend(by_age.into_iter().take(over).map(|(id, _)| id.clone()));
    for id in gone {
        if let Some(kept) = writers.remove(&id) {
            tokio::spawn(kept.upload.release());
        }
    }
}

/// A writer kept open after a request, for the session's next one on this host.
struct Kept {
    /// The session's `taken` count when its request here took it: the writer is current if
    /// the next take is the one after.
    taken: i64,
    upload: Upload,
    at: Instant,
}

/// What a session remembers besides its offset: how it was opened.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct Opened {
    pub(crate) content_type: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) create_only: bool,
    pub(crate) expected_sha256: Option<String>,
    pub(crate) length: Option<u64>,
}

impl Opened {
    /// How `row` was opened; a record that does not read is refused (its options and the
    /// client's expectations must not be lost silently).
    pub(crate) fn of(row: &SessionRow) -> Result<Opened, ApiError> {
        serde_json::from_str(&row.options).map_err(|e| {
            ApiError::from(StorageError::Io(format!("upload session {}: its record does not read ({e})", row.id)))
        })
    }

    pub(crate) fn options(&self) -> WriteOptions {
        WriteOptions {
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            create_only: self.create_only,
        }
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`; a container's own).
fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().replace('/', "-")).unwrap_or_default()
}

/// A tus session's length (`Upload-Length`), if it has one.
pub fn length_of(row: &SessionRow) -> Option<u64> {
    serde_json::from_str::<Opened>(&row.options).ok().and_then(|o| o.length)
}

/// Whether `id` names a durable session.
pub fn is_durable(id: &str) -> bool {
    id.len() == 33 && id.starts_with('r') && id[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(stowage_runtime::ledger::now_ms()).unwrap_or(i64::MAX)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    StorageError::Unavailable { reason: format!("the upload sessions' database: {e}"), retryable: true }.into()
}

fn locked() -> ApiError {
    ApiError::with_status(
        StatusCode::LOCKED,
        stowage_api::ErrorKind::Unavailable,
        format!(
            "another request is writing to this upload session; ask its offset and try again (a host that stopped mid-request frees it within {} s)",
            LEASE.as_secs()
        ),
    )
}

/// A request stops writing this long before its lease runs out, if it could not renew it: by
/// then another request may take the session (with the hosts' clocks a few seconds apart).
const FENCE_MARGIN: Duration = Duration::from_secs(10);

/// Whether a request may still write to its session: until its lease, as last renewed, less
/// [`FENCE_MARGIN`], runs out; never again once a renewal found the session taken by another.
/// Checked before each chunk, before the suspend and before the commit, so a request cut off
/// from the database stops before anyone else can take its session over.
pub struct Fence {
    until_ms: std::sync::atomic::AtomicI64,
}

impl Fence {
    fn new() -> Fence {
        Fence { until_ms: std::sync::atomic::AtomicI64::new(fence_from(now_ms())) }
    }

    /// Whether the request still holds the session.
    pub fn holds(&self) -> bool {
        now_ms() < self.until_ms.load(Ordering::Acquire)
    }

    /// `Err` once the request lost the session.
    pub fn check(&self, id: &str) -> Result<(), ApiError> {
        if self.holds() {
            return Ok(());
        }
        Err(StorageError::Unavailable {
            reason: format!(
                "upload session {id}: this request could not renew its hold on the session in time and stopped writing; ask the offset and go on from there"
            ),
            retryable: true,
        }
        .into())
    }
}

/// The fence time for a lease renewed at `at_ms`.
fn fence_from(at_ms: i64) -> i64 {
    at_ms + (LEASE - FENCE_MARGIN).as_millis() as i64
}

/// Renews a request's lease until dropped, moving its [`Fence`].
pub struct Renewing {
    task: tokio::task::JoinHandle<()>,
    pub(crate) fence: Arc<Fence>,
}

impl Drop for Renewing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session taken by this host for one request: given back on drop unless recorded.
pub struct Held {
    durable: Arc<Durable>,
    pub(crate) row: SessionRow,
    /// This request, in the session's lease.
    pub(crate) holder: String,
    pub(crate) released: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (durable, id, holder) = (self.durable.clone(), self.row.id.clone(), self.holder.clone());
        // Outside a runtime (a process ending) the lease runs out by itself.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn_blocking(move || {
            if let Err(e) = durable.store.release(&id, &holder) {
                tracing::warn!(upload = %id, error = %e, "an upload session could not be given back; its lease runs out");
            }
        });
    }
}

impl Durable {
    /// The sessions of `store`, for this process.
    pub fn new(store: Sessions) -> Durable {
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        // The machine's name too: processes of two containers on one machine share the boot
        // id, and one must never take the other's sessions for gone.
        let holder = format!("{}/{}/{}", machine(), stowage_runtime::HostId::current(), hex::encode(random));
        Durable { store: Arc::new(store), holder, requests: AtomicU64::new(0), writers: Mutex::default() }
    }

    /// Runs `f` on the database, off the async threads.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sessions) -> Result<T, stowage_runtime::ledger::LedgerError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r.map_err(unavailable),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The session `id` of `owner`, as last recorded.
    pub async fn get(&self, id: &str, owner: &str) -> Result<Option<SessionRow>, ApiError> {
        let id = id.to_string();
        let row = self.db(move |s| s.get(&id)).await?;
        Ok(row.filter(|r| r.owner == owner))
    }

    /// Takes `owner`'s session `id` for one request (`404` if there is none). While another
    /// request holds it, waits (as requests on one host wait their turn), at most [`LEASE`]:
    /// then `423`.
    pub async fn take(self: &Arc<Self>, id: &str, owner: &str) -> Result<Held, ApiError> {
        // Another key's session is no session, held or not: it neither waits nor takes it
        // (which would tell it the session exists, and cost the owner its kept writer).
        if self.get(id, owner).await?.is_none() {
            return Err(StorageError::NotFound(format!("upload session {id}")).into());
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let me = format!("{}-{}", self.holder, self.requests.fetch_add(1, Ordering::Relaxed));
        let row = loop {
            let (key, holder) = (id.to_string(), me.clone());
            let now = now_ms();
            let until = now + LEASE.as_millis() as i64;
            match self.db(move |s| s.take(&key, &holder, now, until)).await? {
                Taken::Held(row) => break *row,
                Taken::Missing => return Err(StorageError::NotFound(format!("upload session {id}")).into()),
                Taken::Busy if let Some(row) = self.steal_from_the_dead(id, &me).await? => break row,
                Taken::Busy if started.elapsed() + pause > LEASE => return Err(locked()),
                Taken::Busy => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        };
        let held = Held { durable: self.clone(), row, holder: me, released: false };
        if held.row.owner != owner {
            return Err(StorageError::NotFound(format!("upload session {id}")).into());
        }
        Ok(held)
    }

    /// Frees the session `id` if its holder was a host process of this machine that is gone (a
    /// restart after a crash need not wait for the lease to run out). Another machine's holder
    /// is left to its lease.
    async fn steal_from_the_dead(&self, id: &str, me: &str) -> Result<Option<SessionRow>, ApiError> {
        let key = id.to_string();
        let Some(dead) = self.db(move |s| s.get(&key)).await?.and_then(|r| r.holder) else { return Ok(None) };
        let mut parts = dead.split('/');
        let (name, host) = (parts.next(), parts.next());
        let gone = name == Some(machine().as_str())
            && host.and_then(stowage_runtime::HostId::parse).is_some_and(|h| h.on_this_boot() && !h.is_alive());
        if !gone {
            return Ok(None);
        }
        let (key, holder) = (id.to_string(), me.to_string());
        let until = now_ms() + LEASE.as_millis() as i64;
        if !self.db(move |s| s.take_from(&key, &dead, &holder, until)).await? {
            return Ok(None);
        }
        tracing::info!(upload = %id, "took over an upload session whose host process is gone");
        let key = id.to_string();
        self.db(move |s| s.get(&key)).await
    }

    /// Keeps `held`'s lease alive until the returned guard drops.
    pub(crate) fn renewing(self: &Arc<Self>, id: &str, holder: &str) -> Renewing {
        let (durable, id, me) = (self.clone(), id.to_string(), holder.to_string());
        let fence = Arc::new(Fence::new());
        let moved = fence.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let (key, holder) = (id.clone(), me.clone());
                let at = now_ms();
                let until = at + LEASE.as_millis() as i64;
                match durable.db(move |s| s.renew(&key, &holder, until)).await {
                    Ok(true) => moved.until_ms.store(fence_from(at), Ordering::Release),
                    Ok(false) => {
                        // Another request took the session: this one never writes again.
                        moved.until_ms.store(0, Ordering::Release);
                        tracing::warn!(upload = %id, "an upload session was taken over while a request held it");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(upload = %id, error = ?e, "an upload session's lease could not be renewed")
                    }
                }
            }
        });
        Renewing { task, fence }
    }

    /// The writer for `held`: the one this host kept, if no request took the session since,
    /// else the write resumed from the recorded token.
    pub(crate) async fn writer(&self, storage: &Storage, held: &Held, req: &Request) -> Result<Upload, ApiError> {
        let kept = self.writers.lock().ok().and_then(|mut w| w.remove(&held.row.id));
        if let Some(kept) = kept {
            if kept.taken + 1 == held.row.taken {
                return Ok(kept.upload);
            }
            kept.upload.release().await;
        }
        let opened = Opened::of(&held.row)?;
        let from = Suspended {
            token: held.row.token.clone(),
            digest: DigestState { size: held.row.offset, sha256: held.row.digest.clone() },
        };
        let addr = Address { name: held.row.name.clone(), path: held.row.path.clone() };
        Ok(storage.resumable_writer(&addr, req, &opened.options(), &held.row.tag, Some(&from)).await?)
    }

    /// Keeps `upload` for the session `id`'s next request here (taken as `taken`), letting go
    /// of writers kept too long or too many.
    pub(crate) fn keep(&self, id: &str, taken: i64, upload: Upload) {
        let Ok(mut writers) = self.writers.lock() else { return };
        writers.insert(id.to_string(), Kept { taken, upload, at: Instant::now() });
        let_go(&mut writers);
    }

    /// Lets go of writers no request used for [`KEEP_FOR`] (the reaper calls it).
    pub(crate) fn let_go_of_stale(&self) {
        if let Ok(mut writers) = self.writers.lock() {
            let_go(&mut writers);
        }
    }

    /// The writer kept for the session `id`, taken out.
    pub(crate) fn take_kept(&self, id: &str) -> Option<Upload> {
        self.writers.lock().ok().and_then(|mut w| w.remove(id)).map(|k| k.upload)
    }

    /// Suspends `upload` at `offset` and records it for `held`, keeping the writer for the next
    /// request here.
    pub(crate) async fn record(&self, mut held: Held, mut upload: Upload, offset: u64) -> Result<(), ApiError> {
        let suspended = match upload.suspend().await {
            Ok(s) => s,
            Err(e) => {
                // The recorded token still holds what was acknowledged: the next request
                // resumes from there (dropping `held` gives the session back).
                upload.release().await;
                drop(held);
                return Err(e.into());
            }
        };
        if suspended.digest.size != offset {
            // The session's count and the digest's (both the host's, kept apart) disagree: the
            // resume would rebuild a digest at the wrong offset, so nothing is recorded.
            upload.release().await;
            return Err(StorageError::Io(format!(
                "upload session {}: the write holds {} bytes but {offset} were counted; the last recorded offset stands",
                held.row.id, suspended.digest.size
            ))
            .into());
        }
        let (id, holder, taken) = (held.row.id.clone(), held.holder.clone(), held.row.taken);
        let key = id.clone();
        let version = self
            .db(move |s| s.advance(&key, &holder, offset, &suspended.token, &suspended.digest.sha256, now_ms()))
            .await;
        match version {
            Ok(Some(_)) => {
                held.released = true;
                self.keep(&id, taken, upload);
                Ok(())
            }
            Ok(None) => {
                held.released = true;
                upload.release().await;
                Err(StorageError::Unavailable {
                    reason: "this request held the upload session too long and another took it over; ask the offset"
                        .into(),
                    retryable: true,
                }
                .into())
            }
            Err(e) => {
                // `held` gives the session back on drop (if the database answers by then).
                upload.release().await;
                Err(e)
            }
        }
    }

    /// Forgets `held` (its write failed or was discarded).
    pub(crate) async fn forget(&self, mut held: Held) {
        held.released = true;
        let (id, holder) = (held.row.id.clone(), held.holder.clone());
        if let Err(e) = self.db(move |s| s.remove(&id, &holder, now_ms())).await {
            tracing::warn!(error = ?e, "a failed upload session could not be removed; it is reaped later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_holds_for_the_lease_less_its_margin_and_never_after_a_takeover() {
        let fence = Fence::new();
        let until = fence.until_ms.load(Ordering::Acquire);
        let expected = now_ms() + (LEASE - FENCE_MARGIN).as_millis() as i64;
        assert!((expected - until).abs() < 1_000, "{until} vs {expected}");
        assert!(fence.holds() && fence.check("r1").is_ok());
        // A renewal that found the session taken.
        fence.until_ms.store(0, Ordering::Release);
        assert!(!fence.holds());
        assert!(fence.check("r1").is_err());
        // A lease last renewed longer ago than it lasts, less the margin.
        fence.until_ms.store(fence_from(now_ms() - (LEASE - FENCE_MARGIN).as_millis() as i64 - 1), Ordering::Release);
        assert!(!fence.holds());
    }

    #[test]
    fn durable_ids_are_told_from_in_memory_ones_by_their_form() {
        assert!(is_durable(&format!("r{}", "0".repeat(32))));
        assert!(!is_durable(&"0".repeat(32)), "an in-memory id");
        assert!(!is_durable(&format!("r{}", "g".repeat(32))));
        assert!(!is_durable("r0"));
    }
}
