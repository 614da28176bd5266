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

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::checkpoint::{Due, SignedCheckpoint};
use crate::head::{self, Head, HeadFile, HeadState};
use crate::merkle::{Frontier, Hash};
use crate::store::{self, GENESIS, Stored, chain_hash, hash_at, row_leaf};
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
    pub(crate) conn: Connection,
    /// The database's last record, if any.
    pub(crate) tip: Option<Head>,
    /// Why appending must be refused (the database does not reach its head).
    pub(crate) broken: Option<String>,
    pub(crate) head: HeadFile,
    /// Whether a one-line (old format) head is still acceptable: not once there are
    /// checkpoints.
    pub(crate) legacy_head_ok: bool,
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

fn run(mut s: Start, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
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
            // Counted before anyone is answered: whoever sees its record durable sees the commit.
            s.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for (i, p) in batch.into_iter().enumerate() {
                if let Some(reply) = p.reply {
                    let _ = reply.send(Ok(first + i as u64));
                }
            }
            if let Err(e) = s.head.sync_later() {
                tracing::error!(error = %e, "ledger head file could not be synced");
            }
            s.tip = Some(tip);
            set_health(s, None);
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
    let tx = s.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last = store::tip(&tx)?.map(|(count, hash)| Head { count, hash });
    // Another process (a CLI command next to `serve`) may have appended since: its records
    // must extend ours, which must still be there unchanged. Anything else was done behind
    // the host's back.
    let adopted = match (s.tip.as_ref(), last) {
        (None, None) => None,
        (Some(tip), Some(last)) if last == *tip => Some(last),
        (tip, Some(last)) if tip.is_none_or(|t| last.count > t.count) => {
            let ours_intact = match tip {
                None => true,
                Some(t) => hash_at(&tx, t.count - 1)?.as_deref() == Some(t.hash.as_str()),
            };
            if !ours_intact {
                return Err(tampered());
            }
            Some(last)
        }
        _ => return Err(tampered()),
    };
    // And the database must still reach the head (which any process may have advanced).
    let state = head::read(s.head.path())
        .map_err(|error| LedgerError::Head { path: s.head.path().display().to_string(), error })?;
    if let Some(why) = reaches(&tx, adopted.as_ref(), &state, s.legacy_head_ok)? {
        return Err(LedgerError::Tampered(why));
    }
    let (mut index, mut prev) = adopted.as_ref().map_or((0, GENESIS.to_string()), |t| (t.count, t.hash.clone()));
    // Another process's records grew the tree too: start from the stored nodes.
    let mut frontier =
        if s.frontier.size() == index { s.frontier.clone() } else { Frontier::load(&Stored(&tx), index)? };
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut node = tx.prepare_cached("INSERT OR REPLACE INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        let mut open = tx.prepare_cached("INSERT INTO open_intents (idx) VALUES (?1)")?;
        let mut settle = tx.prepare_cached("DELETE FROM open_intents WHERE idx = ?1")?;
        let at_ms = now_ms();
        let mut failed = None;
        for p in batch {
            let hash = chain_hash(&prev, index, at_ms, &p.body);
            insert.execute(params![index as i64, at_ms as i64, p.body, prev, hash])?;
            frontier.push(row_leaf(index, at_ms, &p.body), |l, i, h| store::store(&mut node, l, i, h, &mut failed));
            if p.intent {
                open.execute(params![index as i64])?;
            }
            for settled in &p.settles {
                settle.execute(params![*settled as i64])?;
            }
            prev = hash;
            index += 1;
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    tx.commit()?;
    s.frontier = frontier;
    Ok(Head { count: index, hash: prev })
}

/// Why a database whose last record is `tip` does not reach the head `state` (the head may
/// be behind, never ahead), if it does not.
pub(crate) fn reaches(
    conn: &Connection,
    tip: Option<&Head>,
    state: &HeadState,
    legacy_ok: bool,
) -> Result<Option<String>, LedgerError> {
    Ok(match (state, tip) {
        (HeadState::Missing, None) => None,
        (HeadState::Missing | HeadState::Damaged, Some(_)) => Some("the ledger's head file is missing or damaged".into()),
        (HeadState::Damaged, None) => Some("the ledger's head file is damaged".into()),
        (HeadState::Legacy(_), _) if !legacy_ok => {
            Some("the ledger's head file is in the old one-line format, which is not accepted once the ledger has checkpoints".into())
        }
        (HeadState::At(head) | HeadState::Legacy(head), _) => {
            let at_head = match head.count.checked_sub(1) {
                Some(last) => hash_at(conn, last)?,
                None => None,
            };
            (at_head.as_deref() != Some(head.hash.as_str()))
                .then(|| "the ledger does not match its head (records were removed or changed)".into())
        }
    })
}

/// Sends a checkpoint of the committed tip to the checkpointer when one is due (or asked for).
fn schedule_checkpoint(s: &mut Start, forced: bool, replies: Vec<CheckpointReply>) {
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
