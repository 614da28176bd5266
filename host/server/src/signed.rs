//! Signed, expiring download URLs for disks whose driver has no native presign:
//! `/v1/signed/{name}/{path}?expires=UNIX_SECS&id=HEX&sig=HEX`, where `sig` is an
//! HMAC-SHA256, under the host's `url_secret`, of the name, path, expiry and the URL's id.
//! Served without an API key; a tampered or expired URL is a bare `403`. The id is random per
//! URL: the ledger records the URL's issue and every download through it under that id
//! (`signed-url:ID`), since no key is used.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::errors::ApiError;
use crate::per_key::InFlight;
use crate::request::Caller;
use crate::state::AppState;

/// The message signed for one URL.
fn mac(secret: &[u8], name: &str, path: &str, expires: u64, id: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    // Lengths first, so no two (name, path) pairs give the same message.
    mac.update(format!("stowage-url-v2\n{}\n{name}\n{}\n{path}\n{expires}\n{id}", name.len(), path.len()).as_bytes());
    Some(mac)
}

/// The path and query of a signed URL for `name:path`, valid until `expires` (Unix seconds),
/// with id `id` (16 hex digits).
pub fn sign(secret: &[u8], name: &str, path: &str, expires: u64, id: &str) -> Option<String> {
    let sig = hex::encode(mac(secret, name, path, expires, id)?.finalize().into_bytes());
    Some(format!("/v1/signed/{}/{}?expires={expires}&id={id}&sig={sig}", encode(name), encode(path)))
}

/// Signs URLs under `[server] url_secret` for [`stowage_runtime::Storage::url`], with base
/// `base_url` (`public_url`, or the listen address).
pub struct HostSigner {
    /// The URL secret.
    pub secret: std::sync::Arc<[u8]>,
    /// What goes before `/v1/signed/...`.
    pub base_url: String,
}

impl stowage_runtime::UrlSigner for HostSigner {
    fn sign(
        &self,
        name: &str,
        path: &str,
        expires_in_secs: u64,
    ) -> Result<(String, String), stowage_runtime::StorageError> {
        let io = |what: String| stowage_runtime::StorageError::Io(what);
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| io(format!("no randomness for a URL id: {e}")))?;
        let id = hex::encode(bytes);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let path = sign(&self.secret, name, path, now.saturating_add(expires_in_secs), &id)
            .ok_or_else(|| io("the URL secret cannot key an HMAC".into()))?;
        Ok((format!("{}{path}", self.base_url), id))
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `sig` signs (name, path, expires) and the time has not passed.
fn valid(secret: &[u8], name: &str, path: &str, expires: u64, id: &str, sig: &str, now: u64) -> bool {
    let plain_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let (true, Some(mac), Ok(sig)) = (plain_id, mac(secret, name, path, expires, id), hex::decode(sig)) else {
        return false;
    };
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).is_ok() && now <= expires
}

/// Whether `uri` (`/v1/signed/NAME/PATH?QUERY`, percent-encoded as [`sign`] writes it) is a
/// valid signed URL at `now`, parsed as the router and handler parse it.
pub(crate) fn check_uri(secret: &[u8], uri: &str, now: u64) -> bool {
    let Ok(uri) = uri.parse::<axum::http::Uri>() else { return false };
    let Some(rest) = uri.path().strip_prefix("/v1/signed/") else { return false };
    let Some((name, path)) = rest.split_once('/') else { return false };
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
    let (Ok(name), Ok(path), Ok(Query(q))) = (decode(name), decode(path), Query::<SignedQuery>::try_from_uri(&uri))
    else {
        return false;
    };
    valid(secret, &name, &path, q.expires, &q.id, &q.sig, now)
}

/// The query of a signed URL.
#[derive(Deserialize)]
pub struct SignedQuery {
    expires: u64,
    id: String,
    sig: String,
}

/// Serves a signed URL: checks it, then answers like `GET /v1/objects/...`.
pub async fn get(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    query: Result<Query<SignedQuery>, axum::extract::rejection::QueryRejection>,
    in_flight: Option<axum::Extension<InFlight>>,
    headers: HeaderMap,
) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ok = match (&state.active.load().url_secret, &query) {
        (Some(secret), Ok(Query(q))) => valid(secret, &name, &path, q.expires, &q.id, &q.sig, now),
        _ => false,
    };
    let (true, Ok(Query(q))) = (ok, query) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    // Whoever holds the URL is anonymous: they cannot say whom or what the read is for; the
    // URL's id says which link it was.
    let mut req = stowage_runtime::Request::new();
    req.request_id = crate::request::request_of(&headers, None).request_id;
    req.actor = Some("signed-url".into());
    req.authenticated_as = Some(format!("signed-url:{}", q.id));
    let mut response =
        crate::objects::serve(state, stowage_runtime::Address { name, path }, req, &headers, in_flight.map(|e| e.0))
            .await
            .into_response();
    // A link opened in a browser downloads; the stored type is never sniffed into a page.
    let h = response.headers_mut();
    h.insert(axum::http::header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
    h.insert(axum::http::header::CONTENT_DISPOSITION, axum::http::HeaderValue::from_static("attachment"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_name_path_and_expiry() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let id = "00112233445566ff";
        let url = sign(secret, "default", "a/b.csv", 1000, id).unwrap();
        let sig = url.rsplit_once("sig=").unwrap().1;
        assert!(url.contains("&id=00112233445566ff&"), "{url}");
        assert!(valid(secret, "default", "a/b.csv", 1000, id, sig, 999));
        assert!(valid(secret, "default", "a/b.csv", 1000, id, sig, 1000));
        assert!(!valid(secret, "default", "a/b.csv", 1000, id, sig, 1001), "expired");
        assert!(!valid(secret, "default", "a/c.csv", 1000, id, sig, 0), "other path");
        assert!(!valid(secret, "scratch", "a/b.csv", 1000, id, sig, 0), "other name");
        assert!(!valid(secret, "default", "a/b.csv", 2000, id, sig, 0), "longer expiry");
        assert!(!valid(secret, "default", "a/b.csv", 1000, "00112233445566fe", sig, 0), "another id");
        assert!(!valid(b"another secret, just as long....", "default", "a/b.csv", 1000, id, sig, 0), "other secret");
        assert!(!valid(secret, "default", "a/b.csv", 1000, id, "zz", 0), "not hex");
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode("a b/ü?x=1"), "a%20b/%C3%BC%3Fx%3D1");
    }

    mod properties {
        use axum::extract::Query;
        use axum::http::Uri;
        use proptest::prelude::*;

        use super::*;

        const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

        /// The query of the URL, parsed as the handler parses it.
        fn query(uri: &str) -> Option<SignedQuery> {
            Query::<SignedQuery>::try_from_uri(&uri.parse::<Uri>().ok()?).ok().map(|q| q.0)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn a_signed_url_is_valid_until_it_expires(name in "[a-z]{1,10}", path in "[^\\x00-\\x1f]{1,40}", expires in 0u64..u64::MAX / 2, id in "[0-9a-f]{16}") {
                let url = sign(SECRET, &name, &path, expires, &id).unwrap();
                let q = query(&url).unwrap();
                prop_assert!(valid(SECRET, &name, &path, q.expires, &q.id, &q.sig, expires));
                prop_assert!(!valid(SECRET, &name, &path, q.expires, &q.id, &q.sig, expires + 1));
                // The whole URL, path decoded as the router decodes it.
                prop_assert!(check_uri(SECRET, &url, expires), "{}", url);
                prop_assert!(!check_uri(SECRET, &url, expires + 1));
                prop_assert!(!check_uri(b"another secret, just as long....", &url, 0));
            }

            #[test]
            fn a_changed_query_is_refused_unless_it_says_the_same(
                expires in 0u64..u64::MAX / 2,
                id in "[0-9a-f]{16}",
                at in any::<prop::sample::Index>(),
                with in "[ -~]",
            ) {
                let url = sign(SECRET, "default", "a/b.csv", expires, &id).unwrap();
                let start = url.find('?').unwrap() + 1;
                let at = start + at.index(url.len() - start);
                let changed = format!("{}{with}{}", &url[..at], &url[at + 1..]);
                let Some(q) = query(&changed) else { return Ok(()) };
                if valid(SECRET, "default", "a/b.csv", q.expires, &q.id, &q.sig, 0) {
                    // Only a change that means the same URL may pass (hex digits in another case).
                    let original = query(&url).unwrap();
                    prop_assert_eq!(q.expires, original.expires, "{}", changed);
                    prop_assert_eq!(&q.id, &original.id, "{}", changed);
                    prop_assert_eq!(hex::decode(&q.sig).ok(), hex::decode(&original.sig).ok(), "{}", changed);
                }
            }

            #[test]
            fn any_query_gets_an_answer(q in "[ -~]{0,120}", now in any::<u64>()) {
                if let Some(q) = query(&format!("/v1/signed/default/a?{q}")) {
                    let _ = valid(SECRET, "default", "a", q.expires, &q.id, &q.sig, now);
                }
            }
        }
    }
}

/// The query of `POST /v1/urls/{name}/{path}`.
#[derive(Deserialize)]
pub struct IssueQuery {
    /// Seconds the URL stays valid (default 3600, at most 7 days).
    expires_in_secs: Option<u64>,
}

/// `POST /v1/urls/{name}/{path}`: a download URL for the object, as `stowage url` prints it
/// (the driver's own presigned URL, else one this host signs under `url_secret`), issued
/// through the pipeline so its issue is recorded under the caller's key. Clients need no
/// secret of the host's.
pub async fn issue(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    Caller(req): Caller,
    query: Result<Query<IssueQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::bad_request("expires_in_secs must be a whole number of seconds"));
    };
    let expires = q.expires_in_secs.unwrap_or(3600);
    if !(1..=MAX_EXPIRES).contains(&expires) {
        return Err(ApiError::bad_request(format!("expires_in_secs must be 1 to {MAX_EXPIRES}")));
    }
    let active = state.active.load();
    let signer = active.url_secret.clone().map(|secret| HostSigner { secret, base_url: base_url(&active, &headers) });
    let addr = stowage_runtime::Address { name, path };
    let url = state
        .storage()
        .url(&addr, &req, expires, signer.as_ref().map(|s| s as &dyn stowage_runtime::UrlSigner))
        .await
        .map_err(|e| match (e, &signer) {
            (stowage_runtime::StorageError::Unsupported(_), None) => stowage_runtime::StorageError::Unsupported(
                "URLs for this disk: its driver cannot sign them and [server] url_secret is not set".into(),
            ),
            (e, _) => e,
        })?;
    Ok(axum::Json(serde_json::json!({ "url": url, "expires_in_secs": expires })).into_response())
}

/// The longest a URL may stay valid: 7 days.
const MAX_EXPIRES: u64 = 7 * 24 * 3600;

/// What goes before `/v1/signed/...`: `public_url`, else this request's own scheme and host
/// (a `Host` header that is not a plain host\[:port\] is not used), else the listen address.
fn base_url(active: &crate::active::Active, headers: &HeaderMap) -> String {
    if let Some(url) = &active.public_url {
        return url.clone();
    }
    let scheme = if active.tls.is_some() { "https" } else { "http" };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    match host {
        Some(host) => format!("{scheme}://{host}"),
        None => format!("{scheme}://{}", active.listen),
    }
}
