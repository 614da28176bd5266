//! A writer's transaction: the writers' lock, and what it has yet to send.

use std::cell::RefCell;

use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::client::{Statements, Waiter};
use super::queries::Queries;
use crate::LedgerError;
use crate::merkle::Hash;
use crate::store::{Derive, Row, Tx};

/// What a transaction has yet to send: written in one statement per table before the next
/// read and at commit.
#[derive(Default)]
pub(crate) struct Pending {
    rows: Vec<Row>,
    nodes: Vec<(u32, u64, Hash)>,
    opened: Vec<u64>,
    settled: Vec<u64>,
}

/// A writer's transaction, holding the writers' lock.
pub(crate) struct PgTx<'c> {
    /// None once committed or rolled back.
    tx: Option<tokio_postgres::Transaction<'c>>,
    waiter: Waiter,
    statements: &'c Statements,
    pending: RefCell<Pending>,
    /// A send failed: what is pending may be lost, so it must not commit.
    failed: std::cell::Cell<bool>,
}

impl Drop for PgTx<'_> {
    /// A transaction given up is rolled back now, not whenever its connection is next used,
    /// so the writers' lock it holds is free for every other host at once. (Should that fail,
    /// the server ends the transaction after `idle_in_transaction_session_timeout`, which the
    /// client sets, or when the connection closes.)
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Err(e) = self.waiter.wait(tx.rollback())
        {
            tracing::warn!(error = %e, "could not roll back a ledger transaction");
        }
    }
}

impl<'c> PgTx<'c> {
    /// Begins on `client`: the transaction, then the writers' lock (its wait bounded by
    /// `lock_ms`), in two round trips.
    pub(crate) fn begin(
        client: &'c mut tokio_postgres::Client,
        waiter: &Waiter,
        statements: &'c Statements,
        lock_ms: u128,
        lock: i64,
    ) -> Result<PgTx<'c>, LedgerError> {
        let tx = waiter.wait(client.transaction())?;
        let tx = PgTx {
            tx: Some(tx),
            waiter: waiter.clone(),
            statements,
            pending: RefCell::default(),
            failed: std::cell::Cell::new(false),
        };
        tx.batch(&format!("SET LOCAL lock_timeout = {lock_ms}; SELECT pg_advisory_xact_lock({lock})"))?;
        Ok(tx)
    }

    fn tx(&self) -> Result<&tokio_postgres::Transaction<'c>, LedgerError> {
        self.tx.as_ref().ok_or_else(|| LedgerError::Postgres("the ledger's transaction has ended".into()))
    }

    /// Runs `f`, remembering a failure: a transaction that failed once never commits.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let result = f();
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<(), LedgerError> {
        self.guard(|| self.waiter.wait(self.tx()?.batch_execute(sql)))
    }

    /// Sends what is pending: one statement per table, all sent at once (one round trip).
    fn flush(&self) -> Result<(), LedgerError> {
        self.guard(|| self.send_pending())
    }

    fn send_pending(&self) -> Result<(), LedgerError> {
        let p = self.pending.take();
        let (mut idx, mut at, mut body, mut prev, mut hash) = (vec![], vec![], vec![], vec![], vec![]);
        for r in p.rows {
            idx.push(r.index as i64);
            at.push(r.at_ms as i64);
            body.push(r.body);
            prev.push(r.prev);
            hash.push(r.hash);
        }
        let level: Vec<i32> = p.nodes.iter().map(|n| n.0 as i32).collect();
        let node_idx: Vec<i64> = p.nodes.iter().map(|n| n.1 as i64).collect();
        let node_hash: Vec<Vec<u8>> = p.nodes.iter().map(|n| n.2.to_vec()).collect();
        let opened: Vec<i64> = p.opened.iter().map(|&i| i as i64).collect();
        let settled: Vec<i64> = p.settled.iter().map(|&i| i as i64).collect();
        let mut work: Vec<(&'static str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
        if !idx.is_empty() {
            work.push((
                "INSERT INTO stowage_records (idx, at_ms, body, prev, hash)
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[])",
                vec![&idx, &at, &body, &prev, &hash],
            ));
        }
        if !level.is_empty() {
            work.push((
                "INSERT INTO stowage_merkle (level, idx, hash)
                 SELECT * FROM UNNEST($1::int4[], $2::int8[], $3::bytea[])
                 ON CONFLICT (level, idx) DO UPDATE SET hash = EXCLUDED.hash",
                vec![&level, &node_idx, &node_hash],
            ));
        }
        // Opened before settled: a record may settle one opened in the same batch.
        if !opened.is_empty() {
            work.push(("INSERT INTO stowage_open_intents (idx) SELECT * FROM UNNEST($1::int8[])", vec![&opened]));
        }
        if !settled.is_empty() {
            work.push(("DELETE FROM stowage_open_intents WHERE idx = ANY($1)", vec![&settled]));
        }
        let mut statements = Vec::with_capacity(work.len());
        for (sql, _) in &work {
            statements.push(self.statement(sql)?);
        }
        // tokio-postgres sends requests polled together without waiting between them, and
        // the server runs them in order.
        let tx = self.tx()?;
        let sends = work.iter().zip(&statements).map(|((_, params), statement)| tx.execute(statement, params));
        self.waiter.wait(futures::future::try_join_all(sends))?;
        Ok(())
    }

    fn statement(&self, sql: &'static str) -> Result<Statement, LedgerError> {
        let tx = self.tx()?;
        self.statements.get(&self.waiter, sql, || tx.prepare(sql))
    }
}

impl Queries for PgTx<'_> {
    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, LedgerError> {
        self.flush()?;
        let statement = self.statement(sql)?;
        self.guard(|| self.waiter.wait(self.tx()?.query(&statement, params)))
    }
}

impl Tx for PgTx<'_> {
    fn flush(&mut self) -> Result<(), LedgerError> {
        PgTx::flush(self)
    }

    fn insert(&mut self, row: &Row) -> Result<(), LedgerError> {
        self.pending.get_mut().rows.push(row.clone());
        Ok(())
    }

    fn put_node(&mut self, level: u32, index: u64, hash: &Hash) -> Result<(), LedgerError> {
        self.pending.get_mut().nodes.push((level, index, *hash));
        Ok(())
    }

    fn open_intent(&mut self, index: u64) -> Result<(), LedgerError> {
        self.pending.get_mut().opened.push(index);
        Ok(())
    }

    fn settle(&mut self, index: u64) -> Result<(), LedgerError> {
        self.pending.get_mut().settled.push(index);
        Ok(())
    }

    fn rebuild(&mut self) -> Result<u64, LedgerError> {
        self.flush()?;
        self.batch("DELETE FROM stowage_merkle; DELETE FROM stowage_open_intents;")?;
        let mut derive = Derive::default();
        // The nodes go out with each page's query (a read sends what is pending first).
        self.read_scan(0, &mut |row| {
            derive.push(&row, |l, i, h| self.pending.borrow_mut().nodes.push((l, i, *h)));
            Ok(true)
        })?;
        let (size, open) = derive.finish();
        self.pending.get_mut().opened = open;
        self.flush()?;
        Ok(size)
    }

    fn commit(self: Box<Self>) -> Result<(), LedgerError> {
        self.flush()?;
        if self.failed.get() {
            return Err(LedgerError::Postgres("a ledger transaction that failed cannot commit".into()));
        }
        let mut this = self;
        let tx = this.tx.take().ok_or_else(|| LedgerError::Postgres("the ledger's transaction has ended".into()))?;
        let waiter = this.waiter.clone();
        waiter.wait(tx.commit())
    }
}
