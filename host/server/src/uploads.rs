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
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stowage_runtime::{Address, StorageError};

use crate::append::{commit, copy_with};
use crate::durable::{self, Then};
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
    let owner = owner_of(&req);
    let addr = Address { name, path };
    if let Some(durable) = state.durable.as_ref()
        && state.storage().resumable(&addr)
        && let Some(id) =
            durable::create(&state, durable, &addr, &req, &options, expected.clone(), length, &owner).await?
    {
        let mut at = 0;
        if is_tus && (length == Some(0) || with_upload) {
            let held = durable.take(&id, &owner).await?;
            match durable::run(&state, durable, held, &req, Some((body, checksum)), Then::Suspend).await {
                Ok((_, offset, _)) => at = offset,
                Err(e) => {
                    // The client never learns this session: it goes.
                    if let Ok(held) = durable.take(&id, &owner).await {
                        let _ = durable::discard(&state, durable, held, &req).await;
                    }
                    return Err(e);
                }
            }
        }
        return Ok(created(&id, at, is_tus));
    }
    let id = new_id()?;
    // Held by this handler until the session is in the table: a client that goes away while
    // its session opens gives the slot back.
    let slot = state.uploads.reserve(&owner)?;
    let label = crate::metrics::label_name(&state, &addr.name);
    let upload = state.storage().writer(&addr, &req, &options).await?;
    let offset = Arc::new(AtomicU64::new(0));
    let session = Session {
        upload: Some(upload),
        offset: offset.clone(),
        expected_sha256: expected,
        length,
        last_used: Instant::now(),
        name: label,
        fence: None,
    };
    state.uploads.insert(id.clone(), owner.clone(), session, slot)?;
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
    Ok(created(&id, offset.load(Ordering::Acquire), is_tus))
}

/// The answer to a creation: `201`, the session's `Location` and its offset `at`.
fn created(id: &str, at: u64, is_tus: bool) -> Response {
    let location = format!("/v1/upload-sessions/{id}");
    // The session's id in the body too, so a client (or schemathesis, through the document's
    // links) need not take the Location apart.
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
    r
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
    if let Some(durable) = state.durable.as_ref().filter(|_| durable::is_durable(&id)) {
        let row = durable.get(&id, &owner).await?.ok_or_else(|| not_found(&id))?;
        if let Some(length) = row.committed {
            return Ok(whole(length));
        }
        let mut r = offset_response(StatusCode::OK, row.offset);
        if let Some(length) = durable::length_of(&row) {
            r.headers_mut().insert(HeaderName::from_static("upload-length"), HeaderValue::from(length));
        }
        return Ok(r);
    }
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
    if let Some(durable) = state.durable.as_ref().filter(|_| durable::is_durable(&id)) {
        let held = durable.take(&id, &owner_of(&req)).await?;
        let mut r = if claimed != held.row.offset {
            offset_response(StatusCode::CONFLICT, held.row.offset)
        } else {
            let (status, offset, _) =
                durable::run(&state, durable, held, &req, Some((body, checksum)), Then::Suspend).await?;
            offset_response(status, offset)
        };
        if is_tus {
            tus::expiring(&mut r, expires());
        }
        return Ok(r);
    }
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
        let status = copy_with(&mut s, body, checksum, &uploads, &metrics, &id, idle).await?;
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

/// Commits the object. An `x-stowage-sha256` here is checked too (a client that streams
/// learns the digest only at the end); it must agree with one given at the start.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let given = expected_sha256(&headers)?;
    if let Some(durable) = state.durable.as_ref().filter(|_| durable::is_durable(&id)) {
        let held = durable.take(&id, &owner_of(&req)).await?;
        let (_, _, info) = durable::run(&state, durable, held, &req, None, Then::Commit(given)).await?;
        let info = info.ok_or_else(|| not_found(&id))?;
        return Ok((StatusCode::OK, Json(info_json(&info))).into_response());
    }
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
    if let Some(durable) = state.durable.as_ref().filter(|_| durable::is_durable(&id)) {
        let held = durable.take(&id, &owner_of(&req)).await?;
        durable::discard(&state, durable, held, &req).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let handle = state.uploads.get(&id, &owner_of(&req)).ok_or_else(|| not_found(&id))?;
    let mut s = handle.session.lock().await;
    state.uploads.remove(&id);
    if let Some(upload) = s.upload.take() {
        upload.abort().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
