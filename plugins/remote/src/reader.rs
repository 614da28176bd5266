//! Reads: one GET (with `Range` when asked) whose body stream the host reads directly, so the
//! bytes never pass through the driver.

use std::cell::RefCell;

use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestReader;
use stowage_plugin_sdk::driver::stowage::storage::types::{ByteRange, Error, ObjectInfo};
use stowage_plugin_sdk::wasip2::http::types::Method;
use stowage_plugin_sdk::wasip2::io::streams::InputStream;

use crate::api::{Api, info_from_headers};
use crate::error::{Op, from_failure};
use crate::http::Body;

pub struct RemoteReader {
    body: RefCell<Option<Body>>,
    path: String,
}

impl RemoteReader {
    /// A reader of nothing (an empty range).
    pub fn empty(path: &str) -> RemoteReader {
        RemoteReader { body: RefCell::new(None), path: path.to_string() }
    }
}

/// `bytes A-B/TOTAL` → TOTAL.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

/// Opens the object (or `range` of it). `Ok(None)` when the services host says the range is
/// unsatisfiable, which the caller sorts out (a range starting at the end is empty, not wrong).
pub fn open(api: &Api, path: &str, range: Option<ByteRange>) -> Result<Option<(RemoteReader, ObjectInfo)>, Error> {
    let op = Op { what: "read", path };
    let mut extra = Vec::new();
    if let Some(r) = range {
        let value = match r.length {
            Some(len) => format!("bytes={}-{}", r.offset, r.offset.saturating_add(len).saturating_sub(1)),
            None => format!("bytes={}-", r.offset),
        };
        extra.push(("range".to_string(), value));
    }
    let target = api.object(path);
    let response = api.call(op, Method::Get, &target, &extra, &[], &[200, 206, 416]);
    let response = match response {
        Ok(r) if r.status == 416 => return Ok(None),
        Ok(r) => r,
        Err(e) => return Err(e),
    };
    let length = response.header("content-length").and_then(|v| v.parse::<u64>().ok());
    let size = match response.status {
        206 => response.header("content-range").and_then(total_of),
        _ => length,
    }
    .ok_or_else(|| Error::Io(format!("the services host's answer for `{path}` gave no size")))?;
    let info = info_from_headers(path, &response, size);
    let body = response.body().map_err(|f| from_failure(op, f))?;
    Ok(Some((RemoteReader { body: RefCell::new(Some(body)), path: path.to_string() }, info)))
}

/// `stat` through HEAD.
pub fn head(api: &Api, path: &str) -> Result<ObjectInfo, Error> {
    let op = Op { what: "stat", path };
    let response = api.call(op, Method::Head, &api.object(path), &[], &[], &[200])?;
    let size = response
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Io(format!("the services host's answer for `{path}` gave no size")))?;
    Ok(info_from_headers(path, &response, size))
}

impl GuestReader for RemoteReader {
    fn source(&self) -> Option<InputStream> {
        self.body.borrow_mut().as_mut().and_then(Body::take_stream)
    }

    fn read(&self, max: u64) -> Result<Vec<u8>, Error> {
        let mut body = self.body.borrow_mut();
        let Some(body) = body.as_mut() else { return Ok(Vec::new()) };
        match body.read(max.min(1 << 20)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Ok(Vec::new()),
            Err(f) => Err(from_failure(Op { what: "read", path: &self.path }, f)),
        }
    }
}
