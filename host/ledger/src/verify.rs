//! Verification: the hash chain, the stored Merkle tree, the head, and signed checkpoints.
//!
//! - A full walk re-hashes every record: the chain, each record's Merkle leaf against the
//!   stored one, the stored tree's root against the recomputed one, and the head.
//! - An incremental walk starts from the newest checkpoint the host signed: the stored tree's
//!   root at that size must be the checkpoint's root and the record before it must carry the
//!   checkpoint's chain hash; then only newer records are walked. It is O(new records), and
//!   trusts what an earlier verification already checked.
//! - Against checkpoints (saved elsewhere): a full walk that also compares the recomputed
//!   root at each checkpoint's size, which catches a consistent rewrite (rows removed, chain
//!   and head recomputed) below it, naming the range it lies in.
//!
//! A break an operator sealed (`seal`) is reported, not failed: the records between the break
//! and the seal are in doubt, and the chain resumes at the seal.

use crate::checkpoint::SignedCheckpoint;
use crate::committer::{HeadRule, reaches, read_head};
use crate::head::{Head, HeadState};
use crate::merkle::{self, Frontier, Hash};
use crate::store::{GENESIS, Read, Row, Stored, absent_leaf, chain_hash, row_leaf};
use crate::{Ledger, LedgerError, Record, Seal};

/// How much to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Every record.
    Full,
    /// Records after the newest checkpoint the host signed (all of them if there is none).
    Incremental,
}

/// The first place the ledger breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger broken at index {index}: {reason}")]
pub struct Broken {
    /// The first bad index (for a rewrite caught by a checkpoint: the first index it may be).
    pub index: u64,
    /// What is wrong there.
    pub reason: String,
}

/// A break an operator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBreak {
    /// The seal record's index.
    pub seal_index: u64,
    /// What the seal says.
    pub seal: Seal,
}

/// A ledger that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the ledger.
    pub count: u64,
    /// The first index the walk checked (0 for a full walk).
    pub from: u64,
    /// Checkpoints it was checked against (sizes).
    pub checkpoints: Vec<u64>,
    /// Breaks sealed by an operator.
    pub sealed: Vec<SealedBreak>,
}

fn broken(index: u64, reason: impl Into<String>) -> Result<Result<Verified, Broken>, LedgerError> {
    Ok(Err(Broken { index, reason: reason.into() }))
}

/// A root to compare against when the walk's tree reaches `size`.
struct Mark {
    size: u64,
    root: Hash,
}

/// Where a walk starts.
struct From {
    index: u64,
    prev: String,
    frontier: Frontier,
}

/// Walks rows from `from.index`, checking the chain, the stored leaves and `marks`; then the
/// stored root and `head`.
fn walk(
    conn: &dyn Read,
    from: From,
    marks: &[Mark],
    head: &HeadState,
    rule: HeadRule,
) -> Result<Result<Verified, Broken>, LedgerError> {
    let mut frontier = from.frontier;
    let mut expected = from.index;
    let mut prev = from.prev;
    let mut last_row_hash = prev.clone();
    let mut sealed = Vec::new();
    let mut doubt: Option<Broken> = None;
    let mut marks = marks.iter().peekable();
    let mut last_mark = 0u64;
    let mut checked = Vec::new();
    let mut broken_by_mark: Option<Broken> = None;
    // Compares the recomputed root with every mark the tree has reached.
    macro_rules! check_marks {
        () => {
            while let Some(m) = marks.peek() {
                if m.size != frontier.size() {
                    break;
                }
                if frontier.root() != m.root {
                    let (a, b) = (last_mark, m.size);
                    let place = if b - a == 1 { format!("record {a}") } else { format!("a record in {a}..{}", b - 1) };
                    broken_by_mark = Some(Broken { index: a, reason: format!(
                        "the ledger is not an extension of the checkpoint of size {b}: {place} was changed, removed or inserted since it was signed"
                    )});
                    return Ok(false);
                }
                checked.push(m.size);
                last_mark = m.size;
                marks.next();
            }
        };
    }
    // Interior nodes the walk completes must be the stored ones (proofs are built from them).
    let mut bad_node: Option<u64> = None;
    let mut node_failed: Option<LedgerError> = None;
    let mut check_node = |level: u32, idx: u64, hash: &Hash| {
        if level > 0 && bad_node.is_none() && node_failed.is_none() {
            match conn.node(level, idx) {
                Ok(stored) if stored.as_deref() == Some(&hash[..]) => {}
                Ok(_) => bad_node = Some(idx << level),
                Err(e) => node_failed = Some(e),
            }
        }
    };
    conn.scan(from.index, &mut |row: Row| {
        let Row { index, at_ms, body, prev: row_prev, hash, leaf: stored } = row;
        while frontier.size() < index {
            let gap = frontier.size();
            frontier.push(absent_leaf(gap), &mut check_node);
            check_marks!();
        }
        let leaf = row_leaf(index, at_ms, &body);
        frontier.push(leaf, &mut check_node);
        check_marks!();
        let chained = chain_hash(&row_prev, index, at_ms, &body) == hash;
        let seal = serde_json::from_str::<Record>(&body).ok().and_then(|r| r.seal);
        if let Some(seal) = seal
            && chained
            && row_prev == last_row_hash
        {
            // A seal record chains onto whatever row precedes it and starts a new segment.
            if doubt.as_ref().is_some_and(|d| d.index == seal.broken_at) {
                doubt = None;
            }
            if doubt.is_none() {
                sealed.push(SealedBreak { seal_index: index, seal });
                prev = hash.clone();
                expected = index + 1;
                last_row_hash = hash;
                return Ok(true);
            }
        }
        last_row_hash = hash.clone();
        if doubt.is_some() {
            return Ok(true);
        }
        let problem = if index != expected {
            Some((expected, "record missing (deleted, or rows renumbered)"))
        } else if row_prev != prev {
            Some((index, "does not follow the previous record (reordered or replaced)"))
        } else if !chained {
            Some((index, "contents changed after it was written"))
        } else if stored.as_deref() != Some(&leaf[..]) {
            Some((index, "its Merkle leaf in the database does not match it (the tree was changed)"))
        } else {
            None
        };
        if let Some((at, reason)) = problem {
            doubt = Some(Broken { index: at, reason: reason.into() });
            return Ok(true);
        }
        prev = hash;
        expected = index + 1;
        Ok(true)
    })?;
    if let Some(e) = node_failed {
        return Err(e);
    }
    if let Some(b) = broken_by_mark {
        return Ok(Err(b));
    }
    if let Some(b) = doubt {
        return Ok(Err(b));
    }
    if let Some(at) = bad_node {
        return broken(
            at,
            "a Merkle node stored in the database over the records from here does not match them (the tree was changed)",
        );
    }
    let count = frontier.size();
    if let Some(m) = marks.next() {
        // The records below `count` cannot be compared with the checkpoint: name the first
        // index it may concern (the end of the last checkpoint that still holds).
        return broken(
            last_mark,
            format!(
                "the ledger holds {count} records but the checkpoint of size {} covers {}: records at index {last_mark} or later were removed",
                m.size, m.size
            ),
        );
    }
    if count > 0 && merkle::root(&Stored(conn), count)? != frontier.root() {
        return broken(
            count - 1,
            "the Merkle tree stored in the database does not match the records (its nodes were changed)",
        );
    }
    let tip = (count > 0).then(|| Head { count, hash: prev.clone() });
    match head {
        HeadState::At(h) | HeadState::Legacy(h) if h.count > count => {
            return broken(count, format!("records from here on are missing (the head says {} records)", h.count));
        }
        _ => {}
    }
    if let Some(why) = reaches(conn, tip.as_ref(), head, rule)? {
        let at = head.head().and_then(|h| h.count.checked_sub(1)).unwrap_or(0);
        return broken(at, why);
    }
    Ok(Ok(Verified { count, from: from.index, checkpoints: checked, sealed }))
}

/// Walks every row of `conn` (a copy being made, say) as a full verification does: the
/// chain, every stored leaf and node and the root; no head or checkpoint is compared.
pub(crate) fn walk_rows(conn: &dyn Read) -> Result<Result<Verified, Broken>, LedgerError> {
    let from = From { index: 0, prev: GENESIS.to_string(), frontier: Frontier::default() };
    walk(conn, from, &[], &HeadState::Missing, HeadRule { legacy_ok: true, shared: true })
}

impl Ledger {
    /// Verifies the ledger; `Ok(Err(_))` names the first bad index.
    pub fn verify(&self, mode: VerifyMode) -> Result<Result<Verified, Broken>, LedgerError> {
        // The head first: it never leads the database, so records appended while the chain
        // is walked cannot look like missing ones.
        let head = read_head(&self.head)?;
        let local = self.checkpoints()?;
        let rule = HeadRule { legacy_ok: local.is_empty(), shared: self.shared };
        if mode == VerifyMode::Incremental
            && let Some(latest) = local.iter().max_by_key(|c| c.checkpoint.size)
        {
            let conn = self.conn()?;
            let c = &latest.checkpoint;
            if c.size > 0 {
                let chain_ok = conn.hash_at(c.size - 1)?.as_deref() == Some(c.chain.as_str());
                let root_ok = merkle::root(&Stored(&**conn), c.size).ok() == Some(c.root);
                if chain_ok && root_ok {
                    let frontier = Frontier::load(&Stored(&**conn), c.size)?;
                    let from = From { index: c.size, prev: c.chain.clone(), frontier };
                    let mut result = walk(&**conn, from, &[], &head, rule)?;
                    if let Ok(v) = &mut result {
                        v.checkpoints.push(c.size);
                    }
                    return Ok(result);
                }
            }
            // What is below the checkpoint changed: a full walk against every local checkpoint
            // says where.
        }
        let marks: Vec<&SignedCheckpoint> =
            if mode == VerifyMode::Incremental { local.iter().collect() } else { Vec::new() };
        self.walk_all(&marks, &head, rule)
    }

    /// Verifies the whole ledger and that it extends each of `checkpoints` (saved outside the
    /// host: their signatures were checked when they were read).
    pub fn verify_against(&self, checkpoints: &[SignedCheckpoint]) -> Result<Result<Verified, Broken>, LedgerError> {
        let head = read_head(&self.head)?;
        let legacy_ok = self.checkpoints()?.is_empty() && checkpoints.is_empty();
        let rule = HeadRule { legacy_ok, shared: self.shared };
        let marks: Vec<&SignedCheckpoint> = checkpoints.iter().collect();
        self.walk_all(&marks, &head, rule)
    }

    fn walk_all(
        &self,
        checkpoints: &[&SignedCheckpoint],
        head: &HeadState,
        rule: HeadRule,
    ) -> Result<Result<Verified, Broken>, LedgerError> {
        let mut marks: Vec<Mark> =
            checkpoints.iter().map(|c| Mark { size: c.checkpoint.size, root: c.checkpoint.root }).collect();
        marks.sort_by_key(|m| m.size);
        marks.dedup_by(|a, b| a.size == b.size && a.root == b.root);
        if let Some(w) = marks.windows(2).find(|w| w[0].size == w[1].size) {
            return broken(
                w[0].size,
                format!("two checkpoints of size {} name different roots: the log forked", w[0].size),
            );
        }
        let conn = self.conn()?;
        let from = From { index: 0, prev: GENESIS.to_string(), frontier: Frontier::default() };
        walk(&**conn, from, &marks, head, rule)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::{CheckpointPolicy, Ledger, LedgerOptions, Record, VerifyMode};
    use rusqlite::Connection;

    pub(crate) fn record(action: &str, path: &str) -> Record {
        Record {
            action: action.into(),
            path: path.into(),
            disk: "local".into(),
            size: Some(3),
            request_id: "r".into(),
            ..Record::default()
        }
    }

    pub(crate) fn with_checkpoints(dir: &std::path::Path, every: u64) -> LedgerOptions {
        LedgerOptions {
            checkpoints: Some(CheckpointPolicy {
                origin: "test-ledger".into(),
                every_records: every,
                every_secs: 3600,
                file: dir.join("l.checkpoints"),
                key_file: dir.join("l.key"),
            }),
            ..LedgerOptions::default()
        }
    }

    #[test]
    fn an_edit_a_deletion_and_a_changed_merkle_node_are_each_named_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        {
            let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
            for i in 0..8 {
                l.append_blocking(&record("file_created", &format!("f{i}"))).unwrap();
            }
            assert_eq!(l.verify(VerifyMode::Full).unwrap().unwrap().count, 8);
        }
        let db = Connection::open(&path).unwrap();
        db.execute("UPDATE merkle SET hash = zeroblob(32) WHERE level = 1 AND idx = 1", []).unwrap();
        let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
        let b = l.verify(VerifyMode::Full).unwrap().unwrap_err();
        assert_eq!(b.index, 2, "{b}");
        assert!(b.reason.contains("Merkle node stored in the database"), "{b}");
        crate::store::sqlite::rebuild(&db).unwrap();
        db.execute("UPDATE records SET body = replace(body, 'f5', 'f9') WHERE idx = 5", []).unwrap();
        let b = l.verify(VerifyMode::Full).unwrap().unwrap_err();
        assert_eq!((b.index, b.reason.as_str()), (5, "contents changed after it was written"));
        db.execute("DELETE FROM records WHERE idx = 3", []).unwrap();
        let b = l.verify(VerifyMode::Full).unwrap().unwrap_err();
        assert_eq!((b.index, b.reason.as_str()), (3, "record missing (deleted, or rows renumbered)"));
    }

    #[test]
    fn verify_is_incremental_from_the_last_checkpoint_and_falls_back_to_a_full_walk_that_names_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = Ledger::open(&path, with_checkpoints(dir.path(), 4)).unwrap();
        for i in 0..10 {
            l.append_blocking(&record("file_created", &format!("f{i}"))).unwrap();
        }
        let c = l.checkpoint_now().unwrap();
        assert_eq!(c.checkpoint.size, 10);
        l.append_blocking(&record("file_created", "f10")).unwrap();
        let v = l.verify(VerifyMode::Incremental).unwrap().unwrap();
        assert_eq!((v.count, v.from), (11, 10));
        // A consistent rewrite of record 2 (chain, tree and head recomputed) passes a plain
        // full walk, but not the checkpoints.
        drop(l);
        let db = Connection::open(&path).unwrap();
        db.execute("UPDATE records SET body = replace(body, 'f2', 'zz') WHERE idx = 2", []).unwrap();
        crate::store::sqlite::rechain(&db).unwrap();
        crate::store::sqlite::rebuild(&db).unwrap();
        let tip = crate::store::Read::tip(&db).unwrap().unwrap();
        let mut head = crate::head::HeadFile::new(&dir.path().join("l.sqlite.head"), &crate::head::HeadState::Missing);
        head.write(&crate::head::Head { count: tip.0, hash: tip.1 }).unwrap();
        let l = Ledger::open(&path, with_checkpoints(dir.path(), 4)).unwrap();
        assert!(l.verify(VerifyMode::Full).unwrap().is_ok(), "the rewrite is consistent");
        let b = l.verify(VerifyMode::Incremental).unwrap().unwrap_err();
        assert_eq!(b.index, 0, "{b}");
        assert!(b.reason.contains("checkpoint of size 4") && b.reason.contains("0..3"), "{b}");
    }
}
