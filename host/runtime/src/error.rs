//! The host's storage error: what a caller (CLI, HTTP API, tests) sees when an operation fails.
//!
//! Driver errors (values of the WIT `error` variant) map one-to-one onto the first variants;
//! plugin faults (trap, timeout, memory) are the host's own and say which plugin failed.

use std::fmt;
pub use stowage_api::ErrorKind;

/// How a plugin failed, as opposed to what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap,
    /// The plugin ran past its per-call deadline.
    Timeout,
    /// The plugin tried to grow its memory past its limit.
    MemoryLimit,
    /// The plugin broke the contract (e.g. a stream it handed over failed to take bytes).
    Protocol,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Trap => "trapped",
            FaultKind::Timeout => "ran past its deadline",
            FaultKind::MemoryLimit => "exceeded its memory limit",
            FaultKind::Protocol => "broke the storage contract",
        })
    }
}

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    /// No object at this path.
    #[error("not found: {0}")]
    NotFound(String),
    /// A create-only write found an object.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Refused by a policy or the backend.
    #[error("denied: {0}")]
    Denied(String),
    /// The path breaks the path rules.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The byte range does not fit the object.
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The driver does not offer this operation.
    #[error("unsupported by this disk: {0}")]
    Unsupported(String),
    /// The backend could not be reached.
    #[error("unavailable{}: {reason}", if *.retryable { " (retryable)" } else { "" })]
    Unavailable {
        /// What happened.
        reason: String,
        /// Whether retrying may help.
        retryable: bool,
    },
    /// Any other backend failure.
    #[error("i/o error: {0}")]
    Io(String),
    /// The plugin serving a disk (or a policy) failed; it has been replaced by a fresh instance.
    #[error("plugin of `{disk}` {kind}: {detail}")]
    PluginFault {
        /// The disk (or policy) whose plugin failed.
        disk: String,
        /// How it failed.
        kind: FaultKind,
        /// The engine's description of the fault.
        detail: String,
    },
    /// The address names no storage class and no disk.
    #[error("no storage class or disk named `{0}` in this configuration")]
    UnknownName(String),
    /// The address is not of the `NAME:path` form.
    #[error("address `{0}` is not of the form NAME:path (e.g. default:hello.txt)")]
    BadAddress(String),
    /// The object is larger than the disk allows (`max_object_mib`); nothing was stored.
    #[error("too large for disk `{disk}`: objects may have at most {limit} bytes; nothing was stored")]
    TooLarge {
        /// The disk.
        disk: String,
        /// Its largest object, bytes.
        limit: u64,
    },
    /// The write would take the disk past its quota (`quota_gib`); nothing was stored.
    #[error("disk `{disk}` is full: its quota is {quota} bytes; nothing was stored")]
    QuotaExceeded {
        /// The disk.
        disk: String,
        /// Its quota, bytes.
        quota: u64,
    },
    /// The disk's own storage ran out of space (its file system answered ENOSPC) during the
    /// write; nothing was stored.
    #[error("disk `{disk}` has no space left on its storage; nothing was stored")]
    NoSpace {
        /// The disk.
        disk: String,
    },
    /// The operation would not be recorded durably in the PHI ledger (it cannot append, or
    /// does not verify), so it was refused: nothing was stored, served or removed.
    #[error("audit unavailable: {0}")]
    AuditUnavailable(String),
    /// The bytes received are not the ones the client meant to send (their sha256 differs
    /// from the one it gave); nothing was stored.
    #[error("the content's sha256 is {actual}, not {expected} as the client said; nothing was stored")]
    DigestMismatch {
        /// What the client said.
        expected: String,
        /// What arrived.
        actual: String,
    },
}

impl StorageError {
    /// The kind of error (its stable wire name: `as_str`), for exit codes, metrics and HTTP
    /// mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::NotFound(_) => ErrorKind::NotFound,
            StorageError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            StorageError::Denied(_) => ErrorKind::Denied,
            StorageError::InvalidPath(_) => ErrorKind::InvalidPath,
            StorageError::InvalidRange(_) => ErrorKind::InvalidRange,
            StorageError::Unsupported(_) => ErrorKind::Unsupported,
            StorageError::Unavailable { .. } => ErrorKind::Unavailable,
            StorageError::Io(_) => ErrorKind::Io,
            StorageError::PluginFault { .. } => ErrorKind::PluginFault,
            StorageError::UnknownName(_) => ErrorKind::UnknownName,
            StorageError::BadAddress(_) => ErrorKind::BadAddress,
            StorageError::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            StorageError::AuditUnavailable(_) => ErrorKind::AuditUnavailable,
            StorageError::TooLarge { .. } => ErrorKind::TooLarge,
            StorageError::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            StorageError::NoSpace { .. } => ErrorKind::NoSpace,
        }
    }
}

impl From<stowage_path::PathError> for StorageError {
    fn from(e: stowage_path::PathError) -> Self {
        StorageError::InvalidPath(e.to_string())
    }
}
