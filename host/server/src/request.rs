//! Who is asking: the request id (from `x-request-id`, or made here), carried into logs, the
//! ledger and the response; the actor and cohort the calling host vouches for.

use axum::extract::Request as HttpRequest;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use stowage_runtime::Request;

use crate::keys::Authenticated;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static(stowage_api::header::REQUEST_ID);
use stowage_api::header::{ACTOR, COHORT, PURPOSE};

/// A client's id is kept if it is short and plain; anything else is replaced.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Middleware: gives every request an id and returns it in the response.
pub async fn with_request_id(mut request: HttpRequest, next: Next) -> Response {
    let kept = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| acceptable(id)).is_some();
    if !kept {
        let id = Request::new().request_id;
        if let Ok(v) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(REQUEST_ID, v);
        }
    }
    let id = request.headers().get(&REQUEST_ID).cloned();
    // Everything the request logs, down to the runtime, carries its id. (Never the path: it
    // may name a patient.)
    let span = tracing::info_span!("request", id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"), method = %request.method());
    let started = std::time::Instant::now();
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    // The access log (at `info`): status and time to the answer's head, in the request's span.
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), ms = started.elapsed().as_secs_f64() * 1e3, "answered")
    });
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// The storage request for an HTTP request's headers, authenticated as `who`.
pub fn request_of(headers: &HeaderMap, who: Option<&Authenticated>) -> Request {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut req = Request::new();
    if let Some(id) = text(REQUEST_ID.as_str()).filter(|id| acceptable(id)) {
        req.request_id = id;
    }
    req.actor = text(ACTOR);
    req.authenticated_as = who.map(|w| w.0.clone());
    if let Some(cohort) = text(COHORT) {
        req.metadata.push(("cohort".into(), cohort));
    }
    if let Some(purpose) = text(PURPOSE) {
        req.metadata.push(("purpose".into(), purpose));
    }
    req
}

/// The storage request of an HTTP request (an extractor): its headers, and the key the
/// request authenticated with.
pub struct Caller(pub Request);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Caller, Self::Rejection> {
        Ok(Caller(request_of(&parts.headers, parts.extensions.get::<Authenticated>())))
    }
}
