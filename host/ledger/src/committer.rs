//! Group commit: one thread owns the ledger's write connection. Appends queue up while a
//! commit is in flight and the next commit takes all of them in one transaction, so N
//! concurrent appends cost one WAL fsync, not N. Every caller is answered only after the
//! transaction holding its record is durable.
//!
//! The same transaction stores the records' Merkle nodes and keeps `open_intents` current;
//! when a checkpoint is due, the new size and root go to the checkpointer thread, so signing
//! and writing it never delay a commit.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::checkpoint::{Due, SignedCheckpoint};
use crate::head::{self, Head, HeadFile, HeadState};
use crate::merkle::{Frontier, Hash};
use crate::store::{self, Db, GENESIS, Read, Row, Stored, chain_hash, row_leaf};
use crate::{LedgerError, Record, now_ms};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;

/// How long records nobody waits for may wait for a record someone waits for, to share its
/// commit. A crash in this window loses only such records, which reconciling restores.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// A checkpoint request: answered with the checkpoint, once stored.
pub(crate) type CheckpointReply = std::sync::mpsc::Sender<Result<SignedCheckpoint, String>>;

/// What the committer is asked to do.
pub(crate) enum Job {
    /// Append a record (its JSON body, and what it does to `open_intents`); answer once durable
    /// (or never, for appends nobody waits for).
    Append { body: String, intent: bool, settles: Vec<u64>, reply: Option<oneshot::Sender<Result<u64, LedgerError>>> },
    /// Make a checkpoint of everything committed so far.
    Checkpoint(CheckpointReply),
}

impl Job {
    /// An append of `record`.
    pub(crate) fn append(
        record: &Record,
        reply: Option<oneshot::Sender<Result<u64, LedgerError>>>,
    ) -> Result<Job, LedgerError> {
        let body = serde_json::to_string(record).map_err(|e| LedgerError::Record { index: 0, error: e.to_string() })?;
        Ok(Job::Append { body, intent: record.intent.is_some(), settles: record.settles.clone(), reply })
    }
}

/// When checkpoints are due.
pub(crate) struct Schedule {
    pub(crate) every_records: u64,
    pub(crate) every_ms: u64,
    /// (size, time in ms) of the last checkpoint.
    pub(crate) last: (u64, u64),
    pub(crate) send: Sender<(Due, Option<CheckpointReply>)>,
}

/// What the committer starts from.
pub(crate) struct Start {
    pub(crate) conn: Box<dyn Db>,
    /// The database's last record, if any.
    pub(crate) tip: Option<Head>,
    /// Why appending must be refused (the database does not reach its head).
    pub(crate) broken: Option<String>,
    pub(crate) head: HeadFile,
    /// Whether a one-line (old format) head is still acceptable: not once there are
    /// checkpoints.
    pub(crate) legacy_head_ok: bool,
    /// The database is shared by several hosts.
    pub(crate) shared: bool,
    pub(crate) frontier: Frontier,
    pub(crate) schedule: Option<Schedule>,
    /// The last failure, cleared by the next commit that succeeds.
    pub(crate) health: Arc<Mutex<Option<String>>>,
    /// Transactions committed so far.
    pub(crate) commits: Arc<std::sync::atomic::AtomicU64>,
}

/// Starts the committer thread; it stops when every sender is gone.
pub(crate) fn spawn(start: Start) -> std::io::Result<(Sender<Job>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("stowage-ledger".into()).spawn(move || run(start, rx))?;
    Ok((tx, thread))
}

struct Appended {
    body: String,
    intent: bool,
    settles: Vec<u64>,
    reply: Option<oneshot::Sender<Result<u64, LedgerError>>>,
}

/// How often a committer whose shared database stopped answering asks it again, while no
/// append comes.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The next job; while a shared database does not answer, asking it again every
/// `PROBE_EVERY` meanwhile, so the ledger is healthy again as soon as it answers (the loops
/// that check `health` before they work do not wait for a client's request).
fn next_job(s: &mut Start, rx: &Receiver<Job>) -> Option<Job> {
    loop {
        let failing = s.shared && s.broken.is_none() && s.health.lock().map_or(true, |h| h.is_some());
        if !failing {
            return rx.recv().ok();
        }
        match rx.recv_timeout(PROBE_EVERY) {
            Ok(job) => return Some(job),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if s.conn.reconnect().and_then(|()| s.conn.tip()).is_ok() {
                    tracing::info!("the ledger's database answers again");
                    set_health(s, None);
                }
            }
        }
    }
}

fn run(mut s: Start, rx: Receiver<Job>) {
    while let Some(first) = next_job(&mut s, &rx) {
        let mut batch = Vec::new();
        let mut checkpoints = Vec::new();
        let mut next = Some(first);
        let mut lingered = false;
        loop {
            while let Some(job) = next.take() {
                match job {
                    Job::Append { body, intent, settles, reply } => {
                        batch.push(Appended { body, intent, settles, reply })
                    }
                    Job::Checkpoint(reply) => checkpoints.push(reply),
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Nobody waits for these records (outcomes whose write-ahead record is durable):
            // rather than spend an fsync on them alone, let them ride on the commit of the
            // next record someone does wait for, if one comes soon.
            let nobody_waits = checkpoints.is_empty() && batch.iter().all(|p| p.reply.is_none());
            if lingered || !nobody_waits || batch.len() >= MAX_BATCH {
                break;
            }
            lingered = true;
            next = rx.recv_timeout(LINGER).ok();
        }
        if !batch.is_empty() {
            commit_batch(&mut s, batch);
        }
        let forced = !checkpoints.is_empty();
        schedule_checkpoint(&mut s, forced, checkpoints);
    }
}

fn set_health(s: &Start, failure: Option<String>) {
    if let Ok(mut h) = s.health.lock() {
        *h = failure;
    }
}

fn commit_batch(s: &mut Start, batch: Vec<Appended>) {
    let result = match &s.broken {
        Some(why) => Err(LedgerError::Tampered(why.clone())),
        None => commit(s, &batch),
    };
    match result {
        Ok(tip) => {
            let first = tip.count - batch.len() as u64;
            // The head is written before anyone is answered (so a reader never sees a record
            // the head has not caught up with in a running host) and made durable while the
            // next transaction runs: after a power loss it may lag, never lead.
            if let Err(e) = s.head.write(&tip) {
                tracing::error!(error = %e, "ledger head file could not be written; records are committed");
            }
            // Counted, and the ledger healthy again, before anyone is answered: whoever sees
            // its record durable sees the commit and the health it brought.
            s.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            set_health(s, None);
            for (i, p) in batch.into_iter().enumerate() {
                if let Some(reply) = p.reply {
                    let _ = reply.send(Ok(first + i as u64));
                }
            }
            if let Err(e) = s.head.sync_later() {
                tracing::error!(error = %e, "ledger head file could not be synced");
            }
            s.tip = Some(tip);
        }
        Err(e) => {
            let why = e.to_string();
            if let LedgerError::Tampered(what) = &e {
                // A ledger changed behind the host's back stays refused until an operator seals it.
                s.broken = Some(what.clone());
            }
            tracing::error!(error = %why, records = batch.len(), "ledger commit failed; the operations are refused");
            set_health(s, Some(why.clone()));
            for p in batch {
                if let Some(reply) = p.reply {
                    let _ = reply.send(Err(LedgerError::Append(why.clone())));
                }
            }
        }
    }
}

fn tampered() -> LedgerError {
    LedgerError::Tampered(
        "the ledger's last record changed while the host was running (records were removed or edited)".into(),
    )
}

/// Chains the batch onto the tip (or onto what another process appended after it) in one
/// transaction, with its Merkle nodes and intents; returns the new tip.
fn commit(s: &mut Start, batch: &[Appended]) -> Result<Head, LedgerError> {
    s.conn.reconnect()?;
    let mut tx = s.conn.begin()?;
    let rule = HeadRule { legacy_ok: s.legacy_head_ok, shared: s.shared };
    let adopted = adopt(&*tx, s.tip.as_ref(), s.head.path(), rule)?;
    let (mut index, mut prev) = adopted.as_ref().map_or((0, GENESIS.to_string()), |t| (t.count, t.hash.clone()));
    // Another process's records grew the tree too: start from the stored nodes.
    let mut frontier =
        if s.frontier.size() == index { s.frontier.clone() } else { Frontier::load(&Stored(&*tx), index)? };
    let at_ms = now_ms();
    let mut failed = None;
    for p in batch {
        let hash = chain_hash(&prev, index, at_ms, &p.body);
        tx.insert(&Row { index, at_ms, body: p.body.clone(), prev, hash: hash.clone(), leaf: None })?;
        store::push_stored(&mut *tx, &mut frontier, row_leaf(index, at_ms, &p.body), &mut failed);
        if p.intent {
            tx.open_intent(index)?;
        }
        for settled in &p.settles {
            tx.settle(*settled)?;
        }
        prev = hash;
        index += 1;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    tx.commit()?;
    s.frontier = frontier;
    Ok(Head { count: index, hash: prev })
}

/// What a head file must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadRule {
    /// An old one-line head is still acceptable (not once there are checkpoints).
    pub(crate) legacy_ok: bool,
    /// The database is shared by several hosts (PostgreSQL): a missing head means this host
    /// has not appended yet (while it has no checkpoints), and the chain's anchor is the
    /// checkpoints.
    pub(crate) shared: bool,
}

/// Why a database whose last record is `tip` does not reach the head `state` (the head may
/// be behind, never ahead), if it does not.
pub(crate) fn reaches(
    conn: &dyn Read,
    tip: Option<&Head>,
    state: &HeadState,
    rule: HeadRule,
) -> Result<Option<String>, LedgerError> {
    Ok(match (state, tip) {
        (HeadState::Missing, None) => None,
        // A host that joins a shared database has seen none of it yet (one with checkpoints
        // of its own has, and must have its head).
        (HeadState::Missing, Some(_)) if rule.shared && rule.legacy_ok => None,
        (HeadState::Missing | HeadState::Damaged, Some(_)) => Some("the ledger's head file is missing or damaged".into()),
        (HeadState::Damaged, None) => Some("the ledger's head file is damaged".into()),
        (HeadState::Legacy(_), _) if !rule.legacy_ok => {
            Some("the ledger's head file is in the old one-line format, which is not accepted once the ledger has checkpoints".into())
        }
        (HeadState::At(head) | HeadState::Legacy(head), _) => {
            let at_head = match head.count.checked_sub(1) {
                Some(last) => conn.hash_at(last)?,
                None => None,
            };
            (at_head.as_deref() != Some(head.hash.as_str()))
                .then(|| "the ledger does not match its head (records were removed or changed)".into())
        }
    })
}

/// Takes in what other hosts appended to a shared database since this host's last commit, so
/// a checkpoint asked for here covers everything committed so far. Ours must still be there.
fn catch_up(s: &mut Start) -> Result<(), LedgerError> {
    s.conn.reconnect()?;
    let rule = HeadRule { legacy_ok: s.legacy_head_ok, shared: s.shared };
    let Some(tip) = adopt(&*s.conn, s.tip.as_ref(), s.head.path(), rule)? else { return Ok(()) };
    if s.frontier.size() != tip.count {
        // Complete subtrees below the tip never change: the stored ones are final.
        s.frontier = Frontier::load(&Stored(&*s.conn), tip.count)?;
    }
    s.tip = Some(tip);
    Ok(())
}

/// The database's tip as this host may chain onto it: another process (a CLI command next to
/// `serve`, or another host on a shared database) may have appended since `ours`, and its
/// records must extend ours, which must still be there unchanged; and the database must still
/// reach the head file at `head` (which any process may have advanced). Anything else was done
/// behind the host's back.
fn adopt(db: &dyn Read, ours: Option<&Head>, head: &Path, rule: HeadRule) -> Result<Option<Head>, LedgerError> {
    let last = db.tip()?.map(|(count, hash)| Head { count, hash });
    let adopted = match (ours, last) {
        (None, None) => None,
        (Some(tip), Some(last)) if last == *tip => Some(last),
        (tip, Some(last)) if tip.is_none_or(|t| last.count > t.count) => {
            if let Some(t) = tip
                && db.hash_at(t.count - 1)?.as_deref() != Some(t.hash.as_str())
            {
                return Err(tampered());
            }
            Some(last)
        }
        _ => return Err(tampered()),
    };
    let state = read_head(head)?;
    if let Some(why) = reaches(db, adopted.as_ref(), &state, rule)? {
        return Err(LedgerError::Tampered(why));
    }
    Ok(adopted)
}

/// Sends a checkpoint of the committed tip to the checkpointer when one is due (or asked for).
fn schedule_checkpoint(s: &mut Start, forced: bool, replies: Vec<CheckpointReply>) {
    if forced
        && s.shared
        && let Err(e) = catch_up(s)
    {
        for reply in replies {
            let _ = reply.send(Err(e.to_string()));
        }
        return;
    }
    let Some(tip) = s.tip.clone() else {
        for reply in replies {
            let _ = reply.send(Err("the ledger is empty: there is nothing to checkpoint".into()));
        }
        return;
    };
    let Some(schedule) = s.schedule.as_mut() else {
        for reply in replies {
            let _ = reply.send(Err("this ledger has no checkpoints configured".into()));
        }
        return;
    };
    let now = now_ms();
    let (last_size, last_ms) = schedule.last;
    let due = tip.count > last_size
        && (tip.count - last_size >= schedule.every_records || now.saturating_sub(last_ms) >= schedule.every_ms);
    if !(due || forced) || s.broken.is_some() || s.frontier.size() != tip.count {
        for reply in replies {
            let _ = reply.send(Err(s.broken.clone().unwrap_or_else(|| "no checkpoint was due".into())));
        }
        return;
    }
    let root: Hash = s.frontier.root();
    schedule.last = (tip.count, now);
    // From the first checkpoint on, an old one-line head means someone wrote it.
    s.legacy_head_ok = false;
    let mut replies = replies.into_iter();
    let first = replies.next();
    if schedule.send.send((Due { size: tip.count, root, chain: tip.hash.clone() }, first)).is_err() {
        tracing::error!("the ledger's checkpointer has stopped");
    }
    // Everyone who asked at the same time gets the same checkpoint.
    for reply in replies {
        let _ = schedule.send.send((Due { size: tip.count, root, chain: tip.hash.clone() }, Some(reply)));
    }
}

/// Reads the head file at `path`.
pub(crate) fn read_head(path: &Path) -> Result<HeadState, LedgerError> {
    head::read(path).map_err(|error| LedgerError::Head { path: path.display().to_string(), error })
}
