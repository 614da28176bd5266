//! The ledger in PostgreSQL: one chain for every host that shares the database.
//!
//! - A writer's transaction first takes one transaction-scoped advisory lock
//!   (`pg_advisory_xact_lock`), so appends from every host are serialised in the database:
//!   each reads the tip under the lock and chains onto what the others committed. The lock
//!   is released by the commit, by a rollback the moment a transaction is given up, or by
//!   the connection's end, so a host killed mid-commit blocks no one. The primary key on
//!   `idx` refuses a duplicate index whatever happens.
//! - A transaction's rows, nodes and intents are sent in one statement per table
//!   (`UNNEST` of arrays), pipelined in one round trip; statements are prepared once per
//!   connection.
//! - The client is tokio-postgres. The committer's connection is driven by the committer's
//!   own thread (a round trip is one write and one wake-up); the reading connection by a
//!   worker of its own, so reads work from any thread, inside an async runtime or not. Every
//!   call has a wall-clock bound, and a lost connection is made again on the next call (a
//!   restarted server).
//! - TLS is rustls, with the web roots or the CA file the config names; the server name is
//!   checked. TLS is required unless the URL names another `sslmode` (`disable`, `prefer`).
//!
//! The tables are prefixed `stowage_` so the ledger can share a database.

mod client;
mod queries;
mod tx;

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

pub(crate) use client::{Driver, Target};
use client::{Statements, Waiter, connect};
pub(crate) use queries::Queries;
use tx::PgTx;

use super::{Db, Tx};
use crate::LedgerError;

/// The advisory lock every writer takes first (any fixed number; this is "stowage" in ASCII).
const WRITER_LOCK: i64 = 0x0073_746f_7761_6765;

/// How long a connection driven by its caller may sit unused before it is asked whether it
/// is still there.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A connection to the ledger's PostgreSQL database.
pub(crate) struct Postgres {
    target: Target,
    waiter: Waiter,
    /// None until the first connection succeeds, and again once it is lost.
    client: Option<Client>,
    statements: Statements,
    /// When `reconnect` last looked at the connection.
    looked: std::time::Instant,
}

impl Postgres {
    /// A client of the database driven by `driver`. A `Worker` client connects now if the
    /// database answers; every client connects on first use otherwise (every call until then
    /// fails), so a host started while its database is down refuses guarded operations and
    /// recovers without a restart.
    pub(crate) fn new(target: &Target, driver: Driver) -> Result<Postgres, LedgerError> {
        let mut db = Postgres {
            target: target.clone(),
            waiter: Waiter::new(driver, target.timeout)?,
            client: None,
            statements: Statements::default(),
            looked: std::time::Instant::now(),
        };
        if driver == Driver::Worker
            && let Err(e) = db.reconnect()
        {
            tracing::warn!(error = %e, "the ledger's database does not answer yet; guarded operations wait for it");
        }
        Ok(db)
    }

    /// A client of the database, connected now: for what cannot wait (a migration).
    pub(crate) fn open(target: &Target) -> Result<Postgres, LedgerError> {
        let mut db = Postgres::new(target, Driver::Worker)?;
        db.reconnect()?;
        Ok(db)
    }

    fn client(&self) -> Result<&Client, LedgerError> {
        self.client.as_ref().ok_or_else(|| LedgerError::Postgres("not connected to the ledger's database".into()))
    }

    /// Creates the schema if it is not there yet (under the writers' lock: hosts starting
    /// together create it once). A role that may not create tables works with tables made
    /// for it.
    fn migrate(&mut self) -> Result<(), LedgerError> {
        let there = self.query(
            "SELECT to_regclass('stowage_records') IS NOT NULL AND to_regclass('stowage_merkle') IS NOT NULL
                AND to_regclass('stowage_open_intents') IS NOT NULL",
            &[],
        )?;
        if there.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(());
        }
        let tx = self.begin()?;
        tx.batch(
            "CREATE TABLE IF NOT EXISTS stowage_records (
                idx BIGINT PRIMARY KEY,
                at_ms BIGINT NOT NULL,
                body TEXT NOT NULL,
                prev TEXT NOT NULL,
                hash TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS stowage_merkle (
                level INTEGER NOT NULL,
                idx BIGINT NOT NULL,
                hash BYTEA NOT NULL,
                PRIMARY KEY (level, idx)
            );
            CREATE TABLE IF NOT EXISTS stowage_open_intents (idx BIGINT PRIMARY KEY);",
        )?;
        Tx::commit(Box::new(tx))
    }
}

impl Postgres {
    /// Runs statements that take no parameters (a schema), in one round trip.
    pub(crate) fn batch(&self, sql: &str) -> Result<(), LedgerError> {
        let client = self.client()?;
        self.waiter.wait(client.batch_execute(sql))
    }

    /// Runs a statement that returns no rows; how many rows it changed.
    pub(crate) fn query_count(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, LedgerError> {
        let client = self.client()?;
        let statement = self.statements.get(&self.waiter, sql, || client.prepare(sql))?;
        self.waiter.wait(client.execute(&statement, params))
    }
}

impl Queries for Postgres {
    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, LedgerError> {
        let client = self.client()?;
        let statement = self.statements.get(&self.waiter, sql, || client.prepare(sql))?;
        self.waiter.wait(client.query(&statement, params))
    }
}

impl Db for Postgres {
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, LedgerError> {
        Ok(Box::new(self.begin()?))
    }

    fn reconnect(&mut self) -> Result<(), LedgerError> {
        // A connection driven by its caller hears of its end (a restarted server) only when
        // next used: after a quiet spell, one empty query asks, so the call after a restart
        // does not fail on the old connection.
        if self.waiter.driver == Driver::Caller
            && self.looked.elapsed() > IDLE_CHECK
            && let Some(client) = &self.client
            && self.waiter.wait(client.batch_execute("")).is_err()
        {
            self.client = None;
        }
        self.looked = std::time::Instant::now();
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.statements.clear();
            self.client = Some(connect(&self.target, &self.waiter)?);
            if let Err(e) = self.migrate() {
                self.client = None;
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Postgres {
    fn begin(&mut self) -> Result<PgTx<'_>, LedgerError> {
        let Postgres { waiter, client, statements, .. } = self;
        let client =
            client.as_mut().ok_or_else(|| LedgerError::Postgres("not connected to the ledger's database".into()))?;
        // The lock wait ends in the server a little before the call's own bound, so a host that
        // waited too long is told why.
        let lock_ms = (waiter.timeout.as_millis() * 4 / 5).max(1);
        PgTx::begin(client, waiter, statements, lock_ms, WRITER_LOCK)
    }
}
