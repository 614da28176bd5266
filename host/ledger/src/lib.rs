//! The PHI ledger: an append-only, hash-chained log of tracking records in SQLite, with an
//! RFC 6962 Merkle tree over the records and signed checkpoints that anchor it outside the
//! host. It has no WebAssembly in it: the runtime appends to it, and every `stowage ledger`
//! command needs nothing else.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stowage_ledger::LedgerError> {
//! use stowage_ledger::{Ledger, LedgerOptions, Record};
//! let ledger = Ledger::open("stowage-ledger.sqlite".as_ref(), LedgerOptions::default())?;
//! let index = ledger.append(&Record { action: "file_created".into(), path: "a.csv".into(), ..Record::default() }).await?;
//! assert!(ledger.verify(stowage_ledger::VerifyMode::Full)?.is_ok());
//! # let _ = index; Ok(()) }
//! ```
//!
//! Invariants:
//! - Each row holds its index, time, the record as JSON, the previous row's hash and its own:
//!   `sha256(prev | index | time | json)`. Any edited field, deleted row or swapped pair
//!   breaks the chain at that index.
//! - A truncated tail leaves a valid chain, so the host also keeps the head (count and last
//!   hash) in a file beside the database (`head`): the database must reach it. After a power
//!   loss the head may lag the database, never lead it.
//! - A consistent rewrite (rows removed or changed, chain and head recomputed) leaves a valid
//!   chain and head: only a checkpoint kept elsewhere catches it (`verify_against`).
//! - Durability: SQLite in WAL mode with `synchronous = FULL`. Appends are group-committed
//!   (`committer`): concurrent appends share one transaction, and `append` returns only once
//!   the transaction holding its record is durable.
//! - The host refuses to chain onto a database that no longer reaches its head, or whose last
//!   record changed while it ran: such a ledger stays refused until an operator seals the
//!   break (`seal`), which is itself a record.

mod checkpoint;
mod committer;
mod error;
mod export;
mod head;
pub mod merkle;
mod migrate;
pub mod note;
mod proof;
mod record;
mod report;
mod seal;
pub mod sessions;
mod store;
mod verify;

/// Entry points for the fuzz targets (`tests/fuzz`): the parsers of files an attacker may write.
#[doc(hidden)]
pub mod fuzzing {
    /// Reads a head file's bytes; true when some head is named.
    pub fn head_file(bytes: &[u8]) -> bool {
        crate::head::parse(bytes).head().is_some()
    }
}

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use checkpoint::{
    Checkpoint, CheckpointPolicy, SignedCheckpoint, load_or_create_key, parse_all as parse_checkpoints,
    public_key_path, read_file as read_checkpoints,
};
pub use error::LedgerError;
pub use export::{Filter, Format, export};
pub use migrate::Migrated;
pub use proof::{InclusionProof, check_proof};
pub use record::{Effect, Entry, Intent, Metadata, Record, Seal, now_ms};
pub use report::{AccessEvent, AccessKind, access_report};
pub use seal::Sealed;
pub use verify::{Broken, SealedBreak, Verified, VerifyMode};

use committer::Job;
use head::HeadFile;
use merkle::Frontier;
use note::VerifierKey;
use store::Db;

/// How to open a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOptions {
    /// Signed checkpoints: none makes none (and verification is always a full walk).
    pub checkpoints: Option<CheckpointPolicy>,
    /// How long an append waits for another process's lock on the database (and, on
    /// PostgreSQL, the bound on every call).
    pub lock_timeout: Duration,
    /// Where the records live: none for the SQLite file at the ledger's path.
    pub database: Option<PostgresLedger>,
    /// The name this host stamps on every record it appends (`host`), so a chain several
    /// hosts share says who wrote what; none stamps nothing.
    pub host: Option<String>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions { checkpoints: None, lock_timeout: Duration::from_secs(10), database: None, host: None }
    }
}

/// A ledger in PostgreSQL: the records of every host that names the same database form one
/// chain. The ledger's path then names only this host's own files beside it (the head, the
/// checkpoints and the host key).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresLedger {
    /// `postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=require` (or `key=value` pairs).
    pub url: String,
    /// A CA certificate (PEM) to trust for the server's TLS certificate, beside the web roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresLedger").field("url", &"(secret)").field("ca_file", &self.ca_file).finish()
    }
}

/// Checkpoints of an open ledger.
struct Checkpoints {
    policy: CheckpointPolicy,
    verifier: VerifierKey,
    published: tokio::sync::watch::Receiver<Option<SignedCheckpoint>>,
    thread: Option<JoinHandle<()>>,
}

/// The ledger.
pub struct Ledger {
    path: PathBuf,
    /// For reading (`entries`, `verify`); the committer has its own connection.
    conn: Mutex<Box<dyn Db>>,
    /// Stamped on every record appended here.
    host: Option<String>,
    /// The bound on lock waits (and, on PostgreSQL, on every call).
    lock_timeout: Duration,
    /// The database is shared by several hosts (PostgreSQL).
    shared: bool,
    /// The PostgreSQL database, if shared (for the upload sessions kept beside the ledger).
    database: Option<PostgresLedger>,
    head: PathBuf,
    writer: Option<Sender<Job>>,
    committer: Option<JoinHandle<()>>,
    checkpoints: Option<Checkpoints>,
    health: Arc<Mutex<Option<String>>>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish_non_exhaustive()
    }
}

/// `<path>.head`.
fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// Opens one connection to where the records live; `committer` for the committer's own
/// (on PostgreSQL, driven by the committer's thread, which is never an async runtime's).
fn connect(path: &Path, options: &LedgerOptions, committer: bool) -> Result<Box<dyn Db>, LedgerError> {
    use store::postgres::{Driver, Postgres, Target};
    Ok(match &options.database {
        None => Box::new(store::sqlite::open(path, options.lock_timeout)?),
        Some(pg) => {
            let target = Target::new(&pg.url, pg.ca_file.as_deref(), options.lock_timeout)?;
            Box::new(Postgres::new(&target, if committer { Driver::Caller } else { Driver::Worker })?)
        }
    })
}

impl Ledger {
    /// Opens (creating if needed) the ledger database at `path` (or, with
    /// [`LedgerOptions::database`], in PostgreSQL, with this host's files beside `path`). A
    /// ledger that no longer reaches its head still opens (so it can be verified, read and
    /// sealed) but refuses appends; [`Ledger::verify`] says what is wrong.
    pub fn open(path: &Path, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| LedgerError::Head { path: dir.display().to_string(), error })?;
        }
        // The state the committer starts from is read on the reading connection: the
        // committer's own may only be used on its thread.
        let reader = connect(path, &options, false)?;
        let head_path = head_path(path);
        let state = committer::read_head(&head_path)?;
        let shared = options.database.is_some();
        let health = Arc::new(Mutex::new(None));
        // A shared database that does not answer yet is looked at by the first commit (which
        // checks everything again under the writers' lock).
        let tip = match reader.tip() {
            Ok(tip) => Some(tip.map(|(count, hash)| head::Head { count, hash })),
            Err(e) if shared => {
                tracing::warn!(error = %e, "the ledger's database does not answer yet");
                if let Ok(mut h) = health.lock() {
                    *h = Some(e.to_string());
                }
                None
            }
            Err(e) => return Err(e),
        };
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (checkpoints, schedule, has_checkpoints) = match &options.checkpoints {
            None => (None, None, false),
            Some(policy) => {
                let key = load_or_create_key(&policy.key_file, &policy.origin).map_err(LedgerError::Checkpoint)?;
                let verifier = key.verifier();
                let existing =
                    read_checkpoints(&policy.file, std::slice::from_ref(&verifier)).map_err(LedgerError::Checkpoint)?;
                let latest = existing.iter().max_by_key(|c| c.checkpoint.size).cloned();
                // With none yet, the clock starts now: a first checkpoint waits like every other.
                let last = latest
                    .as_ref()
                    .map_or((0, now_ms()), |c| (c.checkpoint.size, c.checkpoint.time.saturating_mul(1000)));
                let (published_tx, published) = tokio::sync::watch::channel(latest);
                let (due_tx, due_rx) = std::sync::mpsc::channel();
                let thread_policy = policy.clone();
                let thread = std::thread::Builder::new()
                    .name("stowage-checkpoints".into())
                    .spawn(move || checkpoint::run(thread_policy, key, due_rx, published_tx))
                    .map_err(|error| LedgerError::Head { path: policy.file.display().to_string(), error })?;
                let schedule = committer::Schedule {
                    every_records: policy.every_records.max(1),
                    every_ms: policy.every_secs.saturating_mul(1000),
                    last,
                    send: due_tx,
                };
                (
                    Some(Checkpoints { policy: policy.clone(), verifier, published, thread: Some(thread) }),
                    Some(schedule),
                    !existing.is_empty(),
                )
            }
        };
        let rule = committer::HeadRule { legacy_ok: !has_checkpoints, shared };
        let (tip, broken) = match tip {
            Some(tip) => {
                let broken = committer::reaches(&*reader, tip.as_ref(), &state, rule)?;
                (tip, broken)
            }
            None => (None, None),
        };
        let frontier = match &tip {
            Some(t) => Frontier::load(&store::Stored(&*reader), t.count).unwrap_or_default(),
            None => Frontier::default(),
        };
        let start = committer::Start {
            conn: connect(path, &options, true)?,
            tip,
            broken,
            head: HeadFile::new(&head_path, &state),
            legacy_head_ok: !has_checkpoints,
            shared,
            frontier,
            schedule,
            health: health.clone(),
            commits: commits.clone(),
        };
        let head_err = |error| LedgerError::Head { path: head_path.display().to_string(), error };
        let (tx, thread) = committer::spawn(start).map_err(head_err)?;
        Ok(Ledger {
            path: path.to_path_buf(),
            conn: Mutex::new(reader),
            host: options.host.clone(),
            lock_timeout: options.lock_timeout,
            shared,
            database: options.database.clone(),
            head: head_path,
            writer: Some(tx),
            committer: Some(thread),
            checkpoints,
            health,
            commits,
        })
    }

    /// The database file (with PostgreSQL: where this host's own files are, beside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name this host stamps on the records it appends, if it has one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The reading connection, connected again if it was lost.
    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn Db>>, LedgerError> {
        // A panic while holding the lock cannot leave the database inconsistent (transactions
        // roll back), so a poisoned lock is still safe to use.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.reconnect()?;
        Ok(conn)
    }

    /// `record` with this host's name, if it has one (whatever the record says: a record
    /// built from another names the host that wrote that one).
    fn stamped<'r>(&self, record: &'r Record) -> std::borrow::Cow<'r, Record> {
        match &self.host {
            Some(host) if record.host.as_ref() != Some(host) => {
                std::borrow::Cow::Owned(Record { host: Some(host.clone()), ..record.clone() })
            }
            _ => std::borrow::Cow::Borrowed(record),
        }
    }

    fn send(&self, job: Job) -> Result<(), LedgerError> {
        let stopped = || LedgerError::Append("the ledger's writer has stopped".into());
        self.writer.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }

    /// Appends `record` once it is durable; returns its index. Concurrent appends share a
    /// commit.
    pub async fn append(&self, record: &Record) -> Result<u64, LedgerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::append(&self.stamped(record), Some(reply))?)?;
        answer.await.map_err(|_| LedgerError::Append("the ledger's writer has stopped".into()))?
    }

    /// Appends `record`, blocking the thread until it is durable; returns its index.
    pub fn append_blocking(&self, record: &Record) -> Result<u64, LedgerError> {
        futures::executor::block_on(self.append(record))
    }

    /// Queues `record` for the next commit without waiting for it (for outcomes whose
    /// write-ahead record is already durable: a crash before this one is durable leaves the
    /// intent open, and reconciling settles it). A failure is logged and shows in `health`.
    pub fn append_nowait(&self, record: &Record) {
        if let Err(e) = Job::append(&self.stamped(record), None).and_then(|job| self.send(job)) {
            tracing::error!(error = %e, "could not queue a ledger record");
        }
    }

    /// Whether the last commit succeeded: `Err` with why not (the ledger is unusable for
    /// guarded operations until a commit succeeds again, or, if it was tampered with, until
    /// it is sealed).
    pub fn health(&self) -> Result<(), String> {
        match self.health.lock() {
            Ok(h) => h.clone().map_or(Ok(()), Err),
            Err(_) => Err("the ledger's health is unknown".into()),
        }
    }

    /// Whether the database answers: one read of its tip, asked afresh (the last commit's
    /// outcome is [`Ledger::health`]). On a shared database an outage shows here before any
    /// append has failed: the host may have had nothing to record since.
    pub fn probe(&self) -> Result<(), String> {
        self.conn().and_then(|conn| conn.tip()).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Transactions this process has committed (each one fsync): appends that arrive while a
    /// commit runs share the next one.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The record at `index`.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>, LedgerError> {
        let row = self.conn()?.row(index)?;
        row.map(|(at_ms, body)| decode(index, at_ms, &body)).transpose()
    }

    /// Calls `each` for every record from index `from`, in order, streaming (the ledger is
    /// never held in memory); stops early when `each` returns `false`.
    pub fn scan(&self, from: u64, mut each: impl FnMut(Entry) -> Result<bool, LedgerError>) -> Result<(), LedgerError> {
        self.conn()?.scan(from, &mut |row| each(decode(row.index, row.at_ms, &row.body)?))
    }

    /// Every record, in order (small ledgers and tests; `scan` streams).
    pub fn entries(&self) -> Result<Vec<Entry>, LedgerError> {
        let mut out = Vec::new();
        self.scan(0, |e| {
            out.push(e);
            Ok(true)
        })?;
        Ok(out)
    }

    /// How many records the ledger holds (its last index + 1).
    pub fn len(&self) -> Result<u64, LedgerError> {
        Ok(self.conn()?.tip()?.map_or(0, |(count, _)| count))
    }

    /// Whether the ledger holds no records.
    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }

    /// Write-ahead records no outcome has settled yet.
    pub fn open_intents(&self) -> Result<Vec<Entry>, LedgerError> {
        let indexes = self.conn()?.open_intents()?;
        let mut out = Vec::with_capacity(indexes.len());
        for index in indexes {
            if let Some(e) = self.entry(index)?
                && e.record.intent.is_some()
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Temporary copies past their deadline and not deleted since: (creating entry, deadline ms).
    pub fn overdue(&self, now_ms: u64) -> Result<Vec<(Entry, u64)>, LedgerError> {
        let mut open: std::collections::HashMap<(String, String), (Entry, u64)> = std::collections::HashMap::new();
        let mut failed_intents = std::collections::HashSet::new();
        self.scan(0, |e| {
            let r = &e.record;
            if !r.settles.is_empty() && r.action.ends_with("_failed") {
                failed_intents.extend(r.settles.iter().copied());
            }
            let key = (r.disk.clone(), r.path.clone());
            let deleted = r.error.is_none() && (r.action.ends_with("_deleted") || r.action == "cleaned_up");
            if deleted || r.cleanup_required {
                open.remove(&key);
            }
            if r.cleanup_required && r.error.is_none() {
                let within_ms = r.cleanup_within_secs.unwrap_or(0).saturating_mul(1000);
                let deadline = e.at_ms.saturating_add(within_ms);
                open.insert(key, (e, deadline));
            }
            Ok(true)
        })?;
        let mut out: Vec<(Entry, u64)> = open
            .into_values()
            // A write that announced itself and then failed created nothing to clean up.
            .filter(|(e, d)| *d <= now_ms && !failed_intents.contains(&e.index))
            .collect();
        out.sort_by_key(|(e, _)| e.index);
        Ok(out)
    }

    /// The verifier key of the host key that signs checkpoints, if checkpoints are on.
    pub fn verifier_key(&self) -> Option<&VerifierKey> {
        self.checkpoints.as_ref().map(|c| &c.verifier)
    }

    /// The checkpoints file, if checkpoints are on.
    pub fn checkpoints_file(&self) -> Option<&Path> {
        self.checkpoints.as_ref().map(|c| c.policy.file.as_path())
    }

    /// The newest checkpoint this process knows of.
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.checkpoints.as_ref().and_then(|c| c.published.borrow().clone())
    }

    /// Told of every new checkpoint (to copy it elsewhere).
    pub fn subscribe_checkpoints(&self) -> Option<tokio::sync::watch::Receiver<Option<SignedCheckpoint>>> {
        self.checkpoints.as_ref().map(|c| c.published.clone())
    }

    /// Every checkpoint in the checkpoints file, verified with the host key.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, LedgerError> {
        match &self.checkpoints {
            None => Ok(Vec::new()),
            Some(c) => {
                read_checkpoints(&c.policy.file, std::slice::from_ref(&c.verifier)).map_err(LedgerError::Checkpoint)
            }
        }
    }

    /// Signs a checkpoint of everything committed so far and stores it.
    pub fn checkpoint_now(&self) -> Result<SignedCheckpoint, LedgerError> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.send(Job::Checkpoint(reply))?;
        answer
            .recv()
            .map_err(|_| LedgerError::Checkpoint("the checkpointer has stopped".into()))?
            .map_err(LedgerError::Checkpoint)
    }
}

/// A row's body as a record.
fn decode(index: u64, at_ms: u64, body: &str) -> Result<Entry, LedgerError> {
    let record = serde_json::from_str(body).map_err(|e| LedgerError::Record { index, error: e.to_string() })?;
    Ok(Entry { index, at_ms, record })
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the queue lets the committer finish what it holds; waiting for it means
        // every answered append is durable and the head is synced before the process exits.
        drop(self.writer.take());
        if let Some(thread) = self.committer.take() {
            let _ = thread.join();
        }
        // The committer held the checkpointer's queue; with it gone the checkpointer drains.
        if let Some(thread) = self.checkpoints.as_mut().and_then(|c| c.thread.take()) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
