//! S3 failures as the contract's errors, in one place. Messages name the disk and the object
//! path, never credentials.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::wasip2::http::types::ErrorCode;

/// What was being done, for the message.
pub struct Op<'a> {
    pub disk: &'a str,
    pub path: &'a str,
    pub what: &'static str,
}

/// The host's wasi:http hook refused the request: it was not for the disk's granted endpoint.
pub fn host_refused(disk: &str) -> Error {
    Error::Denied(format!(
        "disk `{disk}`: the host refused the request: the driver's `endpoint` is not the disk's granted endpoint"
    ))
}

pub use stowage_plugin_sdk::unavailable;

/// Whether a request the SDK could not send was refused by the host: wasi:http's
/// `HttpRequestDenied`, the host's answer to a request outside the disk's granted endpoint.
///
/// Told by its text, as no typed path reaches the code: aws-smithy-wasm 0.2 sends with wstd,
/// whose errors are `anyhow::Error`, and boxes them into the `ConnectorError` with
/// `into_boxed_dyn_error`. The box holds anyhow's private wrapper of the `ErrorCode`: it cannot
/// be downcast to `ErrorCode`, and its `source()` skips the code (it forwards to the code's own
/// source, none). Its text is the code's, so each error along `source()` is compared with the
/// text of `ErrorCode::HttpRequestDenied` itself. (The reader sends with wasi:http directly and
/// matches the code.)
fn refused_by_host(failure: &(dyn std::error::Error + 'static)) -> bool {
    let denied = ErrorCode::HttpRequestDenied.to_string();
    std::iter::successors(Some(failure), |e| e.source()).any(|e| e.to_string() == denied)
}

/// Maps an HTTP status and S3 error code (from an SDK error or a raw response).
pub fn from_status(op: &Op<'_>, status: u16, code: Option<&str>, message: Option<&str>) -> Error {
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => format!("HTTP {status}"),
    };
    match (status, code) {
        (_, Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) | (404, None) => Error::NotFound(op.path.to_string()),
        (_, Some("NoSuchBucket")) => Error::Io(format!("disk `{}`: the bucket does not exist ({detail})", op.disk)),
        (412, _) | (_, Some("PreconditionFailed")) => Error::AlreadyExists(op.path.to_string()),
        (401 | 403, _) => Error::Denied(format!(
            "disk `{}`: the S3 server refused the request to {} `{}` ({detail}); check the disk's credentials and bucket policy",
            op.disk, op.what, op.path
        )),
        (416, _) => Error::InvalidRange(format!("{} ({detail})", op.path)),
        // Not a passing state: retrying never helps, so never `unavailable`.
        (501, _) | (_, Some("NotImplemented")) => Error::Unsupported(format!(
            "disk `{}`: the S3 server does not implement the request to {} `{}` ({detail})",
            op.disk, op.what, op.path
        )),
        (429 | 500..=599, _) | (_, Some("SlowDown" | "RequestTimeout")) => {
            unavailable(format!("disk `{}`: the S3 server could not {} `{}` now ({detail})", op.disk, op.what, op.path))
        }
        _ => Error::Io(format!("disk `{}`: {} `{}` failed ({detail})", op.disk, op.what, op.path)),
    }
}

/// Maps an SDK failure (after the SDK's own retries).
pub fn from_sdk<E, R>(op: &Op<'_>, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + RawStatus,
{
    match &e {
        SdkError::ServiceError(service) => {
            from_status(op, service.raw().status(), service.err().code(), service.err().message())
        }
        SdkError::TimeoutError(_) => {
            unavailable(format!("disk `{}`: the S3 server did not answer in time ({} `{}`)", op.disk, op.what, op.path))
        }
        SdkError::DispatchFailure(failure) if failure.as_connector_error().is_some_and(|c| refused_by_host(c)) => {
            host_refused(op.disk)
        }
        SdkError::DispatchFailure(_) => {
            unavailable(format!("disk `{}`: cannot reach the S3 server to {} `{}`", op.disk, op.what, op.path))
        }
        SdkError::ResponseError(_) => unavailable(format!(
            "disk `{}`: the S3 server's answer to {} `{}` was cut short",
            op.disk, op.what, op.path
        )),
        _ => Error::Io(format!(
            "disk `{}`: {} `{}` failed: {}",
            op.disk,
            op.what,
            op.path,
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}

/// The HTTP status of a raw SDK response.
pub trait RawStatus {
    fn status(&self) -> u16;
}

impl RawStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ConnectorError;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use stowage_plugin_sdk::retryable;

    /// What an error must be.
    type Check = fn(&Error) -> bool;

    #[test]
    fn each_status_and_code_maps_to_its_contract_error() {
        let op = Op { disk: "d", path: "a/b", what: "read" };
        let table: &[(u16, Option<&str>, Check)] = &[
            (404, Some("NoSuchKey"), |e| matches!(e, Error::NotFound(p) if p == "a/b")),
            (404, None, |e| matches!(e, Error::NotFound(_))),
            (404, Some("NoSuchUpload"), |e| matches!(e, Error::NotFound(_))),
            (404, Some("NoSuchBucket"), |e| matches!(e, Error::Io(m) if m.contains("bucket does not exist"))),
            (412, None, |e| matches!(e, Error::AlreadyExists(p) if p == "a/b")),
            (409, Some("PreconditionFailed"), |e| matches!(e, Error::AlreadyExists(_))),
            (403, Some("AccessDenied"), |e| matches!(e, Error::Denied(m) if m.contains("credentials"))),
            (401, None, |e| matches!(e, Error::Denied(_))),
            (416, Some("InvalidRange"), |e| matches!(e, Error::InvalidRange(m) if m.starts_with("a/b"))),
            (503, Some("SlowDown"), |e| retryable(e)),
            (500, Some("InternalError"), |e| retryable(e)),
            (429, None, |e| retryable(e)),
            (400, Some("RequestTimeout"), |e| retryable(e)),
            (
                501,
                Some("NotImplemented"),
                |e| matches!(e, Error::Unsupported(m) if m.contains("to read `a/b`") && m.contains("NotImplemented")),
            ),
            (501, None, |e| matches!(e, Error::Unsupported(m) if m.contains("HTTP 501") || m.contains("why"))),
            (400, Some("NotImplemented"), |e| matches!(e, Error::Unsupported(_))),
            (400, Some("InvalidArgument"), |e| matches!(e, Error::Io(m) if m.contains("read `a/b` failed"))),
        ];
        for (status, code, expected) in table {
            let e = from_status(&op, *status, *code, Some("why"));
            assert!(expected(&e), "{status} {code:?} became {e:?}");
        }
    }

    /// A failure to send, boxed as aws-smithy-wasm boxes wstd's: an `anyhow::Error`, turned
    /// into the connector error's source with `into`.
    fn not_sent(code: ErrorCode) -> SdkError<GetObjectError, HttpResponse> {
        let source = anyhow::Error::from(code).into();
        SdkError::dispatch_failure(ConnectorError::other(source, None))
    }

    #[test]
    fn a_request_the_host_refused_is_denied_and_one_that_could_not_connect_may_be_retried() {
        let op = Op { disk: "d", path: "p", what: "read" };
        let e = from_sdk(&op, not_sent(ErrorCode::HttpRequestDenied));
        assert!(matches!(&e, Error::Denied(m) if m.contains("not the disk's granted endpoint")), "{e:?}");
        let e = from_sdk(&op, not_sent(ErrorCode::ConnectionRefused));
        assert!(retryable(&e) && matches!(&e, Error::Unavailable(u) if u.reason.contains("cannot reach")), "{e:?}");
        // Why by text: nothing along `source()` downcasts to the code. If this fails, a typed
        // match has become possible.
        let SdkError::DispatchFailure(failure) = not_sent(ErrorCode::HttpRequestDenied) else { unreachable!() };
        let connector: &(dyn std::error::Error + 'static) = failure.as_connector_error().unwrap();
        assert!(
            std::iter::successors(Some(connector), |e| e.source()).all(|e| e.downcast_ref::<ErrorCode>().is_none()),
            "the code can be downcast now: match it instead of its text"
        );
    }

    #[test]
    fn the_message_names_the_code_and_never_more_than_the_server_said() {
        let op = Op { disk: "d", path: "p", what: "write" };
        let e = from_status(&op, 400, Some("Weird"), None);
        assert!(matches!(&e, Error::Io(m) if m == "disk `d`: write `p` failed (Weird)"), "{e:?}");
        let e = from_status(&op, 400, None, None);
        assert!(matches!(&e, Error::Io(m) if m.ends_with("(HTTP 400)")), "{e:?}");
    }
}
