//! Exit codes a shell user can branch on.

use stowage_runtime::{StartError, StorageError};

/// Anything not covered below.
pub const FAILURE: u8 = 1;
/// (clap uses 2 for usage errors.)
/// The object (or name) does not exist.
pub const NOT_FOUND: u8 = 3;
/// A policy or the backend refused.
pub const DENIED: u8 = 4;
/// Bad input: path, address, range, config.
pub const INVALID: u8 = 5;
/// A plugin trapped, timed out or ran out of memory.
pub const PLUGIN_FAULT: u8 = 6;
/// The backend is unavailable (maybe retry).
pub const UNAVAILABLE: u8 = 7;
/// The object already exists (create-only).
pub const EXISTS: u8 = 8;
/// The PHI ledger cannot record the operation, or does not verify: nothing was done.
pub const AUDIT: u8 = 9;
/// The object is too large for the disk, or the disk is at its quota: nothing was stored.
pub const NO_SPACE: u8 = 10;
/// `fsck` found stored objects corrupted, missing, unrecorded or unreadable (the check
/// itself ran to its end and was recorded).
pub const FIXITY: u8 = 11;
/// The host itself could not run.
pub const INTERNAL: u8 = 70;

/// The exit code for an error that ended the command.
pub fn code_for(e: &anyhow::Error) -> u8 {
    if let Some(e) = e.downcast_ref::<StorageError>() {
        return match e {
            StorageError::NotFound(_) | StorageError::UnknownName(_) => NOT_FOUND,
            StorageError::AlreadyExists(_) => EXISTS,
            StorageError::Denied(_) => DENIED,
            StorageError::InvalidPath(_)
            | StorageError::InvalidRange(_)
            | StorageError::BadAddress(_)
            | StorageError::DigestMismatch { .. } => INVALID,
            StorageError::Unsupported(_) | StorageError::Io(_) => FAILURE,
            StorageError::Unavailable { .. } => UNAVAILABLE,
            StorageError::PluginFault { .. } => PLUGIN_FAULT,
            StorageError::AuditUnavailable(_) => AUDIT,
            StorageError::TooLarge { .. } | StorageError::QuotaExceeded { .. } | StorageError::NoSpace { .. } => {
                NO_SPACE
            }
        };
    }
    if e.downcast_ref::<crate::cmd::sync::StillWaiting>().is_some() {
        return UNAVAILABLE;
    }
    if e.downcast_ref::<crate::cmd::fsck::ProblemsFound>().is_some() {
        return FIXITY;
    }
    if e.downcast_ref::<crate::cmd::plugin::VerifyFailed>().is_some() {
        return DENIED;
    }
    if e.downcast_ref::<crate::cmd::ledger::LedgerBroken>().is_some()
        || matches!(e.downcast_ref::<StartError>(), Some(StartError::LedgerBroken(_) | StartError::Ledger(_)))
    {
        return AUDIT;
    }
    if e.downcast_ref::<crate::cmd::plugin_test::CannotTest>().is_some() {
        return INVALID;
    }
    if let Some(StartError::Config(_) | StartError::Wiring { .. } | StartError::Policy { .. }) =
        e.downcast_ref::<StartError>()
    {
        return INVALID;
    }
    if e.downcast_ref::<stowage_runtime::ConfigError>().is_some()
        || e.downcast_ref::<stowage_server::SettingsError>().is_some()
    {
        return INVALID;
    }
    FAILURE
}
