//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document (`openapi.json` beside this crate's
//! sources), served as written. A test keeps it and the router equal.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The document.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Serves it.
pub async fn document() -> Response {
    let mut r = DOCUMENT.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
