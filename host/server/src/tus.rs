//! tus 1.0.0 (<https://tus.io/protocols/resumable-upload>) on the upload sessions of
//! `uploads.rs`: core, creation, creation-with-upload, termination, checksum (sha256) and
//! expiration. A request carrying `Tus-Resumable` is a tus request; this file reads its
//! headers and writes the ones every tus answer carries. What differs from the host's own
//! session calls: a tus session knows its length (`Upload-Length`), and is committed (after
//! the sha256 check) by the PATCH that brings its offset there, so a tus client's success
//! means the object is stored.

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest as _;
use stowage_api::ErrorKind;
use stowage_runtime::WriteOptions;

use crate::errors::ApiError;

/// The protocol version served.
pub const VERSION: &str = "1.0.0";
/// The extensions served.
const EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
/// A PATCH with `Upload-Checksum` is verified before any of it is appended, so it is held in
/// memory: at most this much.
pub const MAX_CHECKSUMMED_PATCH: usize = 64 << 20;

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");

/// Whether `headers` make a tus request: `Tus-Resumable` names the version served (`Some`), is
/// absent (`None`: the host's own session calls), or names another (`412`).
pub fn requested(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(TUS_RESUMABLE) {
        None => Ok(false),
        Some(v) if v.as_bytes() == VERSION.as_bytes() => Ok(true),
        Some(_) => Err(ApiError::with_status(
            StatusCode::PRECONDITION_FAILED,
            ErrorKind::BadRequest,
            format!("Tus-Resumable: this host speaks tus {VERSION} only"),
        )),
    }
}

/// The headers every tus answer carries, and `Upload-Expires` when the session has a deadline.
pub fn stamp(response: &mut Response, expires: Option<SystemTime>) {
    let h = response.headers_mut();
    h.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    if let Some(at) = expires
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at))
    {
        h.insert(UPLOAD_EXPIRES, v);
    }
}

/// `OPTIONS` on an upload's creation route: what this host's tus offers (no key needed: a
/// browser asks before it may send one), for a path that could be uploaded to.
pub async fn options_create(
    axum::extract::Path((_, path)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    stowage_runtime::ObjectPath::parse(&path).map_err(|e| ApiError::from(stowage_runtime::StorageError::from(e)))?;
    Ok(options().await)
}

/// `OPTIONS` on a session: what this host's tus offers.
pub async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    h.insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(VERSION));
    h.insert(HeaderName::from_static("tus-extension"), HeaderValue::from_static(EXTENSIONS));
    h.insert(HeaderName::from_static("tus-checksum-algorithm"), HeaderValue::from_static("sha256"));
    r
}

/// The `Upload-Length` of a creation: required (this host does not defer lengths).
pub fn length(headers: &HeaderMap) -> Result<u64, ApiError> {
    let value = headers.get(UPLOAD_LENGTH).ok_or_else(|| {
        ApiError::bad_request("Upload-Length is required (this host does not offer creation-defer-length)")
    })?;
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request("Upload-Length must be a whole number of bytes"))
}

/// `options` with what a creation's `Upload-Metadata` says: `filetype` (or `content-type`)
/// becomes the content type, every other pair user metadata (keys lower-cased; values must be
/// visible ASCII, as metadata headers must).
pub fn with_metadata(headers: &HeaderMap, mut options: WriteOptions) -> Result<WriteOptions, ApiError> {
    let Some(value) = headers.get(UPLOAD_METADATA) else { return Ok(options) };
    let text = value.to_str().map_err(|_| ApiError::bad_request("Upload-Metadata is not visible ASCII"))?;
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase();
        let bad =
            || ApiError::bad_request(format!("Upload-Metadata `{key}`: its value is not base64 of visible ASCII"));
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let value = String::from_utf8(decoded)
            .ok()
            .filter(|v| v.bytes().all(|b| (b' '..=b'~').contains(&b)))
            .ok_or_else(bad)?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(ApiError::bad_request(format!(
                "Upload-Metadata key `{key}` may only use a-z, 0-9, `-`, `_` and `.`"
            )));
        }
        match key.as_str() {
            "filetype" | "content-type" => options.content_type = Some(value).filter(|t| !t.is_empty()),
            _ => options.metadata.push((key, value)),
        }
    }
    options.metadata.sort();
    Ok(options)
}

/// A PATCH's `Content-Type` must be `application/offset+octet-stream` (`415` otherwise).
pub fn check_patch_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(t) if t.trim().eq_ignore_ascii_case("application/offset+octet-stream") => Ok(()),
        _ => Err(ApiError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::BadRequest,
            "a tus PATCH's Content-Type must be application/offset+octet-stream",
        )),
    }
}

/// A PATCH's `Upload-Checksum`: the sha256 its body must have (`None`: not given). Other
/// algorithms are refused (`400`), as the protocol says.
pub fn checksum(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(value) = headers.get(UPLOAD_CHECKSUM) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default();
    let (algorithm, encoded) = text.split_once(' ').unwrap_or((text, ""));
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(ApiError::bad_request(format!(
            "Upload-Checksum: algorithm `{algorithm}` is not supported (sha256 is)"
        )));
    }
    let digest = STANDARD.decode(encoded.trim()).ok().and_then(|d| <[u8; 32]>::try_from(d).ok());
    digest.map(Some).ok_or_else(|| ApiError::bad_request("Upload-Checksum: not base64 of a 32-byte sha256"))
}

/// Whether `body` has the sha256 `want`; `460 Checksum Mismatch` otherwise.
pub fn verify(body: &[u8], want: &[u8; 32]) -> Result<(), ApiError> {
    if sha2::Sha256::digest(body).as_slice() == want {
        return Ok(());
    }
    let status = StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST);
    Err(ApiError::with_status(
        status,
        ErrorKind::DigestMismatch,
        "the PATCH's body does not have the sha256 its Upload-Checksum says; nothing of it was kept",
    ))
}
