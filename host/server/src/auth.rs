//! API keys: every `/v1` request must present one (`Authorization: Bearer KEY`). Keys are
//! kept as sha256 digests and compared in constant time, every configured key every time, so
//! neither a key's content nor which key matched leaks through timing. A failure is a bare
//! `401`: no detail to help a guesser.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::AppState;

/// The keys a client may present.
#[derive(Clone)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    /// Keeps the digests of `keys`.
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys(keys.iter().map(|k| Sha256::digest(k.as_bytes()).into()).collect())
    }

    /// Whether `presented` is one of the keys.
    pub fn allows(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        for key in &self.0 {
            found |= key.ct_eq(&digest);
        }
        found.into()
    }
}

/// Middleware: lets the request through only with a valid key.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        // The scheme is case-insensitive (RFC 9110).
        .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case(b"bearer ")).map(|_| &v[7..]));
    match presented {
        Some(key) if state.keys.allows(key) => next.run(request).await,
        _ => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_are_allowed() {
        let keys = ApiKeys::new(&["a".repeat(32), "b".repeat(40)]);
        assert!(keys.allows("a".repeat(32).as_bytes()));
        assert!(keys.allows("b".repeat(40).as_bytes()));
        assert!(!keys.allows("a".repeat(31).as_bytes()));
        assert!(!keys.allows(b""));
    }
}
