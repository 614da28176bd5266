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
//! - `POST /v1/upload-sessions/{id}/complete`: commits (after the sha256 check); the object's info.
//! - `DELETE /v1/upload-sessions/{id}`: discards it.
//!
//! A session holds a driver instance, so there are at most [`MAX_SESSIONS`], and one idle for
//! [`IDLE_LIMIT`] is discarded.

use std::collections::HashMap;
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
use crate::request::request_of;

/// Sessions open at once, at most.
pub const MAX_SESSIONS: usize = 32;
/// A session this long without a request is discarded.
pub const IDLE_LIMIT: Duration = Duration::from_secs(3600);
/// The offset header.
const OFFSET: HeaderName = HeaderName::from_static("upload-offset");

/// One upload in progress.
struct Session {
    upload: Option<Upload>,
    offset: u64,
    expected_sha256: Option<String>,
    last_used: Instant,
}

/// The open sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

impl Sessions {
    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Session>>> {
        self.map.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }

    /// Discards sessions idle for longer than `limit` (their writes are aborted).
    pub async fn reap(&self, limit: Duration) {
        let sessions: Vec<(String, Arc<tokio::sync::Mutex<Session>>)> =
            self.map.lock().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let options = write_options(&headers)?;
    let expected = expected_sha256(&headers)?;
    let full = state.uploads.map.lock().map(|m| m.len() >= MAX_SESSIONS).unwrap_or(true);
    if full {
        return Err(StorageError::Unavailable { reason: format!("{MAX_SESSIONS} uploads are open; try again later"), retryable: true }.into());
    }
    let upload = state.storage.writer(&Address { name, path }, &request_of(&headers), &options).await?;
    let id = new_id()?;
    let session = Session { upload: Some(upload), offset: 0, expected_sha256: expected, last_used: Instant::now() };
    if let Ok(mut map) = state.uploads.map.lock() {
        map.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    }
    let mut r = offset_response(StatusCode::CREATED, 0);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/upload-sessions/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    Ok(r)
}

/// The offset to continue from.
pub async fn offset(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let session = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let s = session.lock().await;
    Ok(offset_response(StatusCode::OK, s.offset))
}

/// Appends the body at `upload-offset`.
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let session = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    // One writer at a time: a second request waits for the first rather than interleaving.
    let mut s = session.lock().await;
    s.last_used = Instant::now();
    let claimed = headers
        .get(&OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("upload-offset: a byte offset is required"))?;
    if claimed != s.offset {
        return Ok(offset_response(StatusCode::CONFLICT, s.offset));
    }
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(bytes) = chunk else {
            // The connection broke: what arrived is kept, and the client can ask the offset.
            s.last_used = Instant::now();
            return Ok(offset_response(StatusCode::BAD_REQUEST, s.offset));
        };
        let n = bytes.len() as u64;
        let Some(upload) = s.upload.as_mut() else { return Err(not_found(&id)) };
        if let Err(e) = upload.write(bytes).await {
            // The driver failed: this session cannot go on.
            if let Some(upload) = s.upload.take() {
                let _ = upload.abort().await;
            }
            state.uploads.remove(&id);
            return Err(e.into());
        }
        s.offset += n;
    }
    s.last_used = Instant::now();
    Ok(offset_response(StatusCode::NO_CONTENT, s.offset))
}

/// Commits the object.
pub async fn complete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let session = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let mut s = session.lock().await;
    let upload = s.upload.take().ok_or_else(|| not_found(&id))?;
    state.uploads.remove(&id);
    let info = upload.finish_verified(s.expected_sha256.as_deref()).await?;
    Ok((StatusCode::OK, Json(info_json(&info))).into_response())
}

/// Discards the upload.
pub async fn discard(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let session = state.uploads.get(&id).ok_or_else(|| not_found(&id))?;
    let mut s = session.lock().await;
    state.uploads.remove(&id);
    if let Some(upload) = s.upload.take() {
        upload.abort().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
