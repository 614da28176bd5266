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
//! A session holds a driver instance, so there are at most `max_uploads` of them, and at most
//! `max_uploads_per_key` per API key (so one key cannot take them all); one idle for
//! [`IDLE_LIMIT`](crate::sessions::IDLE_LIMIT) is discarded. A session belongs to the key that
//! opened it: to any other key it does not exist (`404`). A slot is released on every path, a
//! client that goes away while its session opens included. The sessions' table is
//! `sessions.rs`; this file serves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use stowage_runtime::{Address, StorageError};

use crate::counters::Counters;
use crate::errors::ApiError;
use crate::objects::{expected_sha256, info_json, write_options};
use crate::request::Caller;
use crate::sessions::{Session, Sessions};
use crate::state::AppState;

/// The offset header.
const OFFSET: HeaderName = HeaderName::from_static(stowage_api::header::UPLOAD_OFFSET);

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
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::from(StorageError::Io(format!("no randomness for a session id: {e}"))))?;
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
    let owner = owner_of(&req);
    // Held by this handler until the session is in the table: a client that goes away while
    // its session opens gives the slot back.
    let slot = state.uploads.reserve(&owner)?;
    let label = crate::metrics::label_name(&state, &name);
    let upload = state.storage().writer(&Address { name, path }, &req, &options).await?;
    let session = Session {
        upload: Some(upload),
        offset: Arc::new(AtomicU64::new(0)),
        expected_sha256: expected,
        last_used: Instant::now(),
        name: label,
    };
    state.uploads.insert(id.clone(), owner, session, slot)?;
    // The session's id in the body too, so a client (or schemathesis, through the document's
    // links) need not take the Location apart.
    let location = format!("/v1/upload-sessions/{id}");
    let mut r = (StatusCode::CREATED, axum::Json(serde_json::json!({ "id": id, "location": location, "offset": 0 })))
        .into_response();
    r.headers_mut().insert(OFFSET, HeaderValue::from(0u64));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(location) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    Ok(r)
}

/// Whose sessions a request may see: its API key's.
fn owner_of(req: &stowage_runtime::Request) -> String {
    req.authenticated_as.clone().unwrap_or_default()
}

/// The offset to continue from (without waiting for an append in progress).
pub async fn offset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
) -> Result<Response, ApiError> {
    let (offset, _) = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    Ok(offset_response(StatusCode::OK, offset.load(Ordering::Acquire)))
}

/// Appends the body at `upload-offset`.
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (offset, session) = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
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
    let idle = state.tuning.body_idle;
    let copied = tokio::spawn(async move { copy_body(s, body, &uploads, &metrics, &id, idle).await }).await;
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
    metrics: &Counters,
    id: &str,
    idle: Duration,
) -> Result<StatusCode, StorageError> {
    s.last_used = Instant::now();
    let mut stream = body.into_data_stream();
    let status = loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(bytes))) => bytes,
            Ok(None) => break StatusCode::NO_CONTENT,
            // Broken off or stalled: keep what arrived; the client asks the offset.
            Ok(Some(Err(_))) | Err(_) => break StatusCode::BAD_REQUEST,
        };
        let n = chunk.len() as u64;
        let Some(upload) = s.upload.as_mut() else {
            return Err(StorageError::NotFound(format!("upload session {id}")));
        };
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
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let given = expected_sha256(&headers)?;
    let (_, session) = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
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
pub async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
) -> Result<StatusCode, ApiError> {
    let (_, session) = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    let mut s = session.lock().await;
    state.uploads.remove(&id);
    if let Some(upload) = s.upload.take() {
        upload.abort().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
