//! The services host's answers as the contract's errors, in one place. The services host
//! answers failures with `{"error": kind, "message": text}`, where `kind` is the contract's own
//! error name, so most map back one to one.

use stowage_plugin_sdk::driver::stowage::storage::types::Error;

use stowage_api::{ErrorKind, Problem, header};

use crate::http::{Failure, Response};

/// What was being done, for messages.
#[derive(Clone, Copy)]
pub struct Op<'a> {
    pub what: &'static str,
    pub path: &'a str,
}

pub use stowage_plugin_sdk::{retryable, unavailable};

/// A request that got no answer.
pub fn from_failure(op: Op<'_>, f: Failure) -> Error {
    match f {
        Failure::Refused => Error::Denied(
            "the host refused the request: the remote driver's `endpoint` is not the disk's granted endpoint".into(),
        ),
        Failure::NotSent(why) | Failure::Transport(why) => {
            unavailable(format!("cannot reach the services host to {} `{}` ({why})", op.what, op.path))
        }
        Failure::Untrusted(why) => Error::Io(format!(
            "the services host's TLS certificate is not trusted ({why}): give the disk `grant.ca_file` with the CA that signed it"
        )),
        Failure::Invalid(why) => Error::Io(format!("cannot {} `{}`: {why}", op.what, op.path)),
    }
}

/// A failure answer (any status that is not the one expected).
pub fn from_response(op: Op<'_>, response: Response) -> Error {
    let status = response.status;
    // The kind is also a header, for answers without a body (HEAD).
    let kind = response.header(header::ERROR_KIND).map(str::to_string);
    let mut problem: Problem =
        response.bytes(64 << 10).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if let Some(kind) = kind {
        problem.error = kind;
    }
    from_problem(op, status, &problem)
}

/// A failure answer's status and body as the contract's error. A kind this driver does not
/// know (a newer host's) falls back on the status.
fn from_problem(op: Op<'_>, status: u16, problem: &Problem) -> Error {
    let message = if problem.message.is_empty() { format!("HTTP {status}") } else { problem.message.clone() };
    match (status, ErrorKind::parse(&problem.error)) {
        (401, _) => {
            Error::Denied("the services host refused this host's API key (check the disk's grant.api_key)".into())
        }
        (_, Some(ErrorKind::UnknownName)) => {
            Error::Io(format!("the services host has no storage class or disk by this disk's `name`: {message}"))
        }
        (_, Some(ErrorKind::NotFound)) | (404, _) => Error::NotFound(op.path.to_string()),
        (_, Some(ErrorKind::AlreadyExists)) | (412, _) => Error::AlreadyExists(op.path.to_string()),
        (_, Some(ErrorKind::Denied)) | (403, _) => {
            Error::Denied(format!("the services host refused to {} `{}`: {message}", op.what, op.path))
        }
        (_, Some(ErrorKind::InvalidPath)) => Error::InvalidPath(message),
        (_, Some(ErrorKind::InvalidRange)) | (416, _) => Error::InvalidRange(format!("{}: {message}", op.path)),
        (_, Some(ErrorKind::Unsupported)) | (501, _) => Error::Unsupported(message),
        (429 | 502 | 503 | 504, _) | (_, Some(ErrorKind::Unavailable)) => {
            unavailable(format!("the services host could not {} `{}` now: {message}", op.what, op.path))
        }
        _ => Error::Io(format!("the services host could not {} `{}`: {message}", op.what, op.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an error must be.
    type Check = fn(&Error) -> bool;

    fn mapped(status: u16, kind: &str) -> Error {
        let problem = Problem { error: kind.into(), message: "why".into() };
        from_problem(Op { what: "read", path: "a/b" }, status, &problem)
    }

    #[test]
    fn each_answer_maps_to_its_contract_error() {
        let table: &[(u16, &str, Check)] = &[
            (401, "denied", |e| matches!(e, Error::Denied(m) if m.contains("API key"))),
            (404, "unknown-name", |e| matches!(e, Error::Io(m) if m.contains("no storage class"))),
            (404, "not-found", |e| matches!(e, Error::NotFound(p) if p == "a/b")),
            (404, "", |e| matches!(e, Error::NotFound(_))),
            (412, "already-exists", |e| matches!(e, Error::AlreadyExists(p) if p == "a/b")),
            (403, "denied", |e| matches!(e, Error::Denied(m) if m.contains("refused to read `a/b`: why"))),
            (400, "invalid-path", |e| matches!(e, Error::InvalidPath(m) if m == "why")),
            (416, "invalid-range", |e| matches!(e, Error::InvalidRange(_))),
            (501, "unsupported", |e| matches!(e, Error::Unsupported(m) if m == "why")),
            (501, "", |e| matches!(e, Error::Unsupported(_))),
            (503, "unavailable", |e| retryable(e)),
            (503, "audit-unavailable", |e| retryable(e)),
            (429, "too-many-requests", |e| retryable(e)),
            (502, "", |e| retryable(e)),
            (500, "io", |e| matches!(e, Error::Io(m) if m.contains("could not read `a/b`: why"))),
            // A kind a newer host added: the status decides.
            (507, "no-space-left-on-the-moon", |e| matches!(e, Error::Io(_))),
            (404, "no-such-thing-yet", |e| matches!(e, Error::NotFound(_))),
        ];
        for (status, kind, expected) in table {
            let e = mapped(*status, kind);
            assert!(expected(&e), "{status} {kind:?} became {e:?}");
        }
    }

    #[test]
    fn an_answer_without_a_message_names_its_status() {
        let e = from_problem(Op { what: "read", path: "p" }, 500, &Problem::default());
        assert!(matches!(&e, Error::Io(m) if m.ends_with("HTTP 500")), "{e:?}");
    }
}
