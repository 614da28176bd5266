//! Upload sessions that survive any host (`uploads.rs` serves both kinds). A session on a disk
//! whose driver can suspend writes keeps its state in the ledger's database, not in memory:
//! after each request the write is suspended (its bytes durable with the driver) and the
//! offset, the driver's token and the sha256 state are recorded. Any host that shares the
//! database and reaches the same storage (an S3 bucket; a local-fs disk only from the machine
//! whose disk it is) continues it; a restart loses only the bytes of a request that was cut off.
//!
//! One request works on a session at a time, on any host: it takes the session's lease
//! ([`LEASE`], renewed while the body streams) and gives it back when it records the new
//! offset. A host that dies mid-request leaves a lease that runs out; until then the session
//! answers `423 Locked`. A host keeps the writer of the last request it served open, so the
//! next one it gets continues without resuming.
//!
//! Durable session ids start with `r` (so every host tells them from in-memory ones without
//! asking the database); their writes' temp objects carry the tag `up-<id>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use stowage_runtime::ledger::sessions::SessionRow;
use stowage_runtime::{Address, Request, StorageError, WriteOptions};

use crate::errors::ApiError;
use crate::leases::{Durable, Held, Opened, now_ms};
use crate::sessions::Session;
use crate::state::AppState;

pub use crate::leases::{is_durable, length_of};

/// Opens a durable session for `owner`, or `None` when the disk's write cannot be suspended
/// after all (the caller opens an in-memory one).
#[allow(clippy::too_many_arguments, reason = "one request's parts, passed on as they are")]
pub async fn create(
    state: &AppState,
    durable: &Arc<Durable>,
    addr: &Address,
    req: &Request,
    options: &WriteOptions,
    expected_sha256: Option<String>,
    length: Option<u64>,
    owner: &str,
) -> Result<Option<String>, ApiError> {
    let key = owner.to_string();
    let (mine, all) = durable.db(move |s| Ok((s.count_open(&key)?, s.count_open("")?))).await?;
    if mine >= state.tuning.max_uploads_per_key as u64 {
        return Err(ApiError::too_many(format!(
            "this key has {} uploads open; complete or discard one",
            state.tuning.max_uploads_per_key
        )));
    }
    if all >= state.tuning.max_uploads as u64 {
        return Err(StorageError::Unavailable {
            reason: format!("{} uploads are open; try again later", state.tuning.max_uploads),
            retryable: true,
        }
        .into());
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)
        .map_err(|e| ApiError::from(StorageError::Io(format!("no randomness for a session id: {e}"))))?;
    let id = format!("r{}", hex::encode(random));
    let tag = format!("up-{}", &id[1..]);
    let mut upload = state.storage().resumable_writer(addr, req, options, &tag, None).await?;
    let suspended = match upload.suspend().await {
        Ok(s) => s,
        Err(StorageError::Unsupported(_)) => {
            let _ = upload.abort().await;
            return Ok(None);
        }
        Err(e) => {
            let _ = upload.abort().await;
            return Err(e.into());
        }
    };
    let opened = Opened {
        content_type: options.content_type.clone(),
        metadata: options.metadata.clone(),
        create_only: options.create_only,
        expected_sha256,
        length,
    };
    let row = SessionRow {
        id: id.clone(),
        owner: owner.to_string(),
        name: addr.name.clone(),
        path: addr.path.clone(),
        options: serde_json::to_string(&opened).map_err(|e| StorageError::Io(e.to_string()))?,
        tag,
        offset: 0,
        token: suspended.token,
        digest: suspended.digest.sha256,
        version: 0,
        updated_ms: now_ms(),
        committed: None,
        holder: None,
        taken: 0,
    };
    if let Err(e) = durable.db(move |s| s.insert(&row)).await {
        let _ = upload.abort().await;
        return Err(e);
    }
    durable.keep(&id, 0, upload);
    Ok(Some(id))
}

/// What an append or a completion of a durable session does after the body.
pub enum Then {
    /// Records the new offset.
    Suspend,
    /// Commits (with the sha256 the completion gave, if any).
    Commit(Option<String>),
}

/// Appends `body` to `held` (when given) and records or commits. `204`, or `400` if the body
/// broke off (what arrived is kept, as for an in-memory session).
pub async fn run(
    state: &AppState,
    durable: &Arc<Durable>,
    held: Held,
    req: &Request,
    body: Option<(Body, Option<[u8; 32]>)>,
    then: Then,
) -> Result<(StatusCode, u64, Option<stowage_runtime::ObjectInfo>), ApiError> {
    // The lease is renewed from here until the offset is recorded or the object committed.
    let renew = durable.renewing(&held.row.id, &held.holder);
    let upload = durable.writer(&state.storage(), &held, req).await?;
    let opened = Opened::of(&held.row)?;
    let mut s = Session {
        upload: Some(upload),
        offset: Arc::new(AtomicU64::new(held.row.offset)),
        expected_sha256: opened.expected_sha256.clone(),
        length: opened.length,
        last_used: Instant::now(),
        name: crate::metrics::label_name(state, &held.row.name),
        fence: Some(renew.fence.clone()),
    };
    let (state, durable, req) = (state.clone(), durable.clone(), req.clone());
    // In a task of its own: a client that goes away never cuts a driver write off halfway.
    let task = tokio::spawn(async move {
        let fence = renew.fence.clone();
        let _renew = renew;
        let id = held.row.id.clone();
        let copied = match body {
            Some((body, checksum)) => crate::append::copy(&state, &mut s, &id, body, checksum).await,
            None => Ok(StatusCode::NO_CONTENT),
        };
        if let Err(lost) = fence.check(&id) {
            // Another request may hold the session now: nothing is suspended or recorded, and
            // the write is let go (it resumes from the recorded token).
            if let Some(upload) = s.upload.take() {
                upload.release().await;
            }
            return Err(lost);
        }
        let status = match copied {
            Ok(status) => status,
            Err(e) => {
                // A refused chunk (a tus length overrun, a checksum) kept the write: what came
                // before is recorded. A driver failure let it go: the session stays at its last
                // recorded offset (`held` gives it back), to be continued or discarded.
                if let Some(upload) = s.upload.take() {
                    let offset = s.offset.load(Ordering::Acquire);
                    durable.record(held, upload, offset).await?;
                }
                return Err(e);
            }
        };
        let offset = s.offset.load(Ordering::Acquire);
        let whole = s.length.is_some_and(|l| l == offset);
        let commit = match then {
            Then::Commit(given) => Some(given),
            Then::Suspend if whole => Some(None),
            Then::Suspend => None,
        };
        let Some(given) = commit else {
            let upload = s.upload.take().ok_or_else(|| StorageError::Io("the upload ended".into()))?;
            durable.record(held, upload, offset).await?;
            return Ok((status, offset, None));
        };
        match crate::append::commit(&mut s, &state.uploads, &id, given).await {
            Ok(info) => {
                let mut held = held;
                let (key, holder, size) = (id.clone(), held.holder.clone(), info.size);
                // A tus client that lost the answer asks the offset next and must learn
                // "whole": its session is kept (marked) until reaped; any other goes.
                let tus = s.length.is_some();
                let marked = durable
                    .db(move |st| {
                        if tus {
                            st.complete(&key, &holder, size, now_ms())
                        } else {
                            st.remove(&key, &holder, now_ms())
                        }
                    })
                    .await;
                match marked {
                    Ok(_) => held.released = true,
                    // `held` gives the session back; the reaper finds its write gone later.
                    Err(e) => {
                        tracing::warn!(upload = %id, error = ?e, "a committed upload session could not be marked; it is reaped later")
                    }
                }
                Ok((StatusCode::NO_CONTENT, info.size, Some(info)))
            }
            Err(e) => {
                match s.upload.take() {
                    // Refused before the commit (a length not reached, differing sha256s):
                    // the write goes on.
                    Some(upload) => durable.record(held, upload, offset).await?,
                    // The commit itself failed. One that may pass later (the backend or the
                    // ledger away) leaves the session at its recorded offset, to complete
                    // again; any other ends it, and what its write kept goes too.
                    None if e.retryable() => drop(held),
                    None => {
                        let addr = Address { name: held.row.name.clone(), path: held.row.path.clone() };
                        if let Err(left) = state.storage().discard_suspended(&addr, &req, &held.row.token).await {
                            tracing::warn!(upload = %id, error = %left, "a failed upload's temporary objects were not removed");
                        }
                        durable.forget(held).await;
                    }
                }
                Err(e)
            }
        }
    });
    match task.await {
        Ok(result) => result,
        Err(e) => Err(StorageError::Io(format!("the upload task failed: {e}")).into()),
    }
}

/// Whether trying again later may succeed.
fn retryable(e: &StorageError) -> bool {
    matches!(e, StorageError::Unavailable { retryable: true, .. } | StorageError::AuditUnavailable(_))
}

/// Discards `held`: its write (kept here, or suspended with the driver) and its record.
pub async fn discard(state: &AppState, durable: &Arc<Durable>, held: Held, req: &Request) -> Result<(), StorageError> {
    discard_held(state, durable, held, req).await.map_err(|(e, _)| e)
}

/// Like [`discard`]; a failure gives the session back to the caller, still held.
async fn discard_held(
    state: &AppState,
    durable: &Arc<Durable>,
    held: Held,
    req: &Request,
) -> Result<(), (StorageError, Held)> {
    let gone = match durable.take_kept(&held.row.id) {
        Some(upload) => upload.abort().await,
        None => {
            let addr = Address { name: held.row.name.clone(), path: held.row.path.clone() };
            state.storage().discard_suspended(&addr, req, &held.row.token).await
        }
    };
    if let Err(e) = gone {
        return Err((e, held));
    }
    durable.forget(held).await;
    Ok(())
}

/// Discards sessions idle for longer than `limit` (once each, by whichever host takes them)
/// and forgets committed ones as old.
pub async fn reap(state: &AppState, durable: &Arc<Durable>, limit: Duration) {
    let now = now_ms();
    let before = now - limit.as_millis() as i64;
    let Ok(idle) = durable.db(move |s| s.idle(before, now)).await else { return };
    for row in idle {
        let Ok(held) = durable.take(&row.id, &row.owner).await else {
            // Committed ones cannot be taken: they are only forgotten.
            if row.committed.is_some() {
                let (id, holder) = (row.id.clone(), durable.holder.clone());
                let _ = durable.db(move |s| s.remove(&id, &holder, now_ms())).await;
            }
            continue;
        };
        let req = Request { authenticated_as: Some(row.owner.clone()), ..Request::new() };
        let id = row.id.clone();
        match discard_held(state, durable, held, &req).await {
            Ok(()) => tracing::info!(upload = %id, "discarded an idle upload session"),
            // The backend may answer later: the session is tried again at the next round.
            Err((e, _held)) if retryable(&e) => {
                tracing::warn!(upload = %id, error = %e, "an idle upload session could not be discarded yet");
            }
            // It never will (its disk is gone from the config, say): the record goes, or it
            // would be tried forever and count against the limits.
            Err((e, held)) => {
                tracing::warn!(upload = %id, error = %e, "an idle upload session could not be discarded; its record is removed (the backend may keep its temporary objects until swept)");
                durable.forget(held).await;
            }
        }
    }
    durable.let_go_of_stale();
}
