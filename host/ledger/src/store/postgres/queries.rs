//! The queries both a connection and a transaction answer (a transaction sees its own rows),
//! and through them the ledger's [`Read`].

use tokio_postgres::types::ToSql;

use super::client::pg;
use crate::LedgerError;
use crate::store::{Read, Row};

/// Rows a scan fetches at a time.
const PAGE: i64 = 1000;

/// What runs a query: a connection, or a transaction.
pub(crate) trait Queries {
    fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)])
    -> Result<Vec<tokio_postgres::Row>, LedgerError>;

    fn one(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, LedgerError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn read_tip(&self) -> Result<Option<(u64, String)>, LedgerError> {
        let row = self.one("SELECT idx, hash FROM stowage_records ORDER BY idx DESC LIMIT 1", &[])?;
        row.map(|r| Ok((r.try_get::<_, i64>(0).map_err(pg)? as u64 + 1, r.try_get(1).map_err(pg)?))).transpose()
    }

    fn read_hash_at(&self, index: u64) -> Result<Option<String>, LedgerError> {
        let row = self.one("SELECT hash FROM stowage_records WHERE idx = $1", &[&(index as i64)])?;
        row.map(|r| r.try_get(0).map_err(pg)).transpose()
    }

    fn read_row(&self, index: u64) -> Result<Option<(u64, String)>, LedgerError> {
        let row = self.one("SELECT at_ms, body FROM stowage_records WHERE idx = $1", &[&(index as i64)])?;
        row.map(|r| Ok((r.try_get::<_, i64>(0).map_err(pg)? as u64, r.try_get(1).map_err(pg)?))).transpose()
    }

    fn read_node(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let row = self.one(
            "SELECT hash FROM stowage_merkle WHERE level = $1 AND idx = $2",
            &[&(level as i32), &(index as i64)],
        )?;
        row.map(|r| r.try_get(0).map_err(pg)).transpose()
    }

    /// Every row from `from`, a page at a time.
    fn read_scan(&self, from: u64, each: &mut dyn FnMut(Row) -> Result<bool, LedgerError>) -> Result<(), LedgerError> {
        // Pages by index: no transaction stays open while `each` works, and nothing is held
        // in memory but one page.
        let mut next = from as i64;
        loop {
            let page = self.query(
                "SELECT r.idx, r.at_ms, r.body, r.prev, r.hash, m.hash FROM stowage_records r
                 LEFT JOIN stowage_merkle m ON m.level = 0 AND m.idx = r.idx
                 WHERE r.idx >= $1 ORDER BY r.idx LIMIT $2",
                &[&next, &PAGE],
            )?;
            let full = page.len() as i64 == PAGE;
            for r in page {
                let index: i64 = r.try_get(0).map_err(pg)?;
                let row = Row {
                    index: index as u64,
                    at_ms: r.try_get::<_, i64>(1).map_err(pg)? as u64,
                    body: r.try_get(2).map_err(pg)?,
                    prev: r.try_get(3).map_err(pg)?,
                    hash: r.try_get(4).map_err(pg)?,
                    leaf: r.try_get(5).map_err(pg)?,
                };
                next = index + 1;
                if !each(row)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn read_open_intents(&self) -> Result<Vec<u64>, LedgerError> {
        let rows = self.query("SELECT idx FROM stowage_open_intents ORDER BY idx", &[])?;
        rows.into_iter().map(|r| r.try_get::<_, i64>(0).map(|i| i as u64).map_err(pg)).collect()
    }
}

impl<Q: Queries> Read for Q {
    fn tip(&self) -> Result<Option<(u64, String)>, LedgerError> {
        self.read_tip()
    }
    fn hash_at(&self, index: u64) -> Result<Option<String>, LedgerError> {
        self.read_hash_at(index)
    }
    fn row(&self, index: u64) -> Result<Option<(u64, String)>, LedgerError> {
        self.read_row(index)
    }
    fn node(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        self.read_node(level, index)
    }
    fn scan(&self, from: u64, each: &mut dyn FnMut(Row) -> Result<bool, LedgerError>) -> Result<(), LedgerError> {
        self.read_scan(from, each)
    }
    fn open_intents(&self) -> Result<Vec<u64>, LedgerError> {
        self.read_open_intents()
    }
}
