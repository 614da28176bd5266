//! Where the records live: one schema on two databases, behind the traits the rest of the
//! ledger uses ([`Read`], [`Tx`], [`Db`]).
//!
//! - `records`: one row per record: `idx`, `at_ms`, `body` (the record as JSON), `prev` and
//!   `hash` (the chain: `hash = sha256(prev | idx | at_ms | body)`).
//! - `merkle`: the stored nodes of the RFC 6962 tree (complete, aligned subtrees), derived from
//!   `records` in the same transaction; `verify` recomputes and compares them.
//! - `open_intents`: the write-ahead records not settled yet (derived, for a quick reconcile).
//!
//! SQLite ([`sqlite`]) is the embedded default: one file beside the host. PostgreSQL
//! ([`postgres`]) holds one chain for several hosts: a writer's transaction takes one lock in
//! the database first, so appends from every host are serialised there and each chains onto
//! whatever the others committed.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use sha2::{Digest, Sha256};

use crate::LedgerError;
use crate::merkle::{self, Frontier, Hash, Nodes};

/// The chain's start: the `prev` of record 0.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// One stored row, with its stored Merkle leaf (level 0), if any.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) index: u64,
    pub(crate) at_ms: u64,
    pub(crate) body: String,
    pub(crate) prev: String,
    pub(crate) hash: String,
    pub(crate) leaf: Option<Vec<u8>>,
}

/// What every part of the ledger reads.
pub(crate) trait Read {
    /// The last record's (index + 1, hash), if any.
    fn tip(&self) -> Result<Option<(u64, String)>, LedgerError>;
    /// The hash of the record at `index`, if there is one.
    fn hash_at(&self, index: u64) -> Result<Option<String>, LedgerError>;
    /// The record at `index`: (time, body).
    fn row(&self, index: u64) -> Result<Option<(u64, String)>, LedgerError>;
    /// A stored Merkle node, if there is one.
    fn node(&self, level: u32, index: u64) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Calls `each` for every row from index `from`, in order, streaming; stops early when it
    /// returns `false`.
    fn scan(&self, from: u64, each: &mut dyn FnMut(Row) -> Result<bool, LedgerError>) -> Result<(), LedgerError>;
    /// The write-ahead records not settled yet, in order.
    fn open_intents(&self) -> Result<Vec<u64>, LedgerError>;
}

/// A writer's transaction: serialised against every other writer of the database, from its
/// start until it commits or is dropped (which rolls it back).
pub(crate) trait Tx: Read {
    /// Adds a row.
    fn insert(&mut self, row: &Row) -> Result<(), LedgerError>;
    /// Stores (or replaces) a Merkle node.
    fn put_node(&mut self, level: u32, index: u64, hash: &Hash) -> Result<(), LedgerError>;
    /// Marks `index` as an open write-ahead record.
    fn open_intent(&mut self, index: u64) -> Result<(), LedgerError>;
    /// Marks `index` as settled.
    fn settle(&mut self, index: u64) -> Result<(), LedgerError>;
    /// Sends what is buffered (a no-op where nothing is).
    fn flush(&mut self) -> Result<(), LedgerError> {
        Ok(())
    }
    /// Recomputes the derived tables (every Merkle node, the open intents) from the rows;
    /// returns the tree's size.
    fn rebuild(&mut self) -> Result<u64, LedgerError>;
    /// Makes it durable.
    fn commit(self: Box<Self>) -> Result<(), LedgerError>;
}

/// A connection to the ledger's database.
pub(crate) trait Db: Read + Send {
    /// Starts a writer's transaction.
    fn begin(&mut self) -> Result<Box<dyn Tx + '_>, LedgerError>;
    /// Connects again if the connection was lost (a restarted database server); a no-op for
    /// a file.
    fn reconnect(&mut self) -> Result<(), LedgerError>;
}

/// The stored nodes of a database's tree, as the Merkle code reads them.
pub(crate) struct Stored<'a>(pub(crate) &'a dyn Read);

impl Nodes for Stored<'_> {
    type Error = LedgerError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        self.0.node(level, index)?.and_then(|b| b.try_into().ok()).ok_or_else(|| {
            LedgerError::Tampered(format!("the ledger's Merkle node ({level}, {index}) is missing or damaged"))
        })
    }
}

/// Pushes `leaf` onto `frontier`, storing every node it completes; keeps the first failure
/// (the frontier's callback cannot return one).
pub(crate) fn push_stored(tx: &mut dyn Tx, frontier: &mut Frontier, leaf: Hash, failed: &mut Option<LedgerError>) {
    frontier.push(leaf, |level, index, hash| {
        if failed.is_none()
            && let Err(e) = tx.put_node(level, index, hash)
        {
            *failed = Some(e);
        }
    });
}

/// Recomputes the derived tables from the rows, in order: what [`Tx::rebuild`] stores,
/// computed the same way for both databases.
#[derive(Default)]
pub(crate) struct Derive {
    frontier: Frontier,
    open: std::collections::BTreeSet<u64>,
}

impl Derive {
    /// Takes the next row; `node` is called for every node it completes (a missing index
    /// before it is an absent leaf).
    pub(crate) fn push(&mut self, row: &Row, mut node: impl FnMut(u32, u64, &Hash)) {
        while self.frontier.size() < row.index {
            let gap = self.frontier.size();
            self.frontier.push(absent_leaf(gap), &mut node);
        }
        self.frontier.push(row_leaf(row.index, row.at_ms, &row.body), &mut node);
        // A row that is not a record (damaged) announces nothing.
        if let Ok(record) = serde_json::from_str::<crate::Record>(&row.body) {
            if record.intent.is_some() {
                self.open.insert(row.index);
            }
            for settled in &record.settles {
                self.open.remove(settled);
            }
        }
    }

    /// The tree's size and the open intents.
    pub(crate) fn finish(self) -> (u64, Vec<u64>) {
        (self.frontier.size(), self.open.into_iter().collect())
    }
}
