//! What a fixity check found, and the one ledger record that summarises it.

use std::time::Duration;

use crate::ledger::Record;
use crate::request::Request;

/// Failures named in a `fixity_checked` record; past this many only the counts say more
/// (a disk whose every object is unrecorded must not make one record of a million paths).
pub const MAX_NAMED: usize = 1000;

/// How to run a fixity check.
#[derive(Debug, Clone, Default)]
pub struct FsckOptions {
    /// Read at most this many bytes per second (none: as fast as the disk gives them).
    pub max_bytes_per_sec: Option<u64>,
    /// Restore every bad copy of a mirrored disk from a good one (`--repair`).
    pub repair: bool,
}

/// What is wrong with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// Its bytes' sha256 differs from the one recorded (by the driver or in the ledger).
    Corrupted,
    /// The ledger says it was committed, and not deleted since, but the disk does not have it.
    Missing,
    /// The disk has it, but the ledger has no record of its write.
    Unrecorded,
    /// It could not be read to the end, so nothing can be said of its bytes.
    Unreadable,
    /// One mirror's copy of it (of a mirrored disk) is damaged, missing or behind; the
    /// object itself reads whole from another.
    BadCopy,
}

impl ProblemKind {
    /// Every kind, in report order.
    pub const ALL: [ProblemKind; 5] = [
        ProblemKind::Corrupted,
        ProblemKind::Missing,
        ProblemKind::Unrecorded,
        ProblemKind::Unreadable,
        ProblemKind::BadCopy,
    ];

    /// The kind's stable name (JSON, metrics, the ledger).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Corrupted => "corrupted",
            ProblemKind::Missing => "missing",
            ProblemKind::Unrecorded => "unrecorded",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::BadCopy => "bad_copy",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The object's path on the disk.
    pub path: String,
    /// The sha256 of the bytes read (corrupted, unrecorded).
    pub actual_sha256: Option<String>,
    /// The sha256 the driver keeps for the object, when it disagrees with the bytes
    /// (corrupted) or when the ledger has none to compare (unrecorded).
    pub driver_sha256: Option<String>,
    /// The sha256 the ledger recorded: when it disagrees with the bytes (corrupted), or what
    /// was committed (missing).
    pub ledger_sha256: Option<String>,
    /// The index of that ledger record.
    pub ledger_index: Option<u64>,
    /// Why it could not be read (unreadable), or what is wrong with the copy (bad copy).
    pub error: Option<String>,
    /// The mirror whose copy is bad (bad copy).
    pub mirror: Option<String>,
    /// Whether `--repair` restored it.
    pub repaired: bool,
}

impl Problem {
    /// A problem of `kind` at `path`, with nothing else known yet.
    pub(crate) fn new(kind: ProblemKind, path: &str) -> Problem {
        Problem {
            kind,
            path: path.to_string(),
            actual_sha256: None,
            driver_sha256: None,
            ledger_sha256: None,
            ledger_index: None,
            error: None,
            mirror: None,
            repaired: false,
        }
    }
}

/// What `Storage::fsck` found on one disk under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixityReport {
    /// The disk checked.
    pub disk: String,
    /// The prefix checked (empty: the whole disk).
    pub prefix: String,
    /// Objects whose bytes were read and hashed.
    pub objects: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Ledger records read.
    pub records_read: u64,
    /// Objects written or deleted while the check looked at them: not judged (the next run
    /// will).
    pub changed: u64,
    /// Every problem found, in the order found.
    pub problems: Vec<Problem>,
    /// How long the check took.
    pub elapsed: Duration,
    /// The index of the `fixity_checked` record that summarises it.
    pub record_index: Option<u64>,
}

impl FixityReport {
    /// Problems of `kind`.
    pub fn count(&self, kind: ProblemKind) -> u64 {
        self.problems.iter().filter(|p| p.kind == kind).count() as u64
    }

    /// Whether nothing was found wrong (or everything found was repaired).
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }

    /// Problems `--repair` restored.
    pub fn repaired(&self) -> u64 {
        self.problems.iter().filter(|p| p.repaired).count() as u64
    }

    /// The ledger record that summarises the run: counts in `metadata` (`objects`, `bytes`,
    /// `changed`, one per kind: `corrupted` ...), then each failure as (`KIND_path`, path), at
    /// most [`MAX_NAMED`] of them (`not_named`: how many more); `size` is the bytes checked and
    /// `error` the counts in words when anything was found.
    pub(crate) fn record(&self, req: &Request) -> Record {
        let mut metadata = vec![
            ("objects".to_string(), self.objects.to_string()),
            ("bytes".to_string(), self.bytes.to_string()),
            ("changed".to_string(), self.changed.to_string()),
        ];
        metadata.extend(ProblemKind::ALL.iter().map(|k| (k.as_str().to_string(), self.count(*k).to_string())));
        metadata.push(("repaired".to_string(), self.repaired().to_string()));
        metadata.push(("elapsed_ms".to_string(), self.elapsed.as_millis().to_string()));
        metadata.extend(
            self.problems.iter().take(MAX_NAMED).map(|p| (format!("{}_path", p.kind.as_str()), p.path.clone())),
        );
        if self.problems.len() > MAX_NAMED {
            metadata.push(("not_named".to_string(), (self.problems.len() - MAX_NAMED).to_string()));
        }
        let error = (!self.is_clean()).then(|| {
            let counts: Vec<String> = ProblemKind::ALL
                .iter()
                .filter(|k| self.count(**k) > 0)
                .map(|k| format!("{} {}", self.count(*k), k.as_str()))
                .collect();
            counts.join(", ")
        });
        Record {
            action: "fixity_checked".into(),
            path: self.prefix.clone(),
            disk: self.disk.clone(),
            actor: Some(req.actor.clone().unwrap_or_else(|| "stowage-fsck".into())),
            key: req.authenticated_as.clone(),
            request_id: req.request_id.clone(),
            size: Some(self.bytes),
            metadata,
            error,
            ..Record::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_counts_every_kind_and_names_failures_up_to_the_cap() {
        let mut report = FixityReport {
            disk: "local".into(),
            prefix: "p/".into(),
            objects: 3,
            bytes: 12,
            records_read: 7,
            changed: 0,
            problems: Vec::new(),
            elapsed: Duration::from_millis(5),
            record_index: None,
        };
        let clean = report.record(&Request::new());
        assert_eq!(
            (clean.action.as_str(), clean.disk.as_str(), clean.path.as_str()),
            ("fixity_checked", "local", "p/")
        );
        assert_eq!(clean.error, None);
        assert!(clean.metadata.contains(&("corrupted".into(), "0".into())));
        report.problems =
            (0..MAX_NAMED + 2).map(|i| Problem::new(ProblemKind::Unrecorded, &format!("p/{i}"))).collect();
        report.problems.push(Problem::new(ProblemKind::Corrupted, "p/bad"));
        let r = report.record(&Request::new());
        assert_eq!(r.error.as_deref(), Some("1 corrupted, 1002 unrecorded"));
        assert!(r.metadata.contains(&("unrecorded".into(), (MAX_NAMED + 2).to_string())));
        assert!(r.metadata.contains(&("not_named".into(), "3".into())), "the cap leaves 3 unnamed");
        assert!(r.metadata.contains(&("unrecorded_path".into(), "p/0".into())));
        assert!(!r.metadata.contains(&("corrupted_path".into(), "p/bad".into())), "past the cap");
        assert_eq!(r.size, Some(12));
    }
}
