//! `stowage ledger migrate --to URL`: copies a ledger, row by row as stored, into an empty
//! PostgreSQL database, rebuilds the derived tables there, and proves the copy: it verifies
//! as a whole (chain, leaves, nodes), with the same number of records, the same last chain
//! hash and the same Merkle root. Run it with the hosts stopped (a ledger that grows during
//! the copy is refused). The head file,
//! checkpoints and host key beside the ledger's path stay valid for the copy.

use crate::merkle::{self, Hash};
use crate::store::postgres::{Postgres, Target};
use crate::store::{Db, Stored};
use crate::verify::VerifyMode;
use crate::{Ledger, LedgerError, PostgresLedger};

/// Rows sent to the database at a time.
const BATCH: usize = 1000;

/// What a migration copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Records copied.
    pub records: u64,
    /// The Merkle root of both ledgers.
    pub root: Hash,
    /// The last record's chain hash in both.
    pub chain: String,
}

impl Ledger {
    /// Copies this ledger into the empty PostgreSQL database `to` and proves the copy. The
    /// ledger must verify first (seal a break before moving it).
    pub fn migrate_to(&self, to: &PostgresLedger) -> Result<Migrated, LedgerError> {
        if let Err(b) = self.verify(VerifyMode::Full)? {
            return Err(LedgerError::Append(format!(
                "the ledger does not verify ({b}): seal or repair it before migrating"
            )));
        }
        let source = self.conn()?;
        let Some((records, chain)) = source.tip()? else {
            return Err(LedgerError::Append("the ledger is empty: there is nothing to migrate".into()));
        };
        let root = merkle::root(&Stored(&**source), records)?;
        let target = Target::new(&to.url, to.ca_file.as_deref(), self.lock_timeout)?;
        let mut db = Postgres::open(&target)?;
        let mut tx = db.begin()?;
        if let Some((count, _)) = tx.tip()? {
            return Err(LedgerError::Append(format!(
                "the target database already holds a ledger of {count} records: migrate into an empty one"
            )));
        }
        let mut pending = 0;
        let mut failed = None;
        source.scan(0, &mut |row| {
            if let Err(e) = tx.insert(&row) {
                failed = Some(e);
                return Ok(false);
            }
            pending += 1;
            if pending == BATCH {
                pending = 0;
                tx.flush()?;
            }
            Ok(true)
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let size = tx.rebuild()?;
        // The copy is walked as `verify --full` walks a ledger: every row's chain hash is
        // recomputed from what was written there, and every stored node checked.
        if let Err(b) = crate::verify::walk_rows(&*tx)? {
            return Err(LedgerError::Append(format!("the copy does not verify ({b}); nothing was kept")));
        }
        let copied_root = merkle::root(&Stored(&*tx), size)?;
        let copied_chain = tx.tip()?.map(|(_, hash)| hash);
        // A host appending while the copy ran would leave records behind.
        if source.tip()?.map(|(count, _)| count) != Some(records) {
            return Err(LedgerError::Append(
                "the ledger grew while it was copied: stop the hosts that use it and migrate again".into(),
            ));
        }
        if size != records || copied_root != root || copied_chain.as_deref() != Some(chain.as_str()) {
            // Dropped, the transaction rolls back: nothing is left in the database.
            return Err(LedgerError::Append(format!(
                "the copy does not match: {size} records with root {} and last hash {}, against {records}, {} and {chain}",
                hex::encode(copied_root),
                copied_chain.unwrap_or_default(),
                hex::encode(root)
            )));
        }
        tx.commit()?;
        Ok(Migrated { records, root, chain })
    }
}
