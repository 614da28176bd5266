//! What the ledger says one disk should hold under a prefix: for each path, the last write or
//! delete the host recorded as committed, and the write-ahead records no outcome settled yet.
//!
//! What counts as "recorded" is the host's own word, not a policy's:
//! - `write_committed` (an outcome, also one found by reconciling after a crash) records the
//!   object at the path, with the size and sha256 the host measured before the commit;
//! - `delete_committed`, and `cleaned_up` (an overdue temporary file `stowage cleanup` found
//!   already gone), record it gone;
//! - `write_failed` and `delete_failed` change nothing;
//! - a write-ahead record (a policy's record carrying the host's `intent`, e.g. phi-tracking's
//!   `file_created`) that no outcome settled yet is *pending*: its write may be committing
//!   now, or a crash left it for reconciling. An object whose bytes match a pending write's
//!   sha256 is recorded; an object that a pending delete names may be gone.
//!
//! A policy's record alone (no intent) is not a record of the write: a policy writes what it
//! likes, before the commit, and the commit may then fail. Only records the host wrote
//! (`policy` empty) settle anything.
//!
//! Memory: one entry per path of this disk under the prefix that the ledger names, plus the
//! unsettled intents; records of other disks and paths are read and dropped.

use std::collections::HashMap;

use crate::ledger::{Effect, Entry};

/// The last committed effect on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Written: the sha256 and size the host measured (none from records that carry none),
    /// and the outcome's index.
    Written { sha256: Option<String>, size: Option<u64>, index: u64 },
    /// Removed, at this index.
    Deleted { index: u64 },
}

/// A write-ahead record not settled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Its index.
    pub(crate) index: u64,
    /// What it announces.
    pub(crate) op: Effect,
    /// For a write: the sha256 announced.
    pub(crate) sha256: Option<String>,
}

/// What the ledger says of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathState {
    /// The last committed effect, if any.
    pub(crate) committed: Option<Committed>,
    /// Unsettled write-ahead records.
    pub(crate) pending: Vec<Pending>,
    /// The disk's listing showed it (set by the check, not by the ledger).
    pub(crate) seen: bool,
}

impl PathState {
    /// Whether a pending write announced these bytes.
    pub(crate) fn pending_write_of(&self, sha256: &str) -> bool {
        self.pending
            .iter()
            .any(|p| p.op == Effect::Put && p.sha256.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(sha256)))
    }

    /// Whether the ledger says the object must be there: written, and no delete pending.
    pub(crate) fn expected(&self) -> bool {
        matches!(self.committed, Some(Committed::Written { .. }))
            && !self.pending.iter().any(|p| p.op == Effect::Delete)
    }
}

/// The ledger's view of one disk under one prefix, built by reading records in order.
#[derive(Debug)]
pub(crate) struct Recorded {
    disk: String,
    prefix: String,
    paths: HashMap<String, PathState>,
    /// Unsettled intents of this disk: index → path.
    intents: HashMap<u64, String>,
    /// The next index to read.
    pub(crate) next: u64,
}

impl Recorded {
    /// Nothing read yet, for `disk` under `prefix`.
    pub(crate) fn new(disk: &str, prefix: &str) -> Recorded {
        Recorded {
            disk: disk.to_string(),
            prefix: prefix.to_string(),
            paths: HashMap::new(),
            intents: HashMap::new(),
            next: 0,
        }
    }

    fn ours(&self, disk: &str, path: &str) -> bool {
        disk == self.disk && path.starts_with(&self.prefix)
    }

    /// Takes in one record (records must come in index order).
    pub(crate) fn apply(&mut self, entry: &Entry) {
        self.next = self.next.max(entry.index + 1);
        let r = &entry.record;
        if let Some(intent) = &r.intent
            && self.ours(&intent.disk, &intent.path)
        {
            let pending = Pending { index: entry.index, op: intent.op, sha256: intent.sha256.clone() };
            self.paths.entry(intent.path.clone()).or_default().pending.push(pending);
            self.intents.insert(entry.index, intent.path.clone());
        }
        if r.policy.is_some() {
            return;
        }
        for settled in &r.settles {
            if let Some(path) = self.intents.remove(settled)
                && let Some(state) = self.paths.get_mut(&path)
            {
                state.pending.retain(|p| p.index != *settled);
            }
        }
        match r.action.as_str() {
            "fallback_synced" => self.apply_sync(entry),
            "fallback_written" => self.apply_queued(entry),
            _ => {}
        }
        if !self.ours(&r.disk, &r.path) {
            return;
        }
        let committed = match r.action.as_str() {
            "write_committed" if !r.settles.is_empty() => {
                Committed::Written { sha256: r.sha256.clone(), size: r.size, index: entry.index }
            }
            "delete_committed" if !r.settles.is_empty() => Committed::Deleted { index: entry.index },
            "cleaned_up" if r.error.is_none() => Committed::Deleted { index: entry.index },
            _ => return,
        };
        self.paths.entry(r.path.clone()).or_default().committed = Some(committed);
    }

    /// A queued entry synced to its disk (see `fallback`): on the disk, the path now holds the
    /// entry's bytes (or is gone, for a queued delete); on the fallback, the entry is gone.
    fn apply_sync(&mut self, entry: &Entry) {
        let r = &entry.record;
        let meta = |key: &str| r.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let index = entry.index;
        if self.ours(&r.disk, &r.path) {
            let committed = match meta("op") {
                Some("delete") => Committed::Deleted { index },
                _ => Committed::Written { sha256: r.sha256.clone(), size: r.size, index },
            };
            self.paths.entry(r.path.clone()).or_default().committed = Some(committed);
        }
        if let (Some(fallback), Some(entry_path)) = (meta("fallback"), meta("entry"))
            && self.ours(fallback, entry_path)
        {
            self.paths.entry(entry_path.to_string()).or_default().committed = Some(Committed::Deleted { index });
        }
    }

    /// A write or delete queued on a fallback (see `fallback`): the entry now holds these
    /// bytes (a queued delete's: none).
    fn apply_queued(&mut self, entry: &Entry) {
        let r = &entry.record;
        let meta = |key: &str| r.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.to_string());
        if let (Some(fallback), Some(entry_path)) = (meta("fallback"), meta("entry"))
            && self.ours(&fallback, &entry_path)
        {
            let committed = Committed::Written { sha256: r.sha256.clone(), size: r.size, index: entry.index };
            self.paths.entry(entry_path).or_default().committed = Some(committed);
        }
    }

    /// What the ledger says of `path`.
    pub(crate) fn get(&self, path: &str) -> Option<&PathState> {
        self.paths.get(path)
    }

    /// Notes that the disk's listing showed `path`.
    pub(crate) fn saw(&mut self, path: &str) {
        if let Some(state) = self.paths.get_mut(path) {
            state.seen = true;
        }
    }

    /// Paths the ledger says must be there that the listing did not show, in path order, with
    /// what was written.
    pub(crate) fn unseen(&self) -> Vec<(String, Committed)> {
        let mut out: Vec<(String, Committed)> = self
            .paths
            .iter()
            .filter(|(_, s)| !s.seen && s.expected())
            .filter_map(|(p, s)| s.committed.clone().map(|c| (p.clone(), c)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Intent, Record};

    fn entry(index: u64, record: Record) -> Entry {
        Entry { index, at_ms: 0, record }
    }

    fn intent(index: u64, op: Effect, path: &str, sha: Option<&str>) -> Entry {
        let intent = Intent {
            op,
            disk: "local".into(),
            path: path.into(),
            size: None,
            sha256: sha.map(str::to_string),
            owner: "o".into(),
        };
        entry(
            index,
            Record {
                action: "file_created".into(),
                path: path.into(),
                disk: "local".into(),
                policy: Some("phi-tracking".into()),
                intent: Some(intent),
                ..Record::default()
            },
        )
    }

    fn outcome(index: u64, action: &str, path: &str, sha: Option<&str>, settles: u64) -> Entry {
        entry(
            index,
            Record {
                action: action.into(),
                path: path.into(),
                disk: "local".into(),
                sha256: sha.map(str::to_string),
                settles: vec![settles],
                ..Record::default()
            },
        )
    }

    #[test]
    fn the_last_committed_effect_wins_and_failures_change_nothing() {
        let mut r = Recorded::new("local", "");
        for e in [
            intent(0, Effect::Put, "a", Some("aa")),
            outcome(1, "write_committed", "a", Some("aa"), 0),
            intent(2, Effect::Put, "a", Some("bb")),
            outcome(3, "write_failed", "a", Some("bb"), 2),
            intent(4, Effect::Delete, "b", None),
            outcome(5, "delete_committed", "b", None, 4),
        ] {
            r.apply(&e);
        }
        let a = r.get("a").unwrap();
        assert_eq!(a.committed, Some(Committed::Written { sha256: Some("aa".into()), size: None, index: 1 }));
        assert!(a.pending.is_empty(), "both intents are settled");
        assert_eq!(r.get("b").unwrap().committed, Some(Committed::Deleted { index: 5 }));
        assert_eq!(r.unseen().len(), 1, "a is expected, b is not");
        r.saw("a");
        assert!(r.unseen().is_empty());
        assert_eq!(r.next, 6);
    }

    #[test]
    fn an_unsettled_intent_is_pending_and_a_pending_delete_means_it_may_be_gone() {
        let mut r = Recorded::new("local", "");
        r.apply(&intent(0, Effect::Put, "a", Some("aa")));
        assert!(r.get("a").unwrap().pending_write_of("AA"));
        assert!(!r.get("a").unwrap().expected(), "nothing committed yet");
        r.apply(&outcome(1, "write_committed", "a", Some("aa"), 0));
        r.apply(&intent(2, Effect::Delete, "a", None));
        assert!(!r.get("a").unwrap().expected(), "a delete is under way");
        assert!(r.unseen().is_empty());
    }

    #[test]
    fn only_the_hosts_records_settle_and_other_disks_and_prefixes_are_left_out() {
        let mut r = Recorded::new("local", "keep/");
        // A policy writing an outcome-looking record is not the host.
        let forged = Record { policy: Some("evil".into()), ..outcome(0, "write_committed", "keep/x", None, 0).record };
        r.apply(&entry(0, forged));
        assert!(r.get("keep/x").is_none());
        // A policy's record without an intent records nothing.
        r.apply(&entry(
            1,
            Record {
                action: "file_created".into(),
                path: "keep/y".into(),
                disk: "local".into(),
                sha256: Some("yy".into()),
                policy: Some("phi-tracking".into()),
                ..Record::default()
            },
        ));
        assert!(r.get("keep/y").is_none());
        r.apply(&intent(2, Effect::Put, "other/z", Some("zz")));
        r.apply(&outcome(3, "write_committed", "other/z", Some("zz"), 2));
        assert!(r.get("other/z").is_none(), "outside the prefix");
        r.apply(&entry(4, Record { disk: "nas".into(), ..outcome(4, "write_committed", "keep/n", None, 9).record }));
        assert!(r.get("keep/n").is_none(), "another disk");
        r.apply(&entry(
            5,
            Record { action: "cleaned_up".into(), path: "keep/t".into(), disk: "local".into(), ..Record::default() },
        ));
        assert_eq!(r.get("keep/t").unwrap().committed, Some(Committed::Deleted { index: 5 }));
    }
}
