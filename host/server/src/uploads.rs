//! Resumable uploads: the host's own session calls below, and tus 1.0.0 on the same sessions
//! (`tus.rs`: a tus session has a length, and the PATCH that reaches it commits). A client opens
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
use std::time::{Duration, Instant, SystemTime};

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
use crate::sessions::{IDLE_LIMIT, Session, Sessions};
use crate::state::AppState;
use crate::tus;

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

/// When a session last used now is discarded (tus's `Upload-Expires`).
fn expires() -> Option<SystemTime> {
    SystemTime::now().checked_add(IDLE_LIMIT)
}

/// Opens a session. A tus creation (`Tus-Resumable`) gives its `Upload-Length` and may carry
/// the first bytes (creation-with-upload); its content type and metadata come from
/// `Upload-Metadata`.
pub async fn create(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let is_tus = tus::requested(&headers)?;
    let mut options = write_options(&headers)?;
    let length = if is_tus {
        options.content_type = None;
        options = tus::with_metadata(&headers, options)?;
        Some(tus::length(&headers)?)
    } else {
        // Not a tus request: its tus headers mean nothing, but a malformed one is still refused.
        tus::check_length(&headers)?;
        None
    };
    let expected = expected_sha256(&headers)?;
    let with_upload = is_tus && tus::check_patch_type(&headers).is_ok();
    let checksum = if with_upload { tus::checksum(&headers)? } else { None };
    let id = new_id()?;
    let owner = owner_of(&req);
    // Held by this handler until the session is in the table: a client that goes away while
    // its session opens gives the slot back.
    let slot = state.uploads.reserve(&owner)?;
    let label = crate::metrics::label_name(&state, &name);
    let upload = state.storage().writer(&Address { name, path }, &req, &options).await?;
    let offset = Arc::new(AtomicU64::new(0));
    let session = Session {
        upload: Some(upload),
        offset: offset.clone(),
        expected_sha256: expected,
        length,
        last_used: Instant::now(),
        name: label,
    };
    state.uploads.insert(id.clone(), owner.clone(), session, slot)?;
    let location = format!("/v1/upload-sessions/{id}");
    // An empty tus upload is complete at once; creation-with-upload appends the body now. A
    // client that goes away meanwhile, or whose body is refused, never learns the session's
    // Location: the session goes (and its slot with it).
    if is_tus && (length == Some(0) || with_upload) {
        let unclaimed = Unclaimed { uploads: state.uploads.clone(), id: Some(id.clone()) };
        let handle = state.uploads.get(&id, &owner).ok_or_else(|| not_found(&id))?;
        let s = handle.session.lock_owned().await;
        append_in_task(&state, s, id.clone(), body, checksum).await?;
        unclaimed.claimed();
    }
    // The session's id in the body too, so a client (or schemathesis, through the document's
    // links) need not take the Location apart.
    let at = offset.load(Ordering::Acquire);
    let mut r = (StatusCode::CREATED, axum::Json(serde_json::json!({ "id": id, "location": location, "offset": at })))
        .into_response();
    r.headers_mut().insert(OFFSET, HeaderValue::from(at));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(location) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    if is_tus {
        tus::expiring(&mut r, expires());
    }
    Ok(r)
}

/// Whose sessions a request may see: its API key's.
fn owner_of(req: &stowage_runtime::Request) -> String {
    req.authenticated_as.clone().unwrap_or_default()
}

/// The offset to continue from (without waiting for an append in progress); a tus session's
/// length too.
pub async fn offset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    tus::requested(&headers)?;
    let owner = owner_of(&req);
    let whole = |length: u64| {
        let mut r = offset_response(StatusCode::OK, length);
        r.headers_mut().insert(HeaderName::from_static("upload-length"), HeaderValue::from(length));
        r
    };
    let Some(handle) = state.uploads.get(&id, &owner) else {
        // Committed: a client that lost the last answer learns its upload is whole.
        return state.uploads.committed(&id, &owner).map(whole).ok_or_else(|| not_found(&id));
    };
    let offset = handle.offset.load(Ordering::Acquire);
    let Some(length) = handle.length else { return Ok(offset_response(StatusCode::OK, offset)) };
    if offset == length {
        // Every byte is in: the answer waits for the commit (which holds the session), so that
        // "whole" is never said of an upload whose commit then fails.
        let s = handle.session.lock().await;
        if s.upload.is_none() {
            return state.uploads.committed(&id, &owner).map(whole).ok_or_else(|| not_found(&id));
        }
    }
    let mut r = offset_response(StatusCode::OK, offset);
    r.headers_mut().insert(HeaderName::from_static("upload-length"), HeaderValue::from(length));
    Ok(r)
}

/// Appends the body at `upload-offset`. On a tus session, the PATCH that reaches its length
/// commits it (`204` only once the object is stored), and an `Upload-Checksum` is checked
/// before any of the body is kept.
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claimed = headers
        .get(&OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("upload-offset: a byte offset is required"))?;
    let is_tus = tus::requested(&headers)?;
    if is_tus {
        tus::check_patch_type(&headers)?;
    }
    let checksum = tus::checksum(&headers)?;
    let handle = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    // One writer at a time: a second request waits for the first rather than interleaving.
    let s = handle.session.lock_owned().await;
    let offset = handle.offset.load(Ordering::Acquire);
    let mut r = if claimed != offset {
        offset_response(StatusCode::CONFLICT, offset)
    } else {
        let status = append_in_task(&state, s, id, body, checksum).await?;
        offset_response(status, handle.offset.load(Ordering::Acquire))
    };
    if is_tus {
        tus::expiring(&mut r, expires());
    }
    Ok(r)
}

/// Removes a session whose creation's answer never reached its client, unless claimed.
struct Unclaimed {
    uploads: Arc<Sessions>,
    id: Option<String>,
}

impl Unclaimed {
    /// The creation answers: the client will know the session.
    fn claimed(mut self) {
        self.id = None;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        // (The write itself is aborted when the last holder of the session lets it go.)
        if let Some(id) = self.id.take() {
            self.uploads.remove(&id);
        }
    }
}

/// Appends `body` to the locked session `s` in a task of its own (if the client goes away,
/// hyper drops the handler, but a driver write is never cut off halfway, the offset stays
/// exact, and a tus session whose last byte arrived is still committed).
async fn append_in_task(
    state: &AppState,
    s: tokio::sync::OwnedMutexGuard<Session>,
    id: String,
    body: Body,
    checksum: Option<[u8; 32]>,
) -> Result<StatusCode, ApiError> {
    let uploads = state.uploads.clone();
    let metrics = state.metrics.clone();
    let idle = state.tuning.body_idle;
    let copied = tokio::spawn(async move {
        let mut s = s;
        let status = match checksum {
            Some(want) => copy_checked(&mut s, body, &uploads, &metrics, &id, idle, &want).await?,
            None => copy_body(&mut s, body, &uploads, &metrics, &id, idle).await?,
        };
        // Every byte is in, however the body ended (its last bytes may arrive with a broken
        // ending): commit now, or a client that then asks the offset would take the upload for
        // whole while nothing is stored.
        if s.length.is_some_and(|l| l == s.offset.load(Ordering::Acquire)) {
            commit(&mut s, &uploads, &id, None).await?;
            return Ok(StatusCode::NO_CONTENT);
        }
        Ok::<_, ApiError>(status)
    })
    .await;
    match copied {
        Ok(result) => result,
        Err(e) => Err(StorageError::Io(format!("the upload task failed: {e}")).into()),
    }
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
    let Some(upload) = s.upload.as_mut() else {
        return Err(StorageError::NotFound(format!("upload session {id}")).into());
    };
    if let Err(e) = upload.write(chunk).await {
        if let Some(upload) = s.upload.take() {
            let _ = upload.abort().await;
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
async fn commit(
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
    let upload = s.upload.take().ok_or_else(|| not_found(id))?;
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

/// Commits the object. An `x-stowage-sha256` here is checked too (a client that streams
/// learns the digest only at the end); it must agree with one given at the start.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let given = expected_sha256(&headers)?;
    let handle = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    let mut s = handle.session.lock_owned().await;
    let uploads = state.uploads.clone();
    // The commit runs to its end even if the client goes away meanwhile.
    let info = tokio::spawn(async move { commit(&mut s, &uploads, &id, given).await })
        .await
        .map_err(|e| StorageError::Io(format!("the commit task failed: {e}")))??;
    Ok((StatusCode::OK, Json(info_json(&info))).into_response())
}

/// Discards the upload (tus termination too).
pub async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    tus::requested(&headers)?;
    let handle = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    let mut s = handle.session.lock().await;
    state.uploads.remove(&id);
    if let Some(upload) = s.upload.take() {
        upload.abort().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
