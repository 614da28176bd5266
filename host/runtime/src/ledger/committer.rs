//! Group commit: one thread owns the ledger's write connection. Appends queue up while a
//! commit is in flight and the next commit takes all of them in one transaction, so N
//! concurrent appends cost one WAL fsync, not N. Every caller is answered only after the
//! transaction holding its record is durable.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::head::{self, Head, HeadFile};
use super::{LedgerError, chain_hash, genesis, hash_at, now_ms, reaches};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 1024;

/// One record waiting for its commit.
pub(super) struct Pending {
    pub(super) body: String,
    pub(super) reply: oneshot::Sender<Result<u64, LedgerError>>,
}

/// What the committer starts from.
pub(super) struct Start {
    pub(super) conn: Connection,
    /// The database's last record, if any.
    pub(super) tip: Option<Head>,
    /// Why appending must be refused (the database no longer reaches its head).
    pub(super) broken: Option<String>,
    pub(super) head: HeadFile,
}

/// Starts the committer thread; it stops when every sender is gone.
pub(super) fn spawn(start: Start) -> std::io::Result<(Sender<Pending>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("stowage-ledger".into()).spawn(move || run(start, rx))?;
    Ok((tx, thread))
}

fn run(mut s: Start, rx: Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let bodies: Vec<&str> = batch.iter().map(|p| p.body.as_str()).collect();
        let result = match &s.broken {
            Some(why) => Err(why.clone()),
            None => commit(&mut s.conn, s.tip.as_ref(), s.head.path(), &bodies).map_err(|e| e.to_string()),
        };
        match result {
            Ok(tip) => {
                let first = tip.count - batch.len() as u64;
                // The head is written before anyone is answered (so a reader never sees a
                // record the head has not caught up with in a running host) and made durable
                // right after: after a power loss it may lag, never lead.
                if let Err(e) = s.head.write(&tip) {
                    tracing::error!(error = %e, "ledger head file could not be written; records are committed");
                }
                for (i, p) in batch.into_iter().enumerate() {
                    let _ = p.reply.send(Ok(first + i as u64));
                }
                if let Err(e) = s.head.sync() {
                    tracing::error!(error = %e, "ledger head file could not be synced");
                }
                s.tip = Some(tip);
            }
            Err(why) => {
                for p in batch {
                    let _ = p.reply.send(Err(LedgerError::Append(why.clone())));
                }
            }
        }
    }
}

fn tampered() -> LedgerError {
    LedgerError::Tampered("the ledger's last record changed while the host was running (records were removed or edited)".into())
}

/// Chains `bodies` onto `tip` (or onto what another process appended after it) in one
/// transaction; returns the new tip.
fn commit(conn: &mut Connection, tip: Option<&Head>, head_path: &Path, bodies: &[&str]) -> Result<Head, LedgerError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last: Option<(i64, String)> = tx
        .query_row("SELECT idx, hash FROM records ORDER BY idx DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let last = last.map(|(i, hash)| Head { count: i as u64 + 1, hash });
    // Another process (a CLI command, `stowage cleanup`) may have appended since: its records
    // must extend ours, which must still be there unchanged. Anything else was done behind
    // the host's back.
    let tip = match (tip, last) {
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
    let state = head::read(head_path).map_err(|error| LedgerError::Head { path: head_path.display().to_string(), error })?;
    if let Some(why) = reaches(&tx, tip.as_ref(), &state)? {
        return Err(LedgerError::Tampered(why));
    }
    let tip = tip.as_ref();
    let (mut index, mut prev) = tip.map_or((0, genesis()), |t| (t.count, t.hash.clone()));
    {
        let mut insert = tx.prepare_cached("INSERT INTO records (idx, at_ms, body, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let at_ms = now_ms();
        for body in bodies {
            let hash = chain_hash(&prev, index, at_ms, body);
            insert.execute(params![index as i64, at_ms as i64, body, prev, hash])?;
            prev = hash;
            index += 1;
        }
    }
    tx.commit()?;
    Ok(Head { count: index, hash: prev })
}
