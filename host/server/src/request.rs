//! Who is asking: the request id (from `x-request-id`, or made here), carried into logs, the
//! ledger and the response; the actor and cohort the calling host vouches for.

use axum::extract::Request as HttpRequest;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use stowage_runtime::Request;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The person or service a request is for (recorded in the ledger).
const ACTOR: &str = "x-stowage-actor";
/// The cohort a request is for (request metadata `cohort`).
const COHORT: &str = "x-stowage-cohort";

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
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// The storage request for an HTTP request's headers.
pub fn request_of(headers: &HeaderMap) -> Request {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut req = Request::new();
    if let Some(id) = text(REQUEST_ID.as_str()).filter(|id| acceptable(id)) {
        req.request_id = id;
    }
    req.actor = text(ACTOR);
    if let Some(cohort) = text(COHORT) {
        req.metadata.push(("cohort".into(), cohort));
    }
    req
}
