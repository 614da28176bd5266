//! The services host's API as this driver uses it: where each request goes, the headers that
//! carry who is asking, retries, and object info read back from headers or JSON.

use std::sync::OnceLock;
use std::time::Instant;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
pub use stowage_api::InfoJson;
pub use stowage_api::header::SHA256;
use stowage_api::header::{ACTOR, COHORT, META_PREFIX, MODIFIED_MS, PURPOSE, REQUEST_ID};
use stowage_api::route;
use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ObjectInfo, RequestContext};
use stowage_plugin_sdk::wasip2::http::types::Method;

use crate::error::{Op, from_failure, from_response, retryable};
use crate::http::{Failure, Response, send};
use crate::settings::Settings;

/// Characters left as they are in a path segment or query value.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The instance's settings, or why they are unusable.
pub fn settings() -> Result<&'static Settings, Error> {
    static SETTINGS: OnceLock<Result<Settings, Error>> = OnceLock::new();
    SETTINGS.get_or_init(Settings::load).as_ref().map_err(Clone::clone)
}

/// One operation's view of the services host: where to, and on whose behalf.
pub struct Api {
    pub settings: &'static Settings,
    /// The storage name on the services host.
    name: String,
    headers: Vec<(String, String)>,
}

/// Whether `value` can travel as an HTTP header value unchanged.
fn header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value
}

impl Api {
    pub fn new(ctx: &RequestContext) -> Result<Api, Error> {
        let settings = settings()?;
        let name = settings.name.clone().or_else(|| ctx.class.clone()).unwrap_or_else(|| "default".into());
        let mut headers = vec![(REQUEST_ID.to_string(), ctx.request_id.clone())];
        if let Some(actor) = &ctx.actor {
            headers.push((ACTOR.into(), actor.clone()));
        }
        if let Some((_, cohort)) = ctx.metadata.iter().find(|(k, _)| k == "cohort") {
            headers.push((COHORT.into(), cohort.clone()));
        }
        if let Some((_, purpose)) = ctx.metadata.iter().find(|(k, _)| k == "purpose") {
            headers.push((PURPOSE.into(), purpose.clone()));
        }
        if let Some((name, _)) = headers.iter().find(|(_, v)| !header_safe(v)) {
            return Err(Error::Unsupported(format!("`{name}` must be printable ASCII to reach the services host")));
        }
        Ok(Api { settings, name, headers })
    }

    /// `/v1/objects/NAME/PATH`, percent-encoded.
    pub fn object(&self, path: &str) -> String {
        format!("{}/{}/{}", route::OBJECTS, encode(&self.name), encode_path(path))
    }

    /// `/v1/uploads/NAME/PATH`.
    pub fn uploads(&self, path: &str) -> String {
        format!("{}/{}/{}", route::UPLOADS, encode(&self.name), encode_path(path))
    }

    /// `/v1/list/NAME?...`.
    pub fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> String {
        let mut url = format!("{}/{}?prefix={}&limit={limit}", route::LIST, encode(&self.name), encode(prefix));
        if let Some(c) = cursor {
            url.push_str("&cursor=");
            url.push_str(&encode(c));
        }
        url
    }

    /// The request's own headers plus `extra`.
    pub fn headers(&self, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        h.extend_from_slice(extra);
        h
    }

    /// Sends a request with a small body, trying again (after a growing, jittered wait) while
    /// the services host is unreachable or busy. `expect` lists the success statuses; any
    /// other becomes the contract's error.
    pub fn call(
        &self,
        op: Op<'_>,
        method: Method,
        target: &str,
        extra: &[(String, String)],
        body: &[u8],
        expect: &[u16],
    ) -> Result<Response, Error> {
        self.retrying(|| self.call_once(op, method.clone(), target, extra, body, expect))
    }

    /// One attempt of [`Api::call`].
    pub fn call_once(
        &self,
        op: Op<'_>,
        method: Method,
        target: &str,
        extra: &[(String, String)],
        body: &[u8],
        expect: &[u16],
    ) -> Result<Response, Error> {
        let response =
            send(self.settings, method, target, &self.headers(extra), body).map_err(|f| from_failure(op, f))?;
        if expect.contains(&response.status) { Ok(response) } else { Err(from_response(op, response)) }
    }

    /// Runs `attempt` while it fails with a retryable error: at most `max_attempts` times, and
    /// none starting later than `retry_budget_ms` after the first.
    pub fn retrying<T>(&self, mut attempt: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
        let started = Instant::now();
        let mut n = 1;
        loop {
            match attempt() {
                Err(e) if retryable(&e) && self.may_retry(n, started) => {
                    n += 1;
                    sleep(self.settings.backoff_before(n));
                }
                Err(Error::Unavailable(mut u)) if u.retryable && n > 1 => {
                    u.reason = format!("{} (after {n} attempts)", u.reason);
                    return Err(Error::Unavailable(u));
                }
                other => return other,
            }
        }
    }

    /// Whether attempt `n + 1` may start (its backoff included).
    pub fn may_retry(&self, n: u32, started: Instant) -> bool {
        n < self.settings.max_attempts
            && started.elapsed() + self.settings.backoff_before(n + 1) <= self.settings.retry_budget
    }

    /// Sends a request that must not be applied twice (it opens or commits something): tried
    /// again only when nothing was sent (the connection was refused) or the services host
    /// answered that it is busy (`503`, done nothing).
    pub fn call_not_twice(
        &self,
        op: Op<'_>,
        method: Method,
        target: &str,
        extra: &[(String, String)],
        expect: &[u16],
    ) -> Result<Response, Error> {
        let headers = self.headers(extra);
        let started = Instant::now();
        let mut n = 1;
        loop {
            let outcome = send(self.settings, method.clone(), target, &headers, &[]);
            let again = match &outcome {
                Err(Failure::NotSent(_)) => true,
                Ok(r) => r.status == 503,
                Err(_) => false,
            };
            if !again || !self.may_retry(n, started) {
                return match outcome {
                    Ok(r) if expect.contains(&r.status) => Ok(r),
                    Ok(r) => Err(from_response(op, r)),
                    Err(f) => Err(from_failure(op, f)),
                };
            }
            n += 1;
            sleep(self.settings.backoff_before(n));
        }
    }
}

pub fn sleep(d: std::time::Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    stowage_plugin_sdk::wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The user metadata of a write, as headers; values HTTP cannot carry unchanged are refused.
pub fn metadata_headers(metadata: &[(String, String)]) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for (k, v) in metadata {
        if k.is_empty()
            || !k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            || !header_safe(v)
        {
            return Err(Error::Unsupported(format!(
                "metadata `{}` cannot travel to the services host: keys are a-z, 0-9, `-`, `_` and values printable ASCII without surrounding spaces",
                k.escape_debug()
            )));
        }
        out.push((format!("{META_PREFIX}{k}"), v.clone()));
    }
    Ok(out)
}

/// An object's info from the headers of a HEAD or GET answer; `size` is given by the caller
/// (a ranged GET's length is not the object's).
pub fn info_from_headers(path: &str, response: &Response, size: u64) -> ObjectInfo {
    let mut metadata: Vec<(String, String)> = response
        .headers()
        .filter_map(|(k, v)| k.to_ascii_lowercase().strip_prefix(META_PREFIX).map(|k| (k.to_string(), v.to_string())))
        .collect();
    metadata.sort();
    ObjectInfo {
        path: path.to_string(),
        size,
        sha256: response.header(SHA256).map(str::to_string),
        content_type: response.header("content-type").map(str::to_string),
        modified: response.header(MODIFIED_MS).and_then(|v| v.parse().ok()),
        etag: response.header("etag").map(|e| e.trim_matches('"').to_string()),
        metadata,
    }
}

/// An object's info as the services host writes it in JSON (a write's answer, a list item).
pub fn info(j: InfoJson) -> ObjectInfo {
    ObjectInfo {
        path: j.path,
        size: j.size,
        sha256: j.sha256,
        content_type: j.content_type,
        modified: j.modified_ms,
        etag: j.etag,
        metadata: j.metadata.into_iter().collect(),
    }
}

/// Reads a JSON answer of at most `max` bytes.
pub fn json<T: serde::de::DeserializeOwned>(op: Op<'_>, response: Response, max: usize) -> Result<T, Error> {
    let bytes = response.bytes(max).map_err(|f| from_failure(op, f))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Io(format!(
            "the services host's answer to {} `{}` is not what this driver understands: {e}",
            op.what, op.path
        ))
    })
}
