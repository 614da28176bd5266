//! Fixity: are the stored bytes still the bytes that were written? `Storage::fsck` streams
//! every object of one disk under a prefix, recomputes its sha256 on the host (never holding
//! an object whole), and compares it with the digests recorded for it: the driver's (its
//! `stat`/`list` info) and the ledger's (the last write the host recorded as committed; what
//! counts as recorded is in `recorded.rs`). It reports objects that are corrupted, missing
//! (committed and not deleted since, but gone) or unrecorded (there, with no record of their
//! write), and appends one `fixity_checked` record summarising the run.
//!
//! In order:
//! 1. the ledger is read once, in batches, into the paths this disk should hold (memory
//!    grows with that disk's paths under the prefix, not with the ledger);
//! 2. the disk is listed page by page and each object read and hashed (at most
//!    `max_bytes_per_sec`);
//! 3. the ledger's records appended meanwhile are read too;
//! 4. every object that looked wrong is judged again by them. Every version a disk shows was
//!    announced by a write-ahead record before its commit, so records read after a read
//!    began know the version it read: what is still wrong is reported if a fresh `stat`
//!    shows the version that was read. An object rewritten meanwhile is read again and
//!    judged by the records read after that; one deleted, or rewritten yet again, is counted
//!    `changed`, not reported (the next run judges it). A path the ledger expects that the
//!    listing did not show is looked up, and called missing only if it is not there and the
//!    records read after that still expect it.
//!
//! Like reconciling and the orphan sweep, this is the host's own work: it goes through no
//! policy, and its one record says who ran it. It fails closed: a ledger that cannot be read
//! (or cannot take the summary) fails the whole check, which never answers "clean" without
//! having read the records.

mod recorded;
mod report;

use std::time::{Duration, Instant};

use stowage_path::{ObjectPath, Prefix};

use crate::driver::{Digester, Disk, MAX_CHUNK};
use crate::error::StorageError;
use crate::ledger::Ledger;
use crate::request::{Address, Request};
use crate::storage::Storage;
use crate::types::{ObjectInfo, RequestContext};
use recorded::{Committed, Recorded};
pub use report::{FixityReport, FsckOptions, MAX_NAMED, Problem, ProblemKind};

/// Ledger records read per batch (the ledger's reader is free between batches).
const LEDGER_BATCH: u64 = 10_000;

/// Objects asked for per listing page.
const PAGE: u32 = 1000;

/// Objects the host writes on every disk without a record (readiness probes: `Storage::probe`).
const PROBE_PREFIX: &str = "stowage-probe/";

/// Objects the host writes on the checkpoint disk without a record (`Storage::copy_checkpoint`).
const CHECKPOINT_PREFIX: &str = "ledger-checkpoints/";

fn audit_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::AuditUnavailable(format!("the ledger cannot be read for a fixity check: {e}"))
}

/// An object read to its end.
struct Read {
    /// The info the read started from.
    info: ObjectInfo,
    /// The sha256 of its bytes.
    sha256: String,
    /// Bytes read.
    size: u64,
}

/// Keeps a check under its byte rate.
struct Throttle {
    started: Instant,
    bytes: u64,
    per_sec: Option<u64>,
}

impl Throttle {
    async fn take(&mut self, n: u64) {
        self.bytes += n;
        let Some(rate) = self.per_sec.filter(|r| *r > 0) else { return };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// One run's state.
struct Check<'a> {
    disk: &'a Disk,
    ledger: &'a Ledger,
    ctx: RequestContext,
    recorded: Recorded,
    throttle: Throttle,
    report: FixityReport,
    /// Whether paths under `ledger-checkpoints/` are the host's own on this disk.
    checkpoint_disk: bool,
    /// Paths of this disk whose newest version waits on its fallback (checked there, where
    /// their entries are; see `fallback`).
    queued: std::collections::HashSet<String>,
}

impl Storage {
    /// Checks every object of the disk `addr` names (a disk or a class) under its path (a
    /// prefix; empty: the whole disk) against the recorded digests, and records the run
    /// (`fixity_checked`, with `req`'s actor and key). Problems are in the report, not an
    /// error: the error is for a check that could not run (an unknown name, a listing the
    /// disk refused, a ledger that cannot be read or recorded: `AuditUnavailable`).
    pub async fn fsck(
        &self,
        addr: &Address,
        req: &Request,
        options: &FsckOptions,
    ) -> Result<FixityReport, StorageError> {
        let started = Instant::now();
        let target = self.resolve_prefix(addr)?;
        if options.repair && crate::mirror::of(&target.disk).is_none() {
            return Err(StorageError::Unsupported(format!(
                "fsck --repair restores bad copies from a mirror, and disk `{}` is not mirrored",
                target.disk.name()
            )));
        }
        self.ledger().health().map_err(audit_error)?;
        let mut check = Check {
            disk: &target.disk,
            ledger: self.ledger(),
            ctx: self.context(&target.disk, target.class, req),
            recorded: Recorded::new(target.disk.name(), target.path.as_str()),
            throttle: Throttle { started, bytes: 0, per_sec: options.max_bytes_per_sec },
            report: FixityReport {
                disk: target.disk.name().to_string(),
                prefix: target.path.to_string(),
                objects: 0,
                bytes: 0,
                records_read: 0,
                changed: 0,
                problems: Vec::new(),
                elapsed: Duration::ZERO,
                record_index: None,
            },
            checkpoint_disk: self.checkpoint_disk().is_some_and(|d| d.name() == target.disk.name()),
            queued: std::collections::HashSet::new(),
        };
        if let Some(fallback) = self.fallback_of(target.disk.name()) {
            fallback.refresh(&check.ctx).await?;
            check.queued = fallback.queued_under(&check.ctx, &target.path).await?.into_iter().map(|(p, _)| p).collect();
        }
        check.read_ledger().await?;
        let suspects = check.walk(&target.path).await?;
        check.read_ledger().await?;
        for (path, first) in suspects {
            check.judge_again(&path, first).await?;
        }
        let missing = check.look_for_missing().await?;
        // A delete announced while they were looked up is not a loss.
        check.read_ledger().await?;
        let still = |p: &Problem| check.recorded.get(&p.path).is_some_and(|s| s.expected());
        let (missing, deleted): (Vec<Problem>, Vec<Problem>) = missing.into_iter().partition(still);
        check.report.changed += deleted.len() as u64;
        check.report.problems.extend(missing);
        let mut report = check.report;
        if let (true, Some(mirror)) = (options.repair, crate::mirror::of(&target.disk)) {
            // Every bad copy found was marked; the repairer restores them (and any other
            // marked copy), each recorded as `mirror_repaired`. A copy counts as repaired
            // when it now holds what is true, whichever repairer (this one, `serve`'s) did it.
            self.repair_mirrors().await?;
            let ctx = self.own_context(&target.disk, "stowage-fsck");
            for p in report.problems.iter_mut().filter(|p| p.kind == ProblemKind::BadCopy) {
                p.repaired = match &p.mirror {
                    Some(member) => mirror.copy_agrees(&ctx, member, &p.path).await,
                    None => false,
                };
            }
        }
        report.elapsed = started.elapsed();
        let index = self.ledger().append(&report.record(req)).await.map_err(|e| {
            tracing::error!(disk = %report.disk, problems = report.problems.len(), "a fixity check's summary could not be recorded");
            audit_error(e)
        })?;
        report.record_index = Some(index);
        Ok(report)
    }
}

impl Check<'_> {
    /// Reads the ledger's records from where the check stopped, in batches. Every version of
    /// an object the disk shows was announced (a write-ahead record) before it was committed,
    /// so records read after a read began know the version it read.
    async fn read_ledger(&mut self) -> Result<(), StorageError> {
        loop {
            let from = self.recorded.next;
            let mut read = 0u64;
            let recorded = &mut self.recorded;
            self.ledger
                .scan(from, |entry| {
                    recorded.apply(&entry);
                    read += 1;
                    Ok(read < LEDGER_BATCH)
                })
                .map_err(audit_error)?;
            self.report.records_read += read;
            if read < LEDGER_BATCH {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }

    /// Lists the disk and reads every object; returns those that looked wrong (with what the
    /// first read found, or why it failed), to be judged again once the ledger is re-read.
    async fn walk(&mut self, prefix: &Prefix) -> Result<Vec<(String, Result<Read, StorageError>)>, StorageError> {
        let mut suspects = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.disk.list(&self.ctx, prefix, cursor.as_deref(), PAGE).await?;
            for info in page.items {
                self.recorded.saw(&info.path);
                if self.queued.contains(&info.path) {
                    continue;
                }
                let read = self.read(&info.path).await;
                let fine = match &read {
                    Ok(read) => self.problems(&info.path, read).is_empty(),
                    Err(StorageError::NotFound(_)) => {
                        // Deleted between the listing and the read.
                        self.report.changed += 1;
                        continue;
                    }
                    Err(_) => false,
                };
                if !fine {
                    suspects.push((info.path, read));
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(suspects),
            }
        }
    }

    /// Reads the object at `path` to its end, hashing on the host. On a mirrored disk, reads
    /// every mirror's copy, and reports (and marks for repair) each bad one.
    async fn read(&mut self, path: &str) -> Result<Read, StorageError> {
        if let Some(mirror) = crate::mirror::of(self.disk) {
            let copies = mirror.check_copies(&self.ctx, path).await?;
            self.throttle.take(copies.bytes_read).await;
            for (member, why) in copies.bad {
                let known = self.report.problems.iter().any(|p| {
                    p.kind == ProblemKind::BadCopy && p.path == path && p.mirror.as_deref() == Some(member.as_str())
                });
                if !known {
                    self.report.problems.push(Problem {
                        mirror: Some(member),
                        error: Some(why),
                        ..Problem::new(ProblemKind::BadCopy, path)
                    });
                }
            }
            self.report.objects += 1;
            self.report.bytes += copies.size;
            return Ok(Read { info: copies.info, sha256: copies.sha256, size: copies.size });
        }
        let object = ObjectPath::parse(path)?;
        let mut reader = self.disk.reader(&self.ctx, &object, None).await?;
        let info = reader.info().clone();
        let mut digester = Digester::new();
        while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await? {
            let n = chunk.len() as u64;
            digester.update(chunk);
            self.throttle.take(n).await;
        }
        let digest = digester.finish().ok_or_else(|| StorageError::Io("the host's hashing thread stopped".into()))?;
        self.report.objects += 1;
        self.report.bytes += digest.size;
        Ok(Read { info, sha256: digest.sha256, size: digest.size })
    }

    /// Whether the host writes objects at `path` without a record of their own: readiness
    /// probes, checkpoint copies, and a fallback's queued deletes (tombstones, recorded as the
    /// delete of their disk's path).
    fn hosts_own(&self, path: &str) -> bool {
        path.starts_with(PROBE_PREFIX)
            || (self.checkpoint_disk && path.starts_with(CHECKPOINT_PREFIX))
            || crate::fallback::in_queue(path)
    }

    /// What is wrong with the object at `path`, read as `read`, by the records known now.
    fn problems(&self, path: &str, read: &Read) -> Vec<Problem> {
        let mut out = Vec::new();
        let driver = read.info.sha256.as_ref().filter(|s| !s.eq_ignore_ascii_case(&read.sha256));
        let state = self.recorded.get(path);
        let pending = state.is_some_and(|s| s.pending_write_of(&read.sha256));
        let (mut ledger, mut recorded) = (None, pending);
        if let Some(Committed::Written { sha256, index, .. }) = state.and_then(|s| s.committed.as_ref()) {
            recorded = true;
            if let Some(want) = sha256.as_ref().filter(|w| !w.eq_ignore_ascii_case(&read.sha256) && !pending) {
                ledger = Some((want.clone(), *index));
            }
        }
        if driver.is_some() || ledger.is_some() || read.size != read.info.size {
            out.push(Problem {
                actual_sha256: Some(read.sha256.clone()),
                driver_sha256: driver.cloned(),
                ledger_sha256: ledger.as_ref().map(|l| l.0.clone()),
                ledger_index: ledger.map(|l| l.1),
                ..Problem::new(ProblemKind::Corrupted, path)
            });
        }
        if !recorded && !self.hosts_own(path) {
            out.push(Problem {
                actual_sha256: Some(read.sha256.clone()),
                driver_sha256: read.info.sha256.clone(),
                ..Problem::new(ProblemKind::Unrecorded, path)
            });
        }
        out
    }

    /// Judges a suspect again by the records read since. What still looks wrong is reported
    /// if the object is the version that was read; an object that changed meanwhile is read
    /// again and judged by the records read after that, and one that changed yet again is
    /// counted `changed` (the next run judges it).
    async fn judge_again(&mut self, path: &str, first: Result<Read, StorageError>) -> Result<(), StorageError> {
        let problems = match &first {
            Ok(read) => self.problems(path, read),
            Err(e) => vec![unreadable(path, e)],
        };
        if problems.is_empty() {
            return Ok(());
        }
        let unchanged = match &first {
            Ok(read) => self.unchanged_since(path, read).await,
            Err(_) => Ok(false),
        };
        match unchanged {
            Ok(true) => self.report.problems.extend(problems),
            Ok(false) => self.read_and_judge(path).await?,
            Err(StorageError::NotFound(_)) => self.report.changed += 1,
            Err(e) => self.report.problems.push(unreadable(path, &e)),
        }
        Ok(())
    }

    /// Whether the object at `path` is still the version `read` read.
    async fn unchanged_since(&self, path: &str, read: &Read) -> Result<bool, StorageError> {
        let now = self.disk.stat(&self.ctx, &ObjectPath::parse(path)?).await?;
        Ok(same_version(&read.info, &now))
    }

    /// Reads the object at `path` and judges it by the records read after the read; problems
    /// are reported only if it did not change meanwhile.
    async fn read_and_judge(&mut self, path: &str) -> Result<(), StorageError> {
        let read = match self.read(path).await {
            Ok(read) => read,
            Err(StorageError::NotFound(_)) => {
                self.report.changed += 1;
                return Ok(());
            }
            Err(e) => {
                self.report.problems.push(unreadable(path, &e));
                return Ok(());
            }
        };
        self.read_ledger().await?;
        let problems = self.problems(path, &read);
        if problems.is_empty() {
            return Ok(());
        }
        match self.unchanged_since(path, &read).await {
            Ok(true) => self.report.problems.extend(problems),
            Ok(false) | Err(StorageError::NotFound(_)) => self.report.changed += 1,
            Err(e) => self.report.problems.push(unreadable(path, &e)),
        }
        Ok(())
    }

    /// Paths the ledger expects that the listing did not show: missing (returned, to be
    /// confirmed by the records appended meanwhile), unless the disk has them now (written
    /// since: then they are read and judged like the others).
    async fn look_for_missing(&mut self) -> Result<Vec<Problem>, StorageError> {
        let mut missing = Vec::new();
        for (path, committed) in self.recorded.unseen() {
            let Committed::Written { sha256, index, .. } = committed else { continue };
            if self.queued.contains(&path) {
                continue;
            }
            let Ok(object) = ObjectPath::parse(&path) else { continue };
            match self.disk.exists(&self.ctx, &object).await {
                Ok(false) => missing.push(Problem {
                    ledger_sha256: sha256,
                    ledger_index: Some(index),
                    ..Problem::new(ProblemKind::Missing, &path)
                }),
                Ok(true) => self.read_and_judge(&path).await?,
                Err(e) => self.report.problems.push(unreadable(&path, &e)),
            }
        }
        Ok(missing)
    }
}

/// The problem of an object that could not be read.
fn unreadable(path: &str, e: &StorageError) -> Problem {
    Problem { error: Some(e.to_string()), ..Problem::new(ProblemKind::Unreadable, path) }
}

/// Whether two infos describe the same version of an object.
fn same_version(a: &ObjectInfo, b: &ObjectInfo) -> bool {
    a.size == b.size && a.sha256 == b.sha256 && a.modified == b.modified && a.etag == b.etag
}
