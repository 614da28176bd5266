//! API keys: every `/v1` request must present one (`Authorization: Bearer KEY`), checked
//! against the keys of the set in force (`keys.rs`). A failure is a bare `401`: no detail to
//! help a guesser.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::keys::Authenticated;
use crate::state::AppState;

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
