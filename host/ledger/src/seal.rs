//! Sealing a break: the only way on after the ledger failed to verify. The operator says why;
//! the seal is a record of its own, chained onto whatever the database holds now, that names
//! the first bad index and the last good record, so the break stays visible for ever while
//! the chain verifies again from the seal on. The tables derived from the rows (the Merkle
//! tree, the open write-ahead records) are rebuilt from them. Run it with the host stopped.

use crate::checkpoint::{Checkpoint, append_file, load_or_create_key};
use crate::committer::read_head;
use crate::head::{Head, HeadFile};
use crate::merkle::Frontier;
use crate::store::{GENESIS, Row, Stored, chain_hash};
use crate::verify::VerifyMode;
use crate::{Ledger, LedgerError, Record, Seal, now_ms};

/// What a seal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The seal record's index.
    pub index: u64,
    /// The break it accepts.
    pub seal: Seal,
}

impl Ledger {
    /// Seals the ledger's first break with `reason`; `Ok(None)` if the ledger verifies (there
    /// is nothing to seal).
    pub fn seal(&self, reason: &str) -> Result<Option<Sealed>, LedgerError> {
        if reason.trim().is_empty() {
            return Err(LedgerError::Append("a seal needs a reason".into()));
        }
        let broken = match self.verify(VerifyMode::Incremental)? {
            Ok(_) => return Ok(None),
            Err(b) => b,
        };
        let mut conn = self.conn()?;
        let last_good = match broken.index.checked_sub(1) {
            Some(i) => conn.hash_at(i)?.map(|h| (i, h)),
            None => None,
        };
        let seal =
            Seal { broken_at: broken.index, problem: broken.reason.clone(), reason: reason.to_string(), last_good };
        let record = Record {
            action: "ledger_sealed".into(),
            error: Some(broken.to_string()),
            seal: Some(seal.clone()),
            ..Record::default()
        };
        let body =
            serde_json::to_string(&record).map_err(|e| LedgerError::Record { index: 0, error: e.to_string() })?;
        let mut tx = conn.begin()?;
        let (index, prev) = tx.tip()?.unwrap_or((0, GENESIS.to_string()));
        let at_ms = now_ms();
        let hash = chain_hash(&prev, index, at_ms, &body);
        tx.insert(&Row { index, at_ms, body, prev, hash: hash.clone(), leaf: None })?;
        // The stored tree and which write-ahead records are still open are rebuilt from what
        // the rows now are, so proofs work again.
        let size = tx.rebuild()?;
        let root = Frontier::load(&Stored(&*tx), size)?.root();
        tx.commit()?;
        drop(conn);
        // Both head slots name the new tip: a newer-looking slot from before the break must
        // not outlive it.
        let tip = Head { count: index + 1, hash: hash.clone() };
        let mut head = HeadFile::new(&self.head, &read_head(&self.head)?);
        let io = |error| LedgerError::Head { path: self.head.display().to_string(), error };
        head.write(&tip).map_err(io)?;
        head.write(&tip).map_err(io)?;
        head.sync().map_err(io)?;
        if let Some(c) = &self.checkpoints {
            let key = load_or_create_key(&c.policy.key_file, &c.policy.origin).map_err(LedgerError::Checkpoint)?;
            let checkpoint =
                Checkpoint { origin: c.policy.origin.clone(), size, root, chain: hash, time: now_ms() / 1000 };
            let note = checkpoint.sign(&key).map_err(|e| LedgerError::Checkpoint(e.to_string()))?;
            append_file(&c.policy.file, &note)
                .map_err(|e| LedgerError::Checkpoint(format!("{}: {e}", c.policy.file.display())))?;
        }
        tracing::warn!(index, broken_at = seal.broken_at, "ledger sealed by an operator");
        Ok(Some(Sealed { index, seal }))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::verify::tests::{record, with_checkpoints};
    use crate::{Ledger, LedgerOptions, VerifyMode};

    #[test]
    fn a_sealed_break_verifies_as_a_record_of_its_own_and_appends_work_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = Ledger::open(&path, with_checkpoints(dir.path(), 1000)).unwrap();
        for i in 0..6 {
            l.append_blocking(&record("file_created", &format!("f{i}"))).unwrap();
        }
        assert_eq!(l.seal("nothing wrong").unwrap(), None);
        drop(l);
        Connection::open(&path).unwrap().execute("DELETE FROM records WHERE idx = 2", []).unwrap();
        let l = Ledger::open(&path, with_checkpoints(dir.path(), 1000)).unwrap();
        assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap_err().index, 2);
        let sealed = l.seal("row 2 deleted by a faulty backup script, ticket 42").unwrap().unwrap();
        assert_eq!((sealed.index, sealed.seal.broken_at, sealed.seal.last_good.as_ref().map(|g| g.0)), (6, 2, Some(1)));
        drop(l);
        let l = Ledger::open(&path, with_checkpoints(dir.path(), 1000)).unwrap();
        let v = l.verify(VerifyMode::Full).unwrap().unwrap();
        assert_eq!(v.sealed.len(), 1);
        assert_eq!(v.sealed[0].seal.reason, "row 2 deleted by a faulty backup script, ticket 42");
        assert_eq!(l.append_blocking(&record("file_created", "after")).unwrap(), 7);
        assert!(l.verify(VerifyMode::Incremental).unwrap().is_ok());
        assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 8);
        let _ = LedgerOptions::default();
    }
}
