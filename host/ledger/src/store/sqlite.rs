//! The ledger in SQLite: the embedded default, one file beside the host.
//!
//! `PRAGMA user_version` is the schema version: 0 (only `records`, from earlier versions) is
//! migrated by building the other two tables from `records`. A writer's transaction is
//! `BEGIN IMMEDIATE`: the database's write lock, held until it commits, so a CLI command
//! appending next to `serve` chains onto what `serve` committed.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, Derive, Read, Row, Tx};
use crate::LedgerError;
use crate::merkle::Hash;

const SCHEMA_VERSION: i64 = 1;

/// Opens the database with the ledger's settings: WAL, `synchronous = FULL` (a commit is
/// durable when it returns), and a bounded wait for another process's lock.
pub(crate) fn connect(path: &Path, lock_timeout: Duration) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(lock_timeout)?;
    Ok(conn)
}

/// Opens the database and creates or migrates its schema.
pub(crate) fn open(path: &Path, lock_timeout: Duration) -> Result<Connection, LedgerError> {
    let mut conn = connect(path, lock_timeout)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
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
            CREATE TABLE IF NOT EXISTS open_intents (idx INTEGER PRIMARY KEY);",
        )?;
        rebuild(&tx)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Recomputes every stored node and the open intents from the rows; returns the tree's size.
pub(crate) fn rebuild(conn: &Connection) -> Result<u64, LedgerError> {
    conn.execute("DELETE FROM merkle", [])?;
    let mut insert = conn.prepare("INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    let mut derive = Derive::default();
    let mut failed = None;
    conn.scan(0, &mut |row| {
        derive.push(&row, |l, i, h| {
            if failed.is_none()
                && let Err(e) = insert.execute(params![l, i as i64, &h[..]])
            {
                failed = Some(e);
            }
        });
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let (size, open) = derive.finish();
    conn.execute("DELETE FROM open_intents", [])?;
    let mut insert = conn.prepare("INSERT INTO open_intents (idx) VALUES (?1)")?;
    for index in open {
        insert.execute(params![index as i64])?;
    }
    Ok(size)
}

impl Read for Connection {
    fn tip(&self) -> Result<Option<(u64, String)>, LedgerError> {
        Ok(self
            .prepare_cached("SELECT idx, hash FROM records ORDER BY idx DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64 + 1, r.get(1)?)))
            .optional()?)
    }

    fn hash_at(&self, index: u64) -> Result<Option<String>, LedgerError> {
        Ok(self
            .prepare_cached("SELECT hash FROM records WHERE idx = ?1")?
            .query_row(params![index as i64], |r| r.get(0))
            .optional()?)
    }

    fn row(&self, index: u64) -> Result<Option<(u64, String)>, LedgerError> {
        Ok(self
            .prepare_cached("SELECT at_ms, body FROM records WHERE idx = ?1")?
            .query_row(params![index as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?)
    }

    fn node(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self
            .prepare_cached("SELECT hash FROM merkle WHERE level = ?1 AND idx = ?2")?
            .query_row(params![level, index as i64], |r| r.get(0))
            .optional()?)
    }

    fn scan(&self, from: u64, each: &mut dyn FnMut(Row) -> Result<bool, LedgerError>) -> Result<(), LedgerError> {
        let mut stmt = self.prepare(
            "SELECT r.idx, r.at_ms, r.body, r.prev, r.hash, m.hash FROM records r
             LEFT JOIN merkle m ON m.level = 0 AND m.idx = r.idx
             WHERE r.idx >= ?1 ORDER BY r.idx",
        )?;
        let mut rows = stmt.query(params![from as i64])?;
        while let Some(r) = rows.next()? {
            let row = Row {
                index: r.get::<_, i64>(0)? as u64,
                at_ms: r.get::<_, i64>(1)? as u64,
                body: r.get(2)?,
                prev: r.get(3)?,
                hash: r.get(4)?,
                leaf: r.get(5)?,
            };
            if !each(row)? {
                break;
            }
        }
        Ok(())
    }

    fn open_intents(&self) -> Result<Vec<u64>, LedgerError> {
        let mut stmt = self.prepare("SELECT idx FROM open_intents ORDER BY idx")?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
        Ok(rows.map(|r| r.map(|i| i as u64)).collect::<Result<_, _>>()?)
    }
}

/// A writer's transaction on the file: `BEGIN IMMEDIATE` takes its write lock.
struct SqliteTx<'c>(rusqlite::Transaction<'c>);

impl Read for SqliteTx<'_> {
    fn tip(&self) -> Result<Option<(u64, String)>, LedgerError> {
        (*self.0).tip()
    }
    fn hash_at(&self, index: u64) -> Result<Option<String>, LedgerError> {
        (*self.0).hash_at(index)
    }
    fn row(&self, index: u64) -> Result<Option<(u64, String)>, LedgerError> {
        (*self.0).row(index)
    }
    fn node(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        (*self.0).node(level, index)
    }
    fn scan(&self, from: u64, each: &mut dyn FnMut(Row) -> Result<bool, LedgerError>) -> Result<(), LedgerError> {
        (*self.0).scan(from, each)
    }
    fn open_intents(&self) -> Result<Vec<u64>, LedgerError> {
        (*self.0).open_intents()
    }
}

impl Tx for SqliteTx<'_> {
    fn insert(&mut self, row: &Row) -> Result<(), LedgerError> {
        self.0
            .prepare_cached("INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![row.index as i64, row.at_ms as i64, row.body, row.prev, row.hash])?;
        Ok(())
    }

    fn put_node(&mut self, level: u32, index: u64, hash: &Hash) -> Result<(), LedgerError> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)")?
            .execute(params![level, index as i64, &hash[..]])?;
        Ok(())
    }

    fn open_intent(&mut self, index: u64) -> Result<(), LedgerError> {
        self.0.prepare_cached("INSERT INTO open_intents (idx) VALUES (?1)")?.execute(params![index as i64])?;
        Ok(())
    }

    fn settle(&mut self, index: u64) -> Result<(), LedgerError> {
        self.0.prepare_cached("DELETE FROM open_intents WHERE idx = ?1")?.execute(params![index as i64])?;
        Ok(())
    }

    fn rebuild(&mut self) -> Result<u64, LedgerError> {
        rebuild(&self.0)
    }

    fn commit(self: Box<Self>) -> Result<(), LedgerError> {
        Ok(self.0.commit()?)
    }
}

impl Db for Connection {
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, LedgerError> {
        Ok(Box::new(SqliteTx(self.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)))
    }

    fn reconnect(&mut self) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// Recomputes every row's chain hash (what someone with write access could do to hide an
/// edit): for tests of what only checkpoints catch.
#[cfg(test)]
pub(crate) fn rechain(conn: &Connection) -> Result<(), LedgerError> {
    let rows: Vec<(i64, i64, String)> = conn
        .prepare("SELECT idx, at_ms, body FROM records ORDER BY idx")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut prev = super::GENESIS.to_string();
    for (i, (idx, at_ms, body)) in rows.into_iter().enumerate() {
        conn.execute("UPDATE records SET idx = ?1 WHERE idx = ?2", params![i as i64, idx])?;
        let hash = super::chain_hash(&prev, i as u64, at_ms as u64, &body);
        conn.execute("UPDATE records SET prev = ?1, hash = ?2 WHERE idx = ?3", params![prev, hash, i as i64])?;
        prev = hash;
    }
    Ok(())
}
