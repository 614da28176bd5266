//! The services host's answers as the contract's errors, in one place. The services host
//! answers failures with `{"error": kind, "message": text}`, where `kind` is the contract's own
//! error name, so most map back one to one.

use stowage_plugin_sdk::driver::stowage::storage::types::Error;

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

#[derive(serde::Deserialize, Default)]
struct Problem {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

/// A failure answer (any status that is not the one expected).
pub fn from_response(op: Op<'_>, response: Response) -> Error {
    let status = response.status;
    // The kind is also a header, for answers without a body (HEAD).
    let kind = response.header("x-stowage-error").map(str::to_string);
    let mut problem: Problem =
        response.bytes(64 << 10).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if let Some(kind) = kind {
        problem.error = kind;
    }
    let message = if problem.message.is_empty() { format!("HTTP {status}") } else { problem.message };
    match (status, problem.error.as_str()) {
        (401, _) => {
            Error::Denied("the services host refused this host's API key (check the disk's grant.api_key)".into())
        }
        (_, "unknown-name") => {
            Error::Io(format!("the services host has no storage class or disk by this disk's `name`: {message}"))
        }
        (_, "not-found") | (404, _) => Error::NotFound(op.path.to_string()),
        (_, "already-exists") | (412, _) => Error::AlreadyExists(op.path.to_string()),
        (_, "denied") | (403, _) => {
            Error::Denied(format!("the services host refused to {} `{}`: {message}", op.what, op.path))
        }
        (_, "invalid-path") => Error::InvalidPath(message),
        (_, "invalid-range") | (416, _) => Error::InvalidRange(format!("{}: {message}", op.path)),
        (_, "unsupported") | (501, _) => Error::Unsupported(message),
        (429 | 502 | 503 | 504, _) | (_, "unavailable") => {
            unavailable(format!("the services host could not {} `{}` now: {message}", op.what, op.path))
        }
        _ => Error::Io(format!("the services host could not {} `{}`: {message}", op.what, op.path)),
    }
}
