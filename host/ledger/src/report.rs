//! The access report: who created, read, looked up, listed, shared and deleted what, and when,
//! in the shape of a HIPAA accounting of disclosures (date, actor, key, action, object,
//! purpose).
//!
//! It reads the records policies wrote (phi-tracking's actions) and the host's outcomes: a
//! write-ahead record counts once its outcome says it happened (or while nobody knows yet,
//! marked pending); one whose outcome says it failed is left out, as are failures.

use std::collections::HashSet;

use crate::export::Filter;
use crate::{Entry, Ledger, LedgerError};

/// What an access was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessKind {
    /// Stored.
    Created,
    /// Its bytes were read (by a key, or through a signed URL).
    Read,
    /// Its metadata was looked up (stat, HEAD, exists).
    Looked,
    /// A listing that named it (or its prefix).
    Listed,
    /// A URL to it was issued.
    Shared,
    /// Deleted.
    Deleted,
}

impl AccessKind {
    /// The word in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::Created => "created",
            AccessKind::Read => "read",
            AccessKind::Looked => "looked up",
            AccessKind::Listed => "listed",
            AccessKind::Shared => "shared",
            AccessKind::Deleted => "deleted",
        }
    }

    /// The access a tracking action records, if it is one.
    pub fn of_action(action: &str) -> Option<AccessKind> {
        Some(match action {
            "file_created" | "work_copy_created" => AccessKind::Created,
            "file_accessed" => AccessKind::Read,
            "metadata_accessed" => AccessKind::Looked,
            "listed" => AccessKind::Listed,
            "url_issued" => AccessKind::Shared,
            "file_deleted" | "work_copy_deleted" | "cleaned_up" => AccessKind::Deleted,
            _ => return None,
        })
    }
}

/// One access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// The record it comes from.
    pub entry: Entry,
    /// What it was.
    pub kind: AccessKind,
    /// A write-ahead record whose outcome is not known yet (a crash the next start settles).
    pub pending: bool,
}

/// Every access `filter` passes, in ledger order.
pub fn access_report(ledger: &Ledger, filter: &Filter) -> Result<Vec<AccessEvent>, LedgerError> {
    let mut failed: HashSet<u64> = HashSet::new();
    let mut settled: HashSet<u64> = HashSet::new();
    ledger.scan(0, |e| {
        if !e.record.settles.is_empty() {
            settled.extend(e.record.settles.iter().copied());
            if e.record.action.ends_with("_failed") {
                failed.extend(e.record.settles.iter().copied());
            }
        }
        Ok(true)
    })?;
    let mut out = Vec::new();
    ledger.scan(0, |e| {
        if e.record.error.is_none()
            && !failed.contains(&e.index)
            && filter.matches(&e)
            && let Some(kind) = AccessKind::of_action(&e.record.action)
        {
            let pending = e.record.intent.is_some() && !settled.contains(&e.index);
            out.push(AccessEvent { entry: e, kind, pending });
        }
        Ok(true)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::record;
    use crate::{Effect, Intent, LedgerOptions, Record};

    #[test]
    fn a_write_counts_once_it_happened_and_failures_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite"), LedgerOptions::default()).unwrap();
        let intent = |path: &str| Intent {
            op: Effect::Put,
            disk: "local".into(),
            path: path.into(),
            size: Some(3),
            sha256: None,
            owner: "o".into(),
        };
        let ok = l.append_blocking(&Record { intent: Some(intent("a")), ..record("file_created", "a") }).unwrap();
        let bad = l.append_blocking(&Record { intent: Some(intent("b")), ..record("file_created", "b") }).unwrap();
        let open = l.append_blocking(&Record { intent: Some(intent("c")), ..record("file_created", "c") }).unwrap();
        l.append_blocking(&Record { settles: vec![ok], ..record("write_committed", "a") }).unwrap();
        l.append_blocking(&Record { settles: vec![bad], ..record("write_failed", "b") }).unwrap();
        l.append_blocking(&Record { error: Some("not found".into()), ..record("access_failed", "a") }).unwrap();
        l.append_blocking(&Record { key: Some("signed-url:1f".into()), ..record("file_accessed", "a") }).unwrap();
        let events = access_report(&l, &Filter::default()).unwrap();
        let seen: Vec<(&str, AccessKind, bool)> =
            events.iter().map(|e| (e.entry.record.path.as_str(), e.kind, e.pending)).collect();
        assert_eq!(
            seen,
            vec![("a", AccessKind::Created, false), ("c", AccessKind::Created, true), ("a", AccessKind::Read, false)]
        );
        assert_eq!(events[2].entry.record.key.as_deref(), Some("signed-url:1f"));
        assert_eq!(l.open_intents().unwrap().iter().map(|e| e.index).collect::<Vec<_>>(), vec![open]);
    }
}
