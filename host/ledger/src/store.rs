//! The SQLite schema and the queries every part of the ledger shares.
//!
//! - `records`: one row per record: `idx`, `at_ms`, `body` (the record as JSON), `prev` and
//!   `hash` (the chain: `hash = sha256(prev | idx | at_ms | body)`).
//! - `merkle`: the stored nodes of the RFC 6962 tree (complete, aligned subtrees), derived from
//!   `records` in the same transaction; `verify` recomputes and compares them.
//! - `open_intents`: the write-ahead records not settled yet (derived, for a quick reconcile).
//!
//! `PRAGMA user_version` is the schema version: 0 (only `records`, from earlier versions) is
//! migrated by building the other two from `records`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::LedgerError;
use crate::merkle::{self, Frontier, Hash, Nodes};

/// The chain's start: the `prev` of record 0.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SCHEMA_VERSION: i64 = 1;

/// `sha256(prev | index | at_ms | body)`, hex.
pub(crate) fn chain_hash(prev: &str, index: u64, at_ms: u64, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(index.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// The leaf hash of a stored row.
pub(crate) fn row_leaf(index: u64, at_ms: u64, body: &str) -> Hash {
    merkle::leaf_hash(&merkle::leaf_data(index, at_ms, body))
}

/// The leaf of an index with no row (removed behind the host's back; a seal accepts it).
pub(crate) fn absent_leaf(index: u64) -> Hash {
    merkle::leaf_hash(&merkle::leaf_data(index, 0, "\u{0}absent"))
}

/// Opens the database with the ledger's settings: WAL, `synchronous = FULL` (a commit is
/// durable when it returns), and a bounded wait for another process's lock.
pub(crate) fn connect(path: &Path, lock_timeout: Duration) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(lock_timeout)?;
    Ok(conn)
}

/// Creates or migrates the schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS records (
            idx INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            body TEXT NOT NULL,
            prev TEXT NOT NULL,
            hash TEXT NOT NULL
        )",
    )?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < SCHEMA_VERSION {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS merkle (
                level INTEGER NOT NULL,
                idx INTEGER NOT NULL,
                hash BLOB NOT NULL,
                PRIMARY KEY (level, idx)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS open_intents (idx INTEGER PRIMARY KEY);
            DELETE FROM merkle;",
        )?;
        rebuild_merkle(&tx)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Recomputes every stored node from the rows (a missing index is an absent leaf); returns
/// the tree's size.
pub(crate) fn rebuild_merkle(conn: &Connection) -> Result<u64, LedgerError> {
    conn.execute("DELETE FROM merkle", [])?;
    let mut frontier = Frontier::default();
    let mut insert = conn.prepare("INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    let mut stmt = conn.prepare("SELECT idx, at_ms, body FROM records ORDER BY idx")?;
    let mut rows = stmt.query([])?;
    let mut failed = None;
    while let Some(row) = rows.next()? {
        let (index, at_ms, body): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let index = index as u64;
        while frontier.size() < index {
            let gap = frontier.size();
            frontier.push(absent_leaf(gap), |l, i, h| store(&mut insert, l, i, h, &mut failed));
        }
        frontier.push(row_leaf(index, at_ms as u64, &body), |l, i, h| store(&mut insert, l, i, h, &mut failed));
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(frontier.size()),
    }
}

/// Recomputes `open_intents` from the rows: every write-ahead record no later record settles.
pub(crate) fn rebuild_open_intents(conn: &Connection) -> Result<(), LedgerError> {
    let mut open = std::collections::BTreeSet::new();
    let mut stmt = conn.prepare("SELECT idx, body FROM records ORDER BY idx")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (index, body): (i64, String) = (row.get(0)?, row.get(1)?);
        // A row that is not a record (damaged) announces nothing.
        let Ok(record) = serde_json::from_str::<crate::Record>(&body) else { continue };
        if record.intent.is_some() {
            open.insert(index);
        }
        for settled in &record.settles {
            open.remove(&(*settled as i64));
        }
    }
    conn.execute("DELETE FROM open_intents", [])?;
    let mut insert = conn.prepare("INSERT INTO open_intents (idx) VALUES (?1)")?;
    for index in open {
        insert.execute(params![index])?;
    }
    Ok(())
}

/// Inserts one node, keeping the first failure (the frontier's callback cannot return one).
pub(crate) fn store(
    insert: &mut rusqlite::Statement<'_>,
    level: u32,
    index: u64,
    hash: &Hash,
    failed: &mut Option<LedgerError>,
) {
    if failed.is_none()
        && let Err(e) = insert.execute(params![level, index as i64, &hash[..]])
    {
        *failed = Some(e.into());
    }
}

/// The stored nodes of a connection's tree.
pub(crate) struct Stored<'c>(pub(crate) &'c Connection);

impl Nodes for Stored<'_> {
    type Error = LedgerError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let blob: Option<Vec<u8>> = self
            .0
            .prepare_cached("SELECT hash FROM merkle WHERE level = ?1 AND idx = ?2")?
            .query_row(params![level, index as i64], |r| r.get(0))
            .optional()?;
        blob.and_then(|b| b.try_into().ok()).ok_or_else(|| {
            LedgerError::Tampered(format!("the ledger's Merkle node ({level}, {index}) is missing or damaged"))
        })
    }
}

/// The hash of the record at `index`, if there is one.
pub(crate) fn hash_at(conn: &Connection, index: u64) -> Result<Option<String>, LedgerError> {
    Ok(conn.query_row("SELECT hash FROM records WHERE idx = ?1", params![index as i64], |r| r.get(0)).optional()?)
}

/// The last record's (index + 1, hash), if any.
pub(crate) fn tip(conn: &Connection) -> Result<Option<(u64, String)>, LedgerError> {
    Ok(conn
        .query_row("SELECT idx, hash FROM records ORDER BY idx DESC LIMIT 1", [], |r| {
            Ok((r.get::<_, i64>(0)? as u64 + 1, r.get(1)?))
        })
        .optional()?)
}

/// Recomputes every row's chain hash (what someone with write access could do to hide an
/// edit): for tests of what only checkpoints catch.
#[cfg(test)]
pub(crate) fn rechain(conn: &Connection) -> Result<(), LedgerError> {
    let rows: Vec<(i64, i64, String)> = conn
        .prepare("SELECT idx, at_ms, body FROM records ORDER BY idx")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut prev = GENESIS.to_string();
    for (i, (idx, at_ms, body)) in rows.into_iter().enumerate() {
        conn.execute("UPDATE records SET idx = ?1 WHERE idx = ?2", params![i as i64, idx])?;
        let hash = chain_hash(&prev, i as u64, at_ms as u64, &body);
        conn.execute("UPDATE records SET prev = ?1, hash = ?2 WHERE idx = ?3", params![prev, hash, i as i64])?;
        prev = hash;
    }
    Ok(())
}
