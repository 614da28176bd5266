//! Resumable uploads, in the shape of tus 1.0 / the IETF resumable-upload draft: a client opens
//! a session, appends the body in as many requests as it takes (each says the offset it
//! continues from), asks the offset after a dropped connection, and completes; the object is
//! committed atomically at the end, and is invisible until then.
//!
//! - `POST /v1/uploads/{name}/{path}`: opens a session (same headers as a PUT: content type,
//!   `x-stowage-meta-*`, `x-stowage-sha256`, `If-None-Match: *`). `201`, `Location` and
//!   `upload-offset: 0`.
//! - `PATCH /v1/upload-sessions/{id}` with `upload-offset: N`: appends the body. `204` and the new
//!   offset; `409` with the real offset if N is not it. Bytes that arrived before a connection
//!   broke are kept.
//! - `HEAD /v1/upload-sessions/{id}`: `upload-offset`.
//! - `POST /v1/upload-sessions/{id}/complete` (optionally with `x-stowage-sha256`): commits
//!   (after the sha256 check); the object's info.
//! - `DELETE /v1/upload-sessions/{id}`: discards it.
//!
//! A session holds a driver instance, so there are at most [`MAX_SESSIONS`], and one idle for
//! [`IDLE_LIMIT`] is discarded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use stowage_runtime::{Address, StorageError, Upload};

use crate::AppState;
use crate::errors::ApiError;
use crate::objects::{expected_sha256, info_json, write_options};
use crate::request::Caller;

/// Sessions open at once, at most.
pub const MAX_SESSIONS: usize = 32;
/// A session this long without a request is discarded.
pub const IDLE_LIMIT: Duration = Duration::from_secs(3600);
/// The offset header.
const OFFSET: HeaderName = HeaderName::from_static("upload-offset");

/// One upload in progress.
struct Session {
    upload: Option<Upload>,
    /// Bytes the driver has taken (readable without the lock, for `HEAD`).
    offset: Arc<AtomicU64>,
    expected_sha256: Option<String>,
    last_used: Instant,
    /// The storage name, for metrics.
    name: String,
}

/// A session: its offset outside the lock, the rest inside.
type Entry = (Arc<AtomicU64>, Arc<tokio::sync::Mutex<Session>>);

/// The open sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    /// Sessions open or being opened (reserved before the driver is asked, so concurrent
    /// opens cannot pass [`MAX_SESSIONS`]).
    reserved: AtomicUsize,
}

impl Sessions {
    fn get(&self, id: &str) -> Option<Entry> {
        self.map.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &str) {
        let removed = self.map.lock().map(|mut map| map.remove(id).is_some()).unwrap_or(false);
        if removed {
            self.release();
        }
    }

    fn reserve(&self) -> bool {
        self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_SESSIONS).then_some(n + 1)).is_ok()
    }

    fn release(&self) {
        let _ = self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Discards sessions idle for longer than `limit` (their writes are aborted).
    pub async fn reap(&self, limit: Duration) {
        let sessions: Vec<(String, Arc<tokio::sync::Mutex<Session>>)> =
            self.map.lock().map(|m| m.iter().map(|(k, (_, s))| (k.clone(), s.clone())).collect()).unwrap_or_default();
        for (id, session) in sessions {
            // A session in use is not idle.
            let Ok(mut s) = session.try_lock() else { continue };
            if s.last_used.elapsed() > limit {
                if let Some(upload) = s.upload.take() {
                    let _ = upload.abort().await;
                }
                self.remove(&id);
                tracing::info!(upload = %id, "discarded an idle upload session");
            }
        }
    }
}

fn offset_response(status: StatusCode, offset: u64) -> Response {
    let mut r = status.into_response();
    r.headers_mut().insert(OFFSET, HeaderValue::from(offset));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn not_found(id: &str) -> ApiError {
    ApiError::from(StorageError::NotFound(format!("upload session {id}")))
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::from(StorageError::Io(format!("no randomness for a session id: {e}"))))?;
    Ok(hex::encode(bytes))
}

/// Opens a session.
pub async fn create(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let options = write_options(&headers)?;
    let expected = expected_sha256(&headers)?;
    let id = new_id()?;
    if !state.uploads.reserve() {
        return Err(StorageError::Unavailable { reason: format!("{MAX_SESSIONS} uploads are open; try again later"), retryable: true }.into());
    }
    let label = crate::metrics::label_name(&state, &name);
    let upload = match state.storage.writer(&Address { name, path }, &req, &options).await {
        Ok(upload) => upload,
        Err(e) => {
            state.uploads.release();
            return Err(e.into());
        }
    };
    let offset = Arc::new(AtomicU64::new(0));
    let session = Session { upload: Some(upload), offset: offset.clone(), expected_sha256: expected, last_used: Instant::now(), name: label };
    match state.uploads.map.lock() {
        Ok(mut map) => {
            map.insert(id.clone(), (offset, Arc::new(tokio::sync::Mutex::new(session))));
        }
        Err(_) => {
            state.uploads.release();
            return Err(StorageError::Io("the upload table is unusable".into()).into());
        }
    }
    let mut r = offset_response(StatusCode::CREATED, 0);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/upload-sessions/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    Ok(r)
}

/// The offset to continue from (without waiting for an append in progress).
pub async fn offset(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (offset, _) = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(offset_response(StatusCode::OK, offset.load(Ordering::Acquire)))
}

/// Appends the body at `upload-offset`.
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (offset, session) = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let claimed = headers
        .get(&OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("upload-offset: a byte offset is required"))?;
    // One writer at a time: a second request waits for the first rather than interleaving.
    let s = session.lock_owned().await;
    if claimed != offset.load(Ordering::Acquire) {
        return Ok(offset_response(StatusCode::CONFLICT, offset.load(Ordering::Acquire)));
    }
    // The copy runs in a task of its own: if the client goes away, hyper drops this handler,
    // but a driver write is never cut off halfway and the offset stays exact.
    let uploads = state.uploads.clone();
    let metrics = state.metrics.clone();
    let copied = tokio::spawn(async move { copy_body(s, body, &uploads, &metrics, &id).await }).await;
    match copied {
        Ok(Ok(status)) => Ok(offset_response(status, offset.load(Ordering::Acquire))),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(StorageError::Io(format!("the upload task failed: {e}")).into()),
    }
}

/// Appends `body` to the session; `204`, or `400` if the body broke off (what arrived is
/// kept). A driver failure ends the session.
async fn copy_body(
    mut s: tokio::sync::OwnedMutexGuard<Session>,
    body: Body,
    uploads: &Sessions,
    metrics: &crate::metrics::Metrics,
    id: &str,
) -> Result<StatusCode, StorageError> {
    s.last_used = Instant::now();
    let mut stream = body.into_data_stream();
    let status = loop {
        let chunk = match tokio::time::timeout(crate::BODY_IDLE, stream.next()).await {
            Ok(Some(Ok(bytes))) => bytes,
            Ok(None) => break StatusCode::NO_CONTENT,
            // Broken off or stalled: keep what arrived; the client asks the offset.
            Ok(Some(Err(_))) | Err(_) => break StatusCode::BAD_REQUEST,
        };
        let n = chunk.len() as u64;
        let Some(upload) = s.upload.as_mut() else { return Err(StorageError::NotFound(format!("upload session {id}"))) };
        if let Err(e) = upload.write(chunk).await {
            if let Some(upload) = s.upload.take() {
                let _ = upload.abort().await;
            }
            uploads.remove(id);
            return Err(e);
        }
        s.offset.fetch_add(n, Ordering::AcqRel);
        metrics.add_bytes(&s.name, n, false);
    };
    s.last_used = Instant::now();
    Ok(status)
}

/// Commits the object. An `x-stowage-sha256` here is checked too (a client that streams
/// learns the digest only at the end); it must agree with one given at the start.
pub async fn complete(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let given = expected_sha256(&headers)?;
    let (_, session) = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let mut s = session.lock().await;
    let expected = match (given, s.expected_sha256.take()) {
        (Some(a), Some(b)) if a != b => {
            s.expected_sha256 = Some(b);
            return Err(ApiError::bad_request("x-stowage-sha256 differs from the one the upload was opened with"));
        }
        (a, b) => a.or(b),
    };
    let upload = s.upload.take().ok_or_else(|| not_found(&id))?;
    state.uploads.remove(&id);
    // The commit runs to its end even if the client goes away meanwhile.
    let info = tokio::spawn(async move { upload.finish_verified(expected.as_deref()).await })
        .await
        .map_err(|e| StorageError::Io(format!("the commit task failed: {e}")))??;
    Ok((StatusCode::OK, Json(info_json(&info))).into_response())
}

/// Discards the upload.
pub async fn discard(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let (_, session) = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let mut s = session.lock().await;
    state.uploads.remove(&id);
    if let Some(upload) = s.upload.take() {
        upload.abort().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
