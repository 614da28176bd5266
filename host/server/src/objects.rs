//! `/v1/objects/{name}/{path}`: PUT, GET (with `Range`), HEAD and DELETE, with raw streaming
//! bodies. Metadata travels as headers: `content-type`, `x-stowage-meta-*`, `x-stowage-sha256`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use stowage_runtime::{Address, ByteRange, ObjectInfo, ObjectReader, StorageError, WriteOptions};

use crate::counters::Counters;
use crate::errors::ApiError;
use crate::per_key::InFlight;
use crate::request::Caller;
use crate::state::AppState;

use stowage_api::header::{FALLBACK, META_PREFIX, MODIFIED_MS, SHA256};

/// Bytes per chunk read from a driver for a response body.
const READ_CHUNK: usize = 1 << 20;
/// Objects up to this size are read whole and answered in one piece (see `inline_body`).
const INLINE_MAX: usize = 64 << 10;

/// An object's info as JSON.
pub fn info_json(info: &ObjectInfo) -> stowage_api::InfoJson {
    stowage_api::InfoJson {
        path: info.path.clone(),
        size: info.size,
        sha256: info.sha256.clone(),
        content_type: info.content_type.clone(),
        modified_ms: info.modified,
        etag: info.etag.clone(),
        metadata: info.metadata.iter().cloned().collect(),
        fallback: info.fallback.clone(),
    }
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
        Some(other) => {
            return Err(ApiError::bad_request(format!("If-None-Match: only `*` is supported, not `{other}`")));
        }
    };
    Ok(WriteOptions {
        // An empty Content-Type says nothing: the object has none (and is served as octets).
        content_type: text_header(headers, header::CONTENT_TYPE)?.filter(|t| !t.trim().is_empty()).map(str::to_string),
        metadata,
        create_only,
    })
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
    let mut upload = state.storage().writer(&addr, &req, &options).await?;
    let mut stream = body.into_data_stream();
    loop {
        let idle = state.tuning.body_idle;
        let written = match tokio::time::timeout(idle, stream.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(bytes))) => upload.write(bytes).await,
            Ok(Some(Err(e))) => Err(StorageError::Io(format!("the request body broke off: {e}"))),
            Err(_) => Err(StorageError::Io(format!("the request body stalled for {} s", idle.as_secs()))),
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
    let mut response = (StatusCode::OK, Json(info_json(&info))).into_response();
    if let Some(fallback) = info.fallback.as_deref().and_then(|f| HeaderValue::from_str(f).ok()) {
        response.headers_mut().insert(HeaderName::from_static(FALLBACK), fallback);
    }
    Ok(response)
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
        set(HeaderName::from_static(MODIFIED_MS), &ms.to_string());
    }
    if let Some(fallback) = &info.fallback {
        set(HeaderName::from_static(FALLBACK), fallback);
    }
    for (k, v) in &info.metadata {
        if let Ok(name) = HeaderName::from_bytes(format!("{META_PREFIX}{k}").as_bytes()) {
            set(name, v);
        }
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// A `Range: bytes=...` header as a byte range; `None` for the whole object. A header this
/// host does not serve (another unit, several ranges, not a range at all) is ignored, as HTTP
/// lets a server do: the answer is the whole object. A range whose end lies before its start,
/// or that overflows, is a bad request.
pub(crate) fn parse_range(value: &str, size: impl FnOnce() -> Option<u64>) -> Result<Option<ByteRange>, ApiError> {
    let Some(spec) = value.trim().strip_prefix("bytes=").filter(|s| !s.contains(',')) else { return Ok(None) };
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    let bad = || ApiError::bad_request(format!("Range: `{value}` is not a byte range this object can have"));
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let Some(n) = number(suffix) else { return Ok(None) };
            let Some(size) = size() else { return Ok(None) };
            ByteRange { offset: size.saturating_sub(n), length: Some(n.min(size)) }
        }
        (from, "") => match number(from) {
            Some(offset) => ByteRange { offset, length: None },
            None => return Ok(None),
        },
        (from, to) => {
            let (Some(from), Some(to)) = (number(from), number(to)) else { return Ok(None) };
            // `to` may lie past the end (the driver stops there); the end, `to + 1`, may not
            // overflow (so `offset + length` never does).
            let length = to.checked_add(1).filter(|_| to >= from).map(|end| end - from).ok_or_else(bad)?;
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
    in_flight: Option<axum::Extension<InFlight>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, Address { name, path }, req, &headers, in_flight.map(|e| e.0)).await
}

/// Answers a GET of `addr` for `req` (also for signed URLs).
pub(crate) async fn serve(
    state: AppState,
    addr: Address,
    req: stowage_runtime::Request,
    headers: &HeaderMap,
    in_flight: Option<InFlight>,
) -> Result<Response, ApiError> {
    // One set for the whole answer, even if a reload swaps another in meanwhile.
    let storage = state.storage();
    let range = match text_header(headers, header::RANGE)? {
        None => None,
        Some(value) if value.trim_start().starts_with("bytes=-") && value.len() > 7 => {
            let size = storage.stat(&addr, &req).await?.size;
            parse_range(value, || Some(size))?
        }
        Some(value) => parse_range(value, || None)?,
    };
    let reader = storage.reader(&addr, &req, range).await?;
    let info = reader.info().clone();
    let length = reader.remaining();
    if range.is_some() && length == 0 {
        // Nothing of the object lies in the range (at its end, or an empty object): the JSON
        // error every failure has, with the size in Content-Range.
        let message = format!("the range asks for bytes past the end of `{}` (size {})", addr.path, info.size);
        let mut response = ApiError::from(StorageError::InvalidRange(message)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(response);
    }
    let sent = Sent { metrics: state.metrics.clone(), name: crate::metrics::label_name(&state, &addr.name), in_flight };
    let body = if length <= INLINE_MAX as u64 {
        inline_body(reader, sent).await?
    } else {
        Body::from_stream(body_stream(&state, reader, sent))
    };
    let mut response = Response::new(body);
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

/// Where a download's bytes are counted, and its place among its credential's requests.
struct Sent {
    metrics: std::sync::Arc<Counters>,
    name: String,
    in_flight: Option<InFlight>,
}

/// A small object's bytes, read whole before the answer starts: no reading task and queue
/// per download, and the driver's instance is free before the first byte is sent.
async fn inline_body(mut reader: ObjectReader, sent: Sent) -> Result<Body, StorageError> {
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = reader.next_chunk(INLINE_MAX).await? {
        if bytes.is_empty() && reader.remaining() == 0 {
            reader.close().await;
            sent.metrics.add_bytes(&sent.name, chunk.len() as u64, true);
            return Ok(Body::from(chunk));
        }
        bytes.extend_from_slice(&chunk);
    }
    reader.close().await;
    sent.metrics.add_bytes(&sent.name, bytes.len() as u64, true);
    Ok(Body::from(bytes.freeze()))
}

/// The object's bytes, a chunk at a time, read from the driver on the storage work threads
/// and handed to the connection through a queue of two chunks. A client that stops reading
/// fills the queue: past `send_stall`, the download is given up, which releases the driver's
/// instance and ends the response with an error (hyper then closes the connection).
fn body_stream(
    state: &AppState,
    mut reader: ObjectReader,
    sent: Sent,
) -> impl futures::Stream<Item = Result<bytes::Bytes, StorageError>> + use<> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, StorageError>>(2);
    let stall = state.tuning.send_stall;
    state.work.spawn(async move {
        let _in_flight = sent.in_flight;
        loop {
            let next = match reader.next_chunk(READ_CHUNK).await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => {
                    reader.close().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a download broke off");
                    Err(e)
                }
            };
            let n = next.as_ref().map_or(0, |c| c.len() as u64);
            let failed = next.is_err();
            match tokio::time::timeout(stall, tx.send(next)).await {
                Ok(Ok(())) => sent.metrics.add_bytes(&sent.name, n, true),
                // The client went away.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(secs = stall.as_secs(), "a client stopped reading a download; it is dropped");
                    // Dropping the reader releases the driver's instance; the queue's end
                    // with no last chunk cuts the response short.
                    return;
                }
            }
            if failed {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}

/// HEAD: the object's info as headers.
pub async fn head(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
) -> Result<Response, ApiError> {
    let info = state.storage().stat(&Address { name, path }, &req).await?;
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
    state.storage().delete(&Address { name, path }, &req).await?;
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
        assert!(r("bytes=9-5", None).is_err(), "the end before the start");
        assert_eq!(r("bytes=0-18446744073709551615", None), Err(()), "the length overflows");
        // What this host does not serve is ignored: the whole object.
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-1",
            "",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(r(ignored, Some(10)), Ok(None), "{ignored:?}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn r(v: &str, size: Option<u64>) -> Result<Option<ByteRange>, ()> {
            parse_range(v, || size).map_err(|_| ())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_header_gets_an_answer(v in any::<String>(), size in any::<Option<u64>>()) {
                if let Ok(Some(range)) = r(&v, size) {
                    prop_assert!(v.trim().starts_with("bytes="));
                    if let Some(len) = range.length {
                        prop_assert!(range.offset.checked_add(len).is_some(), "{v:?} {range:?}");
                    }
                }
            }

            #[test]
            fn a_closed_range_is_its_bytes_and_a_reversed_one_is_refused(a in any::<u64>(), b in any::<u64>(), pad in "[ ]{0,2}") {
                let got = r(&format!("{pad}bytes={a}-{b}{pad}"), None);
                if a <= b && b < u64::MAX {
                    prop_assert_eq!(got, Ok(Some(ByteRange { offset: a, length: Some(b - a + 1) })));
                } else {
                    prop_assert_eq!(got, Err(()));
                }
            }

            #[test]
            fn a_suffix_range_is_the_last_bytes_within_the_object(n in any::<u64>(), size in any::<u64>()) {
                let got = r(&format!("bytes=-{n}"), Some(size)).unwrap().unwrap();
                let len = got.length.unwrap();
                prop_assert_eq!(len, n.min(size));
                prop_assert_eq!(got.offset + len, size);
            }

            #[test]
            fn an_open_range_runs_to_the_end(a in any::<u64>()) {
                prop_assert_eq!(r(&format!("bytes={a}-"), None), Ok(Some(ByteRange { offset: a, length: None })));
            }

            #[test]
            fn several_ranges_or_other_units_are_the_whole_object(a in 0u64..1000, b in 0u64..1000, unit in "[a-z]{1,6}") {
                prop_assert_eq!(r(&format!("bytes={a}-{b},{b}-"), Some(10)), Ok(None));
                if unit != "bytes" {
                    prop_assert_eq!(r(&format!("{unit}={a}-{b}"), Some(10)), Ok(None));
                }
            }
        }
    }
}
