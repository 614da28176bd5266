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
/// memory: at most this much (tus clients send chunks of a few MiB).
pub const MAX_CHECKSUMMED_PATCH: usize = 16 << 20;

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

/// Middleware: every answer to a tus request carries `Tus-Resumable` (errors included), and a
/// `412` (a version this host does not speak) says which it does (`Tus-Version`).
pub async fn stamp_answers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_tus = request.headers().contains_key(TUS_RESUMABLE);
    let mut response = next.run(request).await;
    if is_tus {
        let h = response.headers_mut();
        h.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
        if response.status() == StatusCode::PRECONDITION_FAILED {
            response.headers_mut().insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(VERSION));
        }
    }
    response
}

/// `Upload-Expires`: when the session is discarded if nothing uses it before.
pub fn expiring(response: &mut Response, at: Option<SystemTime>) {
    if let Some(at) = at
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at))
    {
        response.headers_mut().insert(UPLOAD_EXPIRES, v);
    }
}

/// `OPTIONS` on an upload's creation route: what this host's tus offers, for a path that could
/// be uploaded to. No key is needed (tus clients may ask before they authenticate); it tells
/// nothing of the host's data. This is tus discovery, not CORS: no `Access-Control-*` headers
/// are sent, so browsers may upload from the host's own origin only.
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

/// At most this many `Upload-Metadata` pairs, each value at most this long (decoded).
const MAX_METADATA_PAIRS: usize = 64;
const MAX_METADATA_VALUE: usize = 1024;

/// An `Upload-Length`, if given, is a whole number of bytes.
pub fn check_length(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.contains_key(UPLOAD_LENGTH) {
        true => length(headers).map(|_| ()),
        false => Ok(()),
    }
}

/// `options` with what a creation's `Upload-Metadata` says: `filetype` (or `content-type`)
/// becomes the content type, every other pair user metadata (keys lower-cased). A value that
/// is not visible ASCII (a file name with accents, say) is kept percent-encoded, as metadata
/// headers must be ASCII. Keys may not repeat, nor take the host's own (`stowage-*`).
pub fn with_metadata(headers: &HeaderMap, mut options: WriteOptions) -> Result<WriteOptions, ApiError> {
    let Some(value) = headers.get(UPLOAD_METADATA) else { return Ok(options) };
    let text = value.to_str().map_err(|_| ApiError::bad_request("Upload-Metadata is not visible ASCII"))?;
    let pairs: Vec<&str> = text.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if pairs.len() > MAX_METADATA_PAIRS {
        return Err(ApiError::bad_request(format!("Upload-Metadata: at most {MAX_METADATA_PAIRS} pairs")));
    }
    for pair in pairs {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(ApiError::bad_request(format!(
                "Upload-Metadata key `{key}` may only use a-z, 0-9, `-`, `_` and `.`"
            )));
        }
        if key.starts_with("stowage-") {
            return Err(ApiError::bad_request(format!(
                "Upload-Metadata key `{key}`: `stowage-` keys are the host's own"
            )));
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::bad_request(format!("Upload-Metadata `{key}`: its value is not base64")))?;
        if decoded.len() > MAX_METADATA_VALUE {
            return Err(ApiError::bad_request(format!("Upload-Metadata `{key}`: at most {MAX_METADATA_VALUE} bytes")));
        }
        let value = visible_ascii(&decoded);
        let content_type = matches!(key.as_str(), "filetype" | "content-type");
        if (content_type && options.content_type.is_some()) || options.metadata.iter().any(|(k, _)| *k == key) {
            return Err(ApiError::bad_request(format!("Upload-Metadata key `{key}` is given twice")));
        }
        match content_type {
            true => options.content_type = Some(value).filter(|t| !t.is_empty()),
            false => options.metadata.push((key, value)),
        }
    }
    options.metadata.sort();
    Ok(options)
}

/// `bytes` as visible ASCII: as they are if they are, else percent-encoded (UTF-8 bytes and
/// `%` itself), so `Müller.pdf` is kept as `M%C3%BCller.pdf`.
fn visible_ascii(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| (b' '..=b'~').contains(b)) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    bytes
        .iter()
        .map(|&b| if (b' '..=b'~').contains(&b) && b != b'%' { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
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
