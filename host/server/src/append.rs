//! Appending a request's body to an upload session, in-memory or durable (`uploads.rs`,
//! `durable.rs`), and committing it: chunk by chunk into the session's write, its offset counted as the driver
//! takes each chunk, a body that breaks off or stalls keeping what arrived, and a tus
//! `Upload-Checksum` checked before any of the body is kept.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt as _;
use stowage_runtime::StorageError;

use crate::counters::Counters;
use crate::errors::ApiError;
use crate::sessions::{Session, Sessions};
use crate::state::AppState;
use crate::tus;

/// Appends `body` to the session `s` (checked against `checksum`, when given).
pub(crate) async fn copy_with(
    s: &mut Session,
    body: Body,
    checksum: Option<[u8; 32]>,
    uploads: &Sessions,
    metrics: &Counters,
    id: &str,
    idle: Duration,
) -> Result<StatusCode, ApiError> {
    match checksum {
        Some(want) => copy_checked(s, body, uploads, metrics, id, idle, &want).await,
        None => copy_body(s, body, uploads, metrics, id, idle).await,
    }
}

/// Appends `body` to a durable session's writer, as to an in-memory one.
pub(crate) async fn copy(
    state: &AppState,
    s: &mut Session,
    id: &str,
    body: Body,
    checksum: Option<[u8; 32]>,
) -> Result<StatusCode, ApiError> {
    copy_with(s, body, checksum, &state.uploads, &state.metrics, id, state.tuning.body_idle).await
}

/// Appends `body` to the session; `204`, or `400` if the body broke off (what arrived is
/// kept). A driver failure ends the session. A tus session takes no byte past its length.
async fn copy_body(
    s: &mut Session,
    body: Body,
    uploads: &Sessions,
    metrics: &Counters,
    id: &str,
    idle: Duration,
) -> Result<StatusCode, ApiError> {
    s.last_used = Instant::now();
    let mut stream = body.into_data_stream();
    let status = loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(bytes))) => bytes,
            Ok(None) => break StatusCode::NO_CONTENT,
            // Broken off or stalled: keep what arrived; the client asks the offset.
            Ok(Some(Err(_))) | Err(_) => break StatusCode::BAD_REQUEST,
        };
        append_chunk(s, chunk, uploads, metrics, id).await?;
    };
    s.last_used = Instant::now();
    Ok(status)
}

/// Appends a body whose sha256 must be `want`: held in memory (at most
/// [`tus::MAX_CHECKSUMMED_PATCH`]) and checked before any of it is kept.
async fn copy_checked(
    s: &mut Session,
    body: Body,
    uploads: &Sessions,
    metrics: &Counters,
    id: &str,
    idle: Duration,
    want: &[u8; 32],
) -> Result<StatusCode, ApiError> {
    let declared = axum::body::HttpBody::size_hint(&body).exact();
    s.last_used = Instant::now();
    let mut stream = body.into_data_stream();
    let mut held = bytes::BytesMut::new();
    let too_large = || {
        ApiError::from(StorageError::TooLarge {
            disk: format!("a checksummed PATCH (upload session {id})"),
            limit: tus::MAX_CHECKSUMMED_PATCH as u64,
        })
    };
    if declared.is_some_and(|n| n > tus::MAX_CHECKSUMMED_PATCH as u64) {
        return Err(too_large());
    }
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(bytes))) if held.len() + bytes.len() <= tus::MAX_CHECKSUMMED_PATCH => {
                held.extend_from_slice(&bytes)
            }
            Ok(Some(Ok(_))) => return Err(too_large()),
            Ok(None) => break,
            // Nothing of a body that broke off is kept: its checksum cannot be checked.
            Ok(Some(Err(_))) | Err(_) => return Ok(StatusCode::BAD_REQUEST),
        }
    }
    tus::verify(&held, want)?;
    // In chunks a driver takes without holding much of it in its own memory.
    let held = held.freeze();
    for at in (0..held.len()).step_by(1 << 20) {
        append_chunk(s, held.slice(at..held.len().min(at + (1 << 20))), uploads, metrics, id).await?;
    }
    s.last_used = Instant::now();
    Ok(StatusCode::NO_CONTENT)
}

/// Appends one chunk; a driver failure (or a tus session's length overrun) ends the session.
async fn append_chunk(
    s: &mut Session,
    chunk: bytes::Bytes,
    uploads: &Sessions,
    metrics: &Counters,
    id: &str,
) -> Result<(), ApiError> {
    let n = chunk.len() as u64;
    let offset = s.offset.load(Ordering::Acquire);
    if let Some(length) = s.length
        && offset.saturating_add(n) > length
    {
        return Err(ApiError::bad_request(format!(
            "the body goes past Upload-Length ({length} bytes; {offset} are in); what is past it was not kept"
        )));
    }
    if let Some(fence) = &s.fence {
        fence.check(id)?;
    }
    let Some(upload) = s.upload.as_mut() else {
        return Err(StorageError::NotFound(format!("upload session {id}")).into());
    };
    if let Err(e) = upload.write(chunk).await {
        if let Some(upload) = s.upload.take() {
            if s.fence.is_some() {
                upload.release().await;
            } else {
                let _ = upload.abort().await;
            }
        }
        uploads.remove(id);
        return Err(e.into());
    }
    s.offset.fetch_add(n, Ordering::AcqRel);
    metrics.add_bytes(&s.name, n, false);
    Ok(())
}

/// Commits the session's object (after the sha256 check: `given`, or the one it was opened
/// with; they must agree) and removes the session.
pub(crate) async fn commit(
    s: &mut Session,
    uploads: &Sessions,
    id: &str,
    given: Option<String>,
) -> Result<stowage_runtime::ObjectInfo, ApiError> {
    let expected = match (given, s.expected_sha256.take()) {
        (Some(a), Some(b)) if a != b => {
            s.expected_sha256 = Some(b);
            return Err(ApiError::bad_request("x-stowage-sha256 differs from the one the upload was opened with"));
        }
        (a, b) => a.or(b),
    };
    let offset = s.offset.load(Ordering::Acquire);
    if let Some(length) = s.length.filter(|l| *l != offset) {
        return Err(ApiError::with_status(
            StatusCode::CONFLICT,
            stowage_api::ErrorKind::BadRequest,
            format!(
                "the upload has {offset} of its {length} bytes (Upload-Length); it commits when the last one arrives"
            ),
        ));
    }
    let upload =
        s.upload.take().ok_or_else(|| ApiError::from(StorageError::NotFound(format!("upload session {id}"))))?;
    match upload.finish_verified(expected.as_deref()).await {
        Ok(info) => {
            // A tus client that lost this answer asks the offset next: it learns "whole".
            match s.length {
                Some(_) => uploads.completed(id, offset),
                None => uploads.remove(id),
            }
            Ok(info)
        }
        Err(e) => {
            uploads.remove(id);
            Err(e.into())
        }
    }
}
