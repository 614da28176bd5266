//! The one place where filesystem error codes become the contract's [`Error`].
//!
//! Every message names the object path it is about and says what a user can do, so the
//! failure modes a filesystem reports as a bare errno (`[Errno 17]`: exists-but-not-a-dir,
//! permission, stale handles) read as specific, actionable errors.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, Unavailable};
use stowage_plugin_sdk::wasip2::filesystem::types::{DescriptorType, ErrorCode};

/// Maps a filesystem error met while working on the object `path` to the contract's error.
pub fn fs_error(code: ErrorCode, path: &str) -> Error {
    match code {
        ErrorCode::NoEntry => Error::NotFound(path.to_string()),
        ErrorCode::Exist => Error::AlreadyExists(path.to_string()),
        ErrorCode::NotDirectory => Error::Io(format!("a parent of `{path}` exists but is not a directory")),
        ErrorCode::Access => {
            Error::Denied(format!("permission denied on `{path}` (check the disk directory's owner and mode)"))
        }
        ErrorCode::NotPermitted => Error::Denied(format!(
            "operation on `{path}` not permitted: the disk directory's owner and mode refuse it, \
             the host granted the disk read-only, or the path leads outside the disk through a \
             symbolic link"
        )),
        ErrorCode::Loop => Error::Denied(format!(
            "`{path}` is a symbolic link (or passes through too many of them): local-fs does not \
             follow symbolic links to objects"
        )),
        ErrorCode::ReadOnly => Error::Denied(format!("the filesystem holding `{path}` is mounted read-only")),
        ErrorCode::IsDirectory => {
            Error::Io(format!("`{path}` is a directory holding other objects; an object cannot be stored there"))
        }
        ErrorCode::NotEmpty => Error::Io(format!("`{path}` is a non-empty directory; an object cannot replace it")),
        ErrorCode::NameTooLong => {
            Error::InvalidPath(format!("a segment of `{path}` is too long for the disk's filesystem"))
        }
        ErrorCode::IllegalByteSequence => {
            Error::InvalidPath(format!("`{path}` has characters the disk's filesystem cannot store"))
        }
        ErrorCode::InsufficientSpace => Error::Io(format!("no space left on the disk while writing `{path}`")),
        ErrorCode::Quota => Error::Io(format!("the disk quota is exhausted while writing `{path}`")),
        ErrorCode::FileTooLarge | ErrorCode::Overflow => {
            Error::Io(format!("`{path}` is larger than the disk's filesystem allows"))
        }
        ErrorCode::TooManyLinks => {
            Error::Io(format!("too many entries in a parent directory of `{path}` (the filesystem's link limit)"))
        }
        ErrorCode::CrossDevice => Error::Io(format!(
            "a parent of `{path}` is on another mount than the disk's root; local-fs needs one \
             filesystem for atomic renames"
        )),
        ErrorCode::Busy
        | ErrorCode::WouldBlock
        | ErrorCode::Interrupted
        | ErrorCode::TextFileBusy
        | ErrorCode::NoLock
        | ErrorCode::Deadlock
        | ErrorCode::InsufficientMemory => Error::Unavailable(Unavailable {
            reason: format!("the disk is busy on `{path}` ({}: {})", code.name(), code.message()),
            retryable: true,
        }),
        ErrorCode::Io | ErrorCode::BadDescriptor | ErrorCode::NoDevice | ErrorCode::NoSuchDevice => Error::Io(format!(
            "I/O error on `{path}` ({}: the file system refused it; check its mount: \
                 read-only, a failing device or a stale handle)",
            code.name()
        )),
        other => Error::Io(format!("filesystem error on `{path}`: {} ({})", other.message(), other.name())),
    }
}

/// Like [`fs_error`], for operations that only look an object up (stat, read, delete):
/// a missing parent or a parent that is a file both mean there is no object at `path`.
pub fn lookup_error(code: ErrorCode, path: &str) -> Error {
    match code {
        ErrorCode::NoEntry | ErrorCode::NotDirectory => Error::NotFound(path.to_string()),
        other => fs_error(other, path),
    }
}

/// The error for a directory component of `path` that exists as something else.
pub fn not_a_directory(component: &str, path: &str, found: DescriptorType) -> Error {
    Error::Io(format!(
        "`{component}` exists but is not a directory (it is a {}), so `{path}` cannot be stored \
         under it",
        type_name(found)
    ))
}

/// The error for an object path that names something other than a regular file.
///
/// Directories are not objects (`not-found`); symbolic links are refused, not followed.
pub fn not_an_object(path: &str, found: DescriptorType) -> Error {
    match found {
        DescriptorType::Directory => Error::NotFound(path.to_string()),
        DescriptorType::SymbolicLink => fs_error(ErrorCode::Loop, path),
        other => Error::Io(format!(
            "`{path}` is a {}, not a regular file; local-fs only stores regular files",
            type_name(other)
        )),
    }
}

/// A short human name for a file type.
fn type_name(t: DescriptorType) -> &'static str {
    match t {
        DescriptorType::Directory => "directory",
        DescriptorType::RegularFile => "regular file",
        DescriptorType::SymbolicLink => "symbolic link",
        DescriptorType::BlockDevice => "block device",
        DescriptorType::CharacterDevice => "character device",
        DescriptorType::Fifo => "named pipe",
        DescriptorType::Socket => "socket",
        DescriptorType::Unknown => "file of unknown type",
    }
}
