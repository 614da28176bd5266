//! The one place storage errors become HTTP responses: a status and a JSON body
//! `{"error": kind, "message": text}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stowage_api::ErrorKind;
use stowage_runtime::StorageError;

/// The header that names a failure's kind (as the JSON body's `error` does).
pub const ERROR_KIND: axum::http::HeaderName = axum::http::HeaderName::from_static(stowage_api::header::ERROR_KIND);

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
}

impl ApiError {
    /// Whether trying again later may succeed (the backend or the ledger was away).
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::AuditUnavailable)
    }

    /// A client over one of its limits (`429`, retry later).
    pub fn too_many(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, kind: ErrorKind::TooManyRequests, message: message.into() }
    }

    /// A route or session that does not exist.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, kind: ErrorKind::NotFound, message: message.into() }
    }

    /// An answer with its own status (a protocol's: tus's `412`, `415`, `460`).
    pub fn with_status(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into() }
    }

    /// A bad request the storage layer never saw (a malformed header, say).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, kind: ErrorKind::BadRequest, message: message.into() }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        let status = match &e {
            StorageError::NotFound(_) | StorageError::UnknownName(_) => StatusCode::NOT_FOUND,
            StorageError::AlreadyExists(_) => StatusCode::PRECONDITION_FAILED,
            StorageError::Denied(_) => StatusCode::FORBIDDEN,
            StorageError::InvalidPath(_) | StorageError::BadAddress(_) | StorageError::DigestMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            StorageError::InvalidRange(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            StorageError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            StorageError::Unavailable { .. } | StorageError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StorageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StorageError::QuotaExceeded { .. } | StorageError::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            StorageError::Io(_) | StorageError::PluginFault { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, kind: e.kind(), message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retryable = self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS;
        // The host's own failures are logged in full (in the request's span, with its id) and
        // told to the client without engine or backend detail. A full disk says so.
        let message = if self.status.is_server_error()
            && self.status != StatusCode::SERVICE_UNAVAILABLE
            && self.status != StatusCode::INSUFFICIENT_STORAGE
        {
            tracing::error!(kind = self.kind.as_str(), detail = %self.message, "request failed");
            "the host failed; its log has the detail under this request's x-request-id".to_string()
        } else {
            self.message
        };
        let mut response =
            (self.status, Json(stowage_api::Problem { error: self.kind.to_string(), message })).into_response();
        // The kind in a header too: a HEAD answer has no body.
        response.headers_mut().insert(ERROR_KIND, HeaderValue::from_static(self.kind.as_str()));
        if retryable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Middleware: the answers axum's extractors give for a request they cannot take (a query,
/// path or body of the wrong shape) are plain text; they become this API's JSON errors.
pub async fn json_rejections(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let plain = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(response.status().is_client_error() && plain && !response.headers().contains_key(ERROR_KIND)) {
        return response;
    }
    let status = response.status();
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let kind = if status == StatusCode::NOT_FOUND { ErrorKind::NotFound } else { ErrorKind::BadRequest };
    ApiError { status, kind, message: text }.into_response()
}
