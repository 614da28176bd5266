//! The PHI ledger: an append-only, hash-chained log of tracking records in SQLite.
//!
//! Each row holds its index, time, the record as canonical JSON, the previous row's hash and
//! its own: `sha256(prev | index | time | json)`. Any edited field, deleted row or swapped
//! pair breaks the chain at that index. A truncated tail leaves a valid chain, so the host
//! also keeps the head (count and last hash) in a file beside the database (`head`);
//! `verify` checks the chain reaches it.
//!
//! Durability: SQLite in WAL mode with `synchronous = FULL`. Appends are group-committed
//! (`committer`): concurrent appends share one transaction, and `append` returns only once
//! the transaction holding its record is durable. The head is rewritten in place after each
//! commit and synced right after the callers are answered, so after a power loss it may lag
//! the database (allowed: the head may be behind, never ahead, and must agree with the record
//! it names), never lead it. The host refuses to chain onto a database that no longer reaches
//! its head, or whose last record changed while it ran, so records removed from the tail
//! cannot be papered over by new ones.

mod committer;
mod head;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::committer::Pending;
use self::head::{Head, HeadFile, HeadState};
use crate::types::Metadata;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn genesis() -> String {
    GENESIS.to_string()
}

/// One tracking event (the fields of the original PHIFileTracking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingRecord {
    /// e.g. `file_created`, `work_copy_created`, `work_copy_deleted`, `creation_failed`.
    pub action: String,
    /// Object path.
    pub path: String,
    /// Disk name.
    pub disk: String,
    /// Storage class, if addressed through one.
    pub class: Option<String>,
    /// Who.
    pub actor: Option<String>,
    /// Cohort.
    pub cohort: Option<String>,
    /// File type.
    pub file_type: Option<String>,
    /// Bytes.
    pub size: Option<u64>,
    /// sha256 measured by the host.
    pub sha256: Option<String>,
    /// User metadata.
    pub metadata: Metadata,
    /// Error message of a failure.
    pub error: Option<String>,
    /// A temporary copy that must be deleted.
    pub cleanup_required: bool,
    /// Seconds after the record's time by which it must be gone.
    pub cleanup_within_secs: Option<u64>,
    /// The request that caused it.
    pub request_id: String,
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0-based index.
    pub index: u64,
    /// Milliseconds since the Unix epoch when it was appended.
    pub at_ms: u64,
    /// The record.
    pub record: TrackingRecord,
}

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The head file could not be read or written.
    #[error("ledger head file {path}: {error}")]
    Head {
        /// The file.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The ledger was changed behind the host's back; appending is refused.
    #[error("{0}; run `stowage ledger verify`")]
    Tampered(String),
    /// An append was not committed.
    #[error("ledger append failed: {0}")]
    Append(String),
    /// A record could not be encoded or decoded.
    #[error("ledger record at index {index}: {error}")]
    Record {
        /// Where.
        index: u64,
        /// What.
        error: String,
    },
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger broken at index {index}: {reason}")]
pub struct Broken {
    /// The first bad index.
    pub index: u64,
    /// What is wrong there.
    pub reason: String,
}

/// The ledger.
pub struct Ledger {
    /// For reading (`entries`, `verify`); the committer has its own connection.
    conn: Mutex<Connection>,
    head: PathBuf,
    writer: Option<Sender<Pending>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("head", &self.head).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn chain_hash(prev: &str, index: u64, at_ms: u64, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(index.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

fn connect(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// The hash of the record at `index`, if there is one.
fn hash_at(conn: &Connection, index: u64) -> Result<Option<String>, LedgerError> {
    Ok(conn.query_row("SELECT hash FROM records WHERE idx = ?1", params![index as i64], |r| r.get(0)).optional()?)
}

/// Why a database whose last record is `tip` does not reach the head `state` (the head may
/// be behind, never ahead), if it does not.
fn reaches(conn: &Connection, tip: Option<&Head>, state: &HeadState) -> Result<Option<String>, LedgerError> {
    Ok(match (state, tip) {
        (HeadState::Missing, None) => None,
        (HeadState::Missing | HeadState::Damaged, Some(_)) => Some("the ledger's head file is missing or damaged".into()),
        (HeadState::Damaged, None) => Some("the ledger's head file is damaged".into()),
        (HeadState::At(head), _) => {
            let at_head = match head.count.checked_sub(1) {
                Some(last) => hash_at(conn, last)?,
                None => None,
            };
            (at_head.as_deref() != Some(head.hash.as_str()))
                .then(|| "the ledger does not match its head (records were removed or changed)".into())
        }
    })
}

impl Ledger {
    /// Opens (creating if needed) the ledger database at `path`. A ledger that no longer
    /// reaches its head still opens (so it can be verified and read) but refuses appends.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| LedgerError::Head { path: dir.display().to_string(), error })?;
        }
        let writer = connect(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                idx INTEGER PRIMARY KEY,
                at_ms INTEGER NOT NULL,
                body TEXT NOT NULL,
                prev TEXT NOT NULL,
                hash TEXT NOT NULL
            )",
        )?;
        let mut head_path = path.as_os_str().to_owned();
        head_path.push(".head");
        let head_path = PathBuf::from(head_path);
        let head_err = |error| LedgerError::Head { path: head_path.display().to_string(), error };
        let state = head::read(&head_path).map_err(head_err)?;
        let tip: Option<Head> = writer
            .query_row("SELECT idx, hash FROM records ORDER BY idx DESC LIMIT 1", [], |r| {
                Ok(Head { count: r.get::<_, i64>(0)? as u64 + 1, hash: r.get(1)? })
            })
            .optional()?;
        let broken = reaches(&writer, tip.as_ref(), &state)?;
        let start = committer::Start { conn: writer, tip, broken, head: HeadFile::new(&head_path, &state) };
        let (tx, thread) = committer::spawn(start).map_err(head_err)?;
        Ok(Ledger { conn: Mutex::new(connect(path)?), head: head_path, writer: Some(tx), committer: Some(thread) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `record` once it is durable; returns its index. Concurrent appends share a
    /// commit.
    pub async fn append_async(&self, record: &TrackingRecord) -> Result<u64, LedgerError> {
        let body = serde_json::to_string(record).map_err(|e| LedgerError::Record { index: 0, error: e.to_string() })?;
        let stopped = || LedgerError::Append("the ledger's writer has stopped".into());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.as_ref().ok_or_else(stopped)?.send(Pending { body, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Appends `record`, blocking the thread until it is durable; returns its index.
    pub fn append(&self, record: &TrackingRecord) -> Result<u64, LedgerError> {
        futures::executor::block_on(self.append_async(record))
    }

    /// Every record, in order.
    pub fn entries(&self) -> Result<Vec<Entry>, LedgerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT idx, at_ms, body FROM records ORDER BY idx")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (index, at_ms, body) = row?;
            let (index, at_ms) = (index as u64, at_ms as u64);
            let record = serde_json::from_str(&body).map_err(|e| LedgerError::Record { index, error: e.to_string() })?;
            out.push(Entry { index, at_ms, record });
        }
        Ok(out)
    }

    /// Walks the chain; `Ok(n)` with the number of records, or the first broken index.
    pub fn verify(&self) -> Result<Result<u64, Broken>, LedgerError> {
        // The head first: it never leads the database, so records appended while the chain is
        // walked cannot look like missing ones.
        let state = head::read(&self.head).map_err(|error| LedgerError::Head { path: self.head.display().to_string(), error })?;
        let conn = self.conn();
        let mut expected_prev = genesis();
        let mut n = 0u64;
        {
            let mut stmt = conn.prepare("SELECT idx, at_ms, body, prev, hash FROM records ORDER BY idx")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (index, at_ms, body, prev, hash): (i64, i64, String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
                let (index, at_ms) = (index as u64, at_ms as u64);
                let broken = |reason: &str| Ok(Err(Broken { index: n, reason: reason.to_string() }));
                if index != n {
                    return broken("record missing (deleted, or rows renumbered)");
                }
                if prev != expected_prev {
                    return broken("does not follow the previous record (reordered or replaced)");
                }
                if chain_hash(&prev, index, at_ms, &body) != hash {
                    return broken("contents changed after it was written");
                }
                expected_prev = hash;
                n += 1;
            }
        }
        match state {
            HeadState::At(Head { count, hash: head_hash }) => {
                if count > n {
                    return Ok(Err(Broken { index: n, reason: format!("records from here on are missing (the head says {count} records)") }));
                }
                if let Some(last) = count.checked_sub(1)
                    && hash_at(&conn, last)?.as_deref() != Some(head_hash.as_str())
                {
                    return Ok(Err(Broken { index: last, reason: "does not match the head (the chain was rewritten)".into() }));
                }
            }
            HeadState::Damaged => return Ok(Err(Broken { index: 0, reason: "the head file is damaged".into() })),
            HeadState::Missing if n > 0 => return Ok(Err(Broken { index: 0, reason: "the head file is missing".into() })),
            HeadState::Missing => {}
        }
        Ok(Ok(n))
    }

    /// Temporary copies past their deadline and not deleted since: (creating entry, deadline ms).
    pub fn overdue(&self, now_ms: u64) -> Result<Vec<(Entry, u64)>, LedgerError> {
        let mut open: Vec<(Entry, u64)> = Vec::new();
        for e in self.entries()? {
            let key = (e.record.disk.clone(), e.record.path.clone());
            let deleted = e.record.error.is_none() && (e.record.action.ends_with("_deleted") || e.record.action == "cleaned_up");
            if deleted || e.record.cleanup_required {
                open.retain(|(o, _)| (o.record.disk.clone(), o.record.path.clone()) != key);
            }
            if e.record.cleanup_required && e.record.error.is_none() {
                let within_ms = e.record.cleanup_within_secs.unwrap_or(0).saturating_mul(1000);
                let deadline = e.at_ms.saturating_add(within_ms);
                open.push((e, deadline));
            }
        }
        Ok(open.into_iter().filter(|(_, d)| *d <= now_ms).collect())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the queue lets the committer finish what it holds; waiting for it means
        // every answered append is durable and the head is synced before the process exits.
        drop(self.writer.take());
        if let Some(thread) = self.committer.take() {
            let _ = thread.join();
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> u64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str, path: &str) -> TrackingRecord {
        TrackingRecord {
            action: action.into(),
            path: path.into(),
            disk: "local".into(),
            class: Some("scratch".into()),
            actor: Some("alice".into()),
            cohort: Some("VACS".into()),
            file_type: None,
            size: Some(3),
            sha256: None,
            metadata: vec![],
            error: None,
            cleanup_required: action == "work_copy_created",
            cleanup_within_secs: Some(0),
            request_id: "r".into(),
        }
    }

    #[test]
    fn chain_verifies_and_overdue_clears_on_delete() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        assert_eq!(l.verify().unwrap(), Ok(0));
        assert_eq!(l.append(&record("work_copy_created", "a")).unwrap(), 0);
        assert_eq!(l.append(&record("work_copy_created", "b")).unwrap(), 1);
        assert_eq!(l.append(&record("work_copy_deleted", "a")).unwrap(), 2);
        assert_eq!(l.verify().unwrap(), Ok(3));
        let overdue = l.overdue(now() + 1).unwrap();
        assert_eq!(overdue.len(), 1);
        // Removing the tail and appending again must not paper over the gap.
        l.conn().execute("DELETE FROM records WHERE idx = 2", []).unwrap();
        assert!(l.append(&record("file_created", "c")).is_err());
        assert_eq!(l.verify().unwrap().unwrap_err().index, 2);
        std::fs::write(dir.path().join("l.sqlite.head"), "").unwrap();
        assert_eq!(l.verify().unwrap().unwrap_err().reason, "the head file is damaged");
        assert_eq!(overdue.iter().map(|(e, _)| e.record.path.as_str()).collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn concurrent_appends_share_commits_and_chain_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = std::sync::Arc::new(Ledger::open(&path).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let mut indexes: Vec<u64> = rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let l = l.clone();
                    tokio::spawn(async move { l.append_async(&record("file_created", &format!("f{i}"))).await.unwrap() })
                })
                .collect();
            futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect()
        });
        indexes.sort_unstable();
        assert_eq!(indexes, (0..64).collect::<Vec<_>>());
        assert_eq!(l.verify().unwrap(), Ok(64));
        drop(l);
        // Reopened, it chains on where it stopped.
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.append(&record("file_deleted", "f0")).unwrap(), 64);
        assert_eq!(l.verify().unwrap(), Ok(65));
    }

    #[test]
    fn two_processes_appending_to_one_ledger_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let (a, b) = (Ledger::open(&path).unwrap(), Ledger::open(&path).unwrap());
        for i in 0..6 {
            let l = if i % 2 == 0 { &a } else { &b };
            assert_eq!(l.append(&record("file_created", &format!("f{i}"))).unwrap(), i);
        }
        assert_eq!(a.verify().unwrap(), Ok(6));
        // A removed tail is still refused, whoever appended it.
        a.conn().execute("DELETE FROM records WHERE idx = 5", []).unwrap();
        assert!(b.append(&record("file_created", "g")).is_err());
        assert!(a.append(&record("file_created", "g")).is_err());
    }

    #[test]
    fn a_ledger_cut_short_while_closed_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = Ledger::open(&path).unwrap();
        for p in ["a", "b", "c"] {
            l.append(&record("file_created", p)).unwrap();
        }
        drop(l);
        Connection::open(&path).unwrap().execute("DELETE FROM records WHERE idx = 2", []).unwrap();
        let l = Ledger::open(&path).unwrap();
        let e = l.append(&record("file_created", "d")).unwrap_err();
        assert!(e.to_string().contains("does not match its head"), "{e}");
        assert_eq!(l.verify().unwrap().unwrap_err().index, 2);
    }
}
