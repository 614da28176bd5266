//! Signed, expiring download URLs for disks whose driver has no native presign:
//! `/v1/signed/{name}/{path}?expires=UNIX_SECS&sig=HEX`, where `sig` is an HMAC-SHA256, under
//! the host's `url_secret`, of the name, path and expiry. Served without an API key; a tampered
//! or expired URL is a bare `403`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::AppState;

/// The message signed for one URL.
fn mac(secret: &[u8], name: &str, path: &str, expires: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    // Lengths first, so no two (name, path) pairs give the same message.
    mac.update(format!("stowage-url-v1\n{}\n{name}\n{}\n{path}\n{expires}", name.len(), path.len()).as_bytes());
    Some(mac)
}

/// The path and query of a signed URL for `name:path`, valid until `expires` (Unix seconds).
pub fn sign(secret: &[u8], name: &str, path: &str, expires: u64) -> Option<String> {
    let sig = hex::encode(mac(secret, name, path, expires)?.finalize().into_bytes());
    Some(format!("/v1/signed/{}/{}?expires={expires}&sig={sig}", encode(name), encode(path)))
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
fn valid(secret: &[u8], name: &str, path: &str, expires: u64, sig: &str, now: u64) -> bool {
    let (Some(mac), Ok(sig)) = (mac(secret, name, path, expires), hex::decode(sig)) else { return false };
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).is_ok() && now <= expires
}

/// The query of a signed URL.
#[derive(Deserialize)]
pub struct SignedQuery {
    expires: u64,
    sig: String,
}

/// Serves a signed URL: checks it, then answers like `GET /v1/objects/...`.
pub async fn get(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    query: Result<Query<SignedQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ok = match (&state.url_secret, &query) {
        (Some(secret), Ok(Query(q))) => valid(secret, &name, &path, q.expires, &q.sig, now),
        _ => false,
    };
    if !ok {
        return StatusCode::FORBIDDEN.into_response();
    }
    // Whoever holds the URL is anonymous: they cannot say whom the read is for.
    let mut headers = headers;
    for name in ["x-stowage-actor", "x-stowage-cohort"] {
        headers.remove(name);
    }
    headers.insert("x-stowage-actor", axum::http::HeaderValue::from_static("signed-url"));
    let mut response = crate::objects::get(State(state), Path((name, path)), headers).await.into_response();
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
        let url = sign(secret, "default", "a/b.csv", 1000).unwrap();
        let sig = url.rsplit_once("sig=").unwrap().1;
        assert!(valid(secret, "default", "a/b.csv", 1000, sig, 999));
        assert!(valid(secret, "default", "a/b.csv", 1000, sig, 1000));
        assert!(!valid(secret, "default", "a/b.csv", 1000, sig, 1001), "expired");
        assert!(!valid(secret, "default", "a/c.csv", 1000, sig, 0), "other path");
        assert!(!valid(secret, "scratch", "a/b.csv", 1000, sig, 0), "other name");
        assert!(!valid(secret, "default", "a/b.csv", 2000, sig, 0), "longer expiry");
        assert!(!valid(b"another secret, just as long....", "default", "a/b.csv", 1000, sig, 0), "other secret");
        assert!(!valid(secret, "default", "a/b.csv", 1000, "zz", 0), "not hex");
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode("a b/ü?x=1"), "a%20b/%C3%BC%3Fx%3D1");
    }
}
