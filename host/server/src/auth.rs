//! API keys: every `/v1` request must present one (`Authorization: Bearer KEY`). Keys are
//! kept as sha256 digests and compared in constant time, every configured key every time, so
//! neither a key's content nor which key matched leaks through timing. A failure is a bare
//! `401`: no detail to help a guesser. The name of the key that matched goes with the request
//! into the ledger (`authenticated_as`), next to the actor the client claims.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::AppState;

/// The keys a client may present, with their names.
#[derive(Clone)]
pub struct ApiKeys(std::sync::Arc<[([u8; 32], String)]>);

/// Who a request authenticated as: the name of its API key, or `signed-url:ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub String);

impl ApiKeys {
    /// Keeps the digests of `keys`, (name, key) pairs.
    pub fn new(keys: &[(String, String)]) -> ApiKeys {
        ApiKeys(keys.iter().map(|(name, k)| (Sha256::digest(k.as_bytes()).into(), name.clone())).collect())
    }

    /// The name of the key `presented` is, if it is one. Every key is compared, in constant
    /// time, whichever matches.
    pub fn find(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (i, (key, _)) in self.0.iter().enumerate() {
            let hit = key.ct_eq(&digest);
            // Select without branching on the secret comparison.
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        bool::from(found).then(|| self.0.get(index as usize).map(|(_, name)| name.as_str())).flatten()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys.
    pub fn allows(&self, presented: &[u8]) -> bool {
        self.find(presented).is_some()
    }
}

/// Middleware: lets the request through only with a valid key.
pub async fn require_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        // The scheme is case-insensitive (RFC 9110).
        .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case(b"bearer ")).map(|_| &v[7..]));
    let who = presented.and_then(|key| state.active.load().keys.find(key).map(|name| Authenticated(name.to_string())));
    match who {
        Some(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        None => {
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
    fn only_configured_keys_are_allowed_and_named() {
        let a = "a".repeat(32);
        let keys = ApiKeys::new(&[("web-1".into(), a.clone()), ("web-2".into(), "b".repeat(40))]);
        assert_eq!(keys.find(a.as_bytes()), Some("web-1"));
        assert_eq!(keys.find("b".repeat(40).as_bytes()), Some("web-2"));
        assert!(!keys.allows("a".repeat(31).as_bytes()));
        // Same length, one byte different (first, middle, last).
        for at in [0, 16, 31] {
            let mut near = a.clone().into_bytes();
            near[at] = b'c';
            assert!(!keys.allows(&near), "differs at byte {at}");
        }
        assert!(!keys.allows(b""));
    }
}
