//! `/v1/objects/{name}/{path}`: PUT, GET (with `Range`), HEAD and DELETE, with raw streaming
//! bodies. Metadata travels as headers: `content-type`, `x-stowage-meta-*`, `x-stowage-sha256`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use stowage_runtime::{Address, ByteRange, ObjectInfo, ObjectReader, StorageError, WriteOptions};

use crate::errors::ApiError;
use crate::request::Caller;
use crate::AppState;

/// User metadata headers: `x-stowage-meta-KEY: VALUE`.
const META_PREFIX: &str = "x-stowage-meta-";
/// The content's sha256 (lowercase hex): checked before commit on PUT, given on GET/HEAD.
const SHA256: &str = "x-stowage-sha256";
/// When the object was last written, in milliseconds since the Unix epoch (exact, unlike
/// `Last-Modified`).
const MODIFIED: &str = "x-stowage-modified-ms";
/// Bytes per chunk read from a driver for a response body.
const READ_CHUNK: usize = 1 << 20;

/// An object's info as JSON.
pub fn info_json(info: &ObjectInfo) -> serde_json::Value {
    let metadata: serde_json::Map<String, serde_json::Value> =
        info.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::json!({
        "path": info.path,
        "size": info.size,
        "sha256": info.sha256,
        "content_type": info.content_type,
        "modified_ms": info.modified,
        "etag": info.etag,
        "metadata": metadata,
    })
}

fn text_header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Result<Option<&str>, ApiError> {
    headers
        .get(name)
        .map(|v| v.to_str().map_err(|_| ApiError::bad_request("a header value is not visible ASCII")))
        .transpose()
}

pub(crate) fn write_options(headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
    let mut metadata = Vec::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(META_PREFIX) {
            let value = value.to_str().map_err(|_| ApiError::bad_request(format!("{name}: not visible ASCII")))?;
            metadata.push((key.to_string(), value.to_string()));
        }
    }
    metadata.sort();
    let create_only = match text_header(headers, header::IF_NONE_MATCH)? {
        None => false,
        Some("*") => true,
        Some(other) => return Err(ApiError::bad_request(format!("If-None-Match: only `*` is supported, not `{other}`"))),
    };
    Ok(WriteOptions { content_type: text_header(headers, header::CONTENT_TYPE)?.map(str::to_string), metadata, create_only })
}

pub(crate) fn expected_sha256(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match text_header(headers, SHA256)? {
        None => Ok(None),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(v.to_ascii_lowercase())),
        Some(_) => Err(ApiError::bad_request(format!("{SHA256} must be 64 hex digits"))),
    }
}

/// PUT: streams the body to the driver; commits only if all of it arrived (and matches
/// `x-stowage-sha256` when given).
pub async fn put(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let options = write_options(&headers)?;
    let expected = expected_sha256(&headers)?;
    let addr = Address { name, path };
    let mut upload = state.storage.writer(&addr, &req, &options).await?;
    let mut stream = body.into_data_stream();
    loop {
        let written = match tokio::time::timeout(crate::BODY_IDLE, stream.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(bytes))) => upload.write(bytes).await,
            Ok(Some(Err(e))) => Err(StorageError::Io(format!("the request body broke off: {e}"))),
            Err(_) => Err(StorageError::Io(format!("the request body stalled for {} s", crate::BODY_IDLE.as_secs()))),
        };
        if let Err(e) = written {
            // Nothing is stored; the abort's own failure adds nothing for the client.
            let _ = upload.abort().await;
            return Err(e.into());
        }
    }
    // Once every byte is in, the commit runs to its end in a task of its own: a client that
    // goes away now cannot cut it off between its ledger record and the driver's commit.
    let info = tokio::spawn(async move { upload.finish_verified(expected.as_deref()).await })
        .await
        .map_err(|e| StorageError::Io(format!("the commit task failed: {e}")))??;
    state.metrics.add_bytes(&crate::metrics::label_name(&state, &addr.name), info.size, false);
    Ok((StatusCode::OK, Json(info_json(&info))).into_response())
}

/// Headers describing an object.
fn info_headers(info: &ObjectInfo, headers: &mut HeaderMap) {
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, info.content_type.as_deref().unwrap_or("application/octet-stream"));
    if let Some(sha) = &info.sha256 {
        set(HeaderName::from_static(SHA256), sha);
    }
    if let Some(etag) = &info.etag {
        set(header::ETAG, &format!("\"{}\"", etag.trim_matches('"')));
    }
    if let Some(ms) = info.modified {
        set(HeaderName::from_static(MODIFIED), &ms.to_string());
    }
    for (k, v) in &info.metadata {
        if let Ok(name) = HeaderName::from_bytes(format!("{META_PREFIX}{k}").as_bytes()) {
            set(name, v);
        }
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// A `Range: bytes=...` header as a byte range; `None` for the whole object. One range only.
fn parse_range(value: &str, size: impl FnOnce() -> Option<u64>) -> Result<Option<ByteRange>, ApiError> {
    let spec = value
        .strip_prefix("bytes=")
        .filter(|s| !s.contains(','))
        .ok_or_else(|| ApiError::bad_request("Range: only one `bytes=` range is supported"))?;
    let bad = || ApiError::bad_request(format!("Range: `{value}` is not a byte range"));
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| bad())?;
            let size = size().ok_or_else(bad)?;
            ByteRange { offset: size.saturating_sub(n), length: Some(n.min(size)) }
        }
        (from, "") => ByteRange { offset: from.parse().map_err(|_| bad())?, length: None },
        (from, to) => {
            let (from, to): (u64, u64) = (from.parse().map_err(|_| bad())?, to.parse().map_err(|_| bad())?);
            // `to` may lie past the end (the driver stops there); `to - from + 1` may not overflow.
            let length = to.checked_sub(from).and_then(|d| d.checked_add(1)).ok_or_else(bad)?;
            ByteRange { offset: from, length: Some(length) }
        }
    };
    Ok(Some(range))
}

/// GET: streams the object (or the `Range` asked for: `206`).
pub async fn get(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, Address { name, path }, req, &headers).await
}

/// Answers a GET of `addr` for `req` (also for signed URLs).
pub(crate) async fn serve(state: AppState, addr: Address, req: stowage_runtime::Request, headers: &HeaderMap) -> Result<Response, ApiError> {
    let range = match text_header(headers, header::RANGE)? {
        None => None,
        Some(value) if value.trim_start().starts_with("bytes=-") => {
            let size = state.storage.stat(&addr, &req).await?.size;
            parse_range(value, || Some(size))?
        }
        Some(value) => parse_range(value, || None)?,
    };
    let reader = state.storage.reader(&addr, &req, range).await?;
    let info = reader.info().clone();
    let length = reader.remaining();
    if range.is_some() && length == 0 {
        // Nothing of the object lies in the range (at its end, or an empty object).
        let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(response);
    }
    let sent = Sent { metrics: state.metrics.clone(), name: crate::metrics::label_name(&state, &addr.name) };
    let mut response = Response::new(Body::from_stream(body_stream(reader, sent)));
    info_headers(&info, response.headers_mut());
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(r) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = r.offset + length - 1; // length > 0, and offset + length <= size

        let value = format!("bytes {}-{last}/{}", r.offset, info.size);
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Where a download's bytes are counted.
struct Sent {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    name: String,
}

/// The object's bytes, a chunk at a time, straight from the driver.
fn body_stream(reader: ObjectReader, sent: Sent) -> impl futures::Stream<Item = Result<bytes::Bytes, StorageError>> {
    futures::stream::unfold(Some((reader, sent)), |state| async move {
        let (mut reader, sent) = state?;
        match reader.next_chunk(READ_CHUNK).await {
            Ok(Some(chunk)) => {
                sent.metrics.add_bytes(&sent.name, chunk.len() as u64, true);
                Some((Ok(chunk), Some((reader, sent))))
            }
            Ok(None) => {
                reader.close().await;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "a download broke off");
                Some((Err(e), None))
            }
        }
    })
}

/// HEAD: the object's info as headers.
pub async fn head(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
) -> Result<Response, ApiError> {
    let info = state.storage.stat(&Address { name, path }, &req).await?;
    let mut response = StatusCode::OK.into_response();
    info_headers(&info, response.headers_mut());
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    Ok(response)
}

/// DELETE: `204`.
pub async fn delete(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
) -> Result<StatusCode, ApiError> {
    state.storage.delete(&Address { name, path }, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_says() {
        let r = |v: &str, size: Option<u64>| parse_range(v, || size).map_err(|_| ());
        assert_eq!(r("bytes=0-9", None), Ok(Some(ByteRange { offset: 0, length: Some(10) })));
        assert_eq!(r("bytes=5-", None), Ok(Some(ByteRange { offset: 5, length: None })));
        assert_eq!(r("bytes=-3", Some(10)), Ok(Some(ByteRange { offset: 7, length: Some(3) })));
        assert_eq!(r("bytes=-30", Some(10)), Ok(Some(ByteRange { offset: 0, length: Some(10) })));
        assert!(r("bytes=9-5", None).is_err());
        assert_eq!(r("bytes=0-18446744073709551615", None), Err(()), "the length overflows");
        assert!(r("bytes=0-1,5-6", None).is_err());
        assert!(r("items=0-1", None).is_err());
        assert!(r("bytes=x-1", None).is_err());
    }
}
