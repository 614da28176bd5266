//! The PHI ledger: an append-only, hash-chained log of tracking records in SQLite.
//!
//! Each row holds its index, time, the record as canonical JSON, the previous row's hash and
//! its own: `sha256(prev | index | time | json)`. Any edited field, deleted row or swapped
//! pair breaks the chain at that index. A truncated tail leaves a valid chain, so the host
//! also keeps the head (count and last hash) in a file beside the database, rewritten after
//! every append; `verify` checks the chain reaches it.
//!
//! Durability: SQLite in WAL mode with `synchronous = FULL`, one transaction per append, so an
//! appended record survives a crash once `append` returns. The head file is replaced durably
//! after the commit: after a crash it may lag the database by one record (allowed: the head
//! may be behind, never ahead, and must agree with the record it names). `append` refuses to
//! chain onto a database that no longer reaches its head, so records removed from the tail
//! cannot be papered over by new ones.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::Metadata;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    conn: Mutex<Connection>,
    head: PathBuf,
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

impl Ledger {
    /// Opens (creating if needed) the ledger database at `path`.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| LedgerError::Head { path: dir.display().to_string(), error })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                idx INTEGER PRIMARY KEY,
                at_ms INTEGER NOT NULL,
                body TEXT NOT NULL,
                prev TEXT NOT NULL,
                hash TEXT NOT NULL
            )",
        )?;
        let mut head = path.as_os_str().to_owned();
        head.push(".head");
        Ok(Ledger { conn: Mutex::new(conn), head: PathBuf::from(head) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `record`; returns its index.
    pub fn append(&self, record: &TrackingRecord) -> Result<u64, LedgerError> {
        let body = serde_json::to_string(record).map_err(|e| LedgerError::Record { index: 0, error: e.to_string() })?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last: Option<(i64, String)> = tx
            .query_row("SELECT idx, hash FROM records ORDER BY idx DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (index, prev) = match last {
            Some((i, h)) => (i as u64 + 1, h),
            None => (0, GENESIS.to_string()),
        };
        // Never chain onto a tampered tail: the database must reach the head (it may be ahead
        // of it after a crash, never behind), and agree with it where they overlap.
        let head = self.read_head()?;
        if let Some((count, head_hash)) = &head {
            let agrees = match count.checked_sub(1) {
                None => true,
                Some(last) if last + 1 > index => false,
                Some(last) => tx
                    .query_row("SELECT hash FROM records WHERE idx = ?1", params![last as i64], |r| r.get::<_, String>(0))
                    .optional()?
                    .is_some_and(|h| h == *head_hash),
            };
            if !agrees {
                return Err(LedgerError::Record {
                    index,
                    error: "the ledger does not match its head (records were removed or changed); run `stowage ledger verify`".into(),
                });
            }
        } else if index > 0 {
            return Err(LedgerError::Record { index, error: "the ledger's head file is missing or damaged; run `stowage ledger verify`".into() });
        }
        let at_ms = now_ms();
        let hash = chain_hash(&prev, index, at_ms, &body);
        tx.execute(
            "INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![index as i64, at_ms as i64, body, prev, hash],
        )?;
        tx.commit()?;
        self.write_head(index + 1, &hash)?;
        Ok(index)
    }

    /// The head: (record count, hash of the last record), if the file exists and parses.
    fn read_head(&self) -> Result<Option<(u64, String)>, LedgerError> {
        match std::fs::read_to_string(&self.head) {
            Ok(text) => {
                let mut parts = text.split_whitespace();
                let count = parts.next().and_then(|c| c.parse::<u64>().ok());
                let hash = parts.next().filter(|h| h.len() == 64);
                Ok(count.zip(hash.map(str::to_string)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(LedgerError::Head { path: self.head.display().to_string(), error }),
        }
    }

    /// Replaces the head file durably (written, fsynced, renamed).
    fn write_head(&self, count: u64, hash: &str) -> Result<(), LedgerError> {
        use std::io::Write;
        let err = |error| LedgerError::Head { path: self.head.display().to_string(), error };
        let dir = self.head.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        writeln!(tmp, "{count} {hash}").map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&self.head).map_err(|e| err(e.error))?;
        Ok(())
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
        let conn = self.conn();
        let mut expected_prev = GENESIS.to_string();
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
        let head_exists = self.head.exists();
        match self.read_head()? {
            Some((count, head_hash)) => {
                if count > n {
                    return Ok(Err(Broken { index: n, reason: format!("records from here on are missing (the head says {count} records)") }));
                }
                if let Some(last) = count.checked_sub(1) {
                    let at_head: Option<String> = conn
                        .query_row("SELECT hash FROM records WHERE idx = ?1", params![last as i64], |r| r.get(0))
                        .optional()?;
                    if at_head.as_deref() != Some(head_hash.as_str()) {
                        return Ok(Err(Broken { index: last, reason: "does not match the head (the chain was rewritten)".into() }));
                    }
                }
            }
            None if head_exists => return Ok(Err(Broken { index: 0, reason: "the head file is damaged".into() })),
            None if n > 0 => return Ok(Err(Broken { index: 0, reason: "the head file is missing".into() })),
            None => {}
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
}
