//! Where `get -o FILE` writes: what a user who types the same thing for `cp` or `curl -o` expects.
//!
//! - A new path or a regular file is replaced atomically: the bytes go to a temp file beside it,
//!   renamed over it at the end, so a failed read never leaves a truncated file. The temp file
//!   takes the existing file's mode (and owner, where we may set it); a new file gets the
//!   usual `0666 & !umask`.
//! - Anything else that is already there — a device node such as `/dev/null`, a FIFO, a
//!   descriptor of this process (`/dev/stdout`, `/dev/fd/N`) — is written in place, never
//!   replaced.
//! - A symlink is followed: what it points at is written (by the rules above) and the link
//!   stays a link. A link to nothing is refused rather than replaced.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

/// An open output, written with [`Output::write_all`] and completed with [`Output::finish`].
pub enum Output {
    /// A temp file renamed over `target` by `finish`; dropped unfinished, it is removed.
    Replace { tmp: tempfile::NamedTempFile, target: PathBuf },
    /// A non-regular file (device, FIFO) written where it is.
    InPlace { file: File, target: PathBuf },
    /// `/dev/stdout`: this process's standard output, as without `-o`.
    Stdout(std::io::Stdout),
}

impl Output {
    /// Opens `path` for writing by the rules in this module's documentation.
    pub fn open(path: &Path) -> anyhow::Result<Output> {
        if path == Path::new("/dev/stdout") {
            return Ok(Output::Stdout(std::io::stdout()));
        }
        // `metadata` follows links (also /proc's descriptor links, which `canonicalize` cannot).
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => bail!("{} is a directory", path.display()),
            Ok(meta) if meta.is_file() && !names_a_descriptor(path) => {
                // The real file (through any symlinks) is the one replaced; the links stay.
                let target =
                    std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?;
                replace(&target, Some(&meta))
            }
            Ok(_) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("cannot open {} for writing", path.display()))?;
                Ok(Output::InPlace { file, target: path.to_path_buf() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::symlink_metadata(path) {
                Ok(link) if link.file_type().is_symlink() => {
                    let to = std::fs::read_link(path).map(|p| p.display().to_string());
                    bail!(
                        "{} is a symlink to {}, which does not exist; give the target's own path",
                        path.display(),
                        to.unwrap_or_else(|_| "an unreadable target".into())
                    )
                }
                _ => replace(path, None),
            },
            Err(e) => Err(anyhow!("cannot write {}: {e}", path.display())),
        }
    }

    /// Writes one chunk.
    pub fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let (result, target) = match self {
            Output::Replace { tmp, target } => (tmp.write_all(bytes), target.as_path()),
            Output::InPlace { file, target } => (file.write_all(bytes), target.as_path()),
            Output::Stdout(out) => (out.write_all(bytes), Path::new("/dev/stdout")),
        };
        result.with_context(|| format!("writing {}", target.display()))
    }

    /// Makes the bytes the file's content: renames the temp file into place, or flushes the
    /// file written in place.
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Replace { tmp, target } => {
                tmp.as_file().sync_all().with_context(|| format!("writing {}", target.display()))?;
                tmp.persist(&target).map_err(|e| anyhow!("cannot write {}: {}", target.display(), e.error))?;
                Ok(())
            }
            Output::InPlace { mut file, target } => {
                file.flush().with_context(|| format!("writing {}", target.display()))
            }
            Output::Stdout(mut out) => out.flush().context("writing /dev/stdout"),
        }
    }
}

/// Whether `path` names one of this process's descriptors (`/dev/fd/N`, `/proc/self/fd/N`,
/// `/dev/stderr`): written where it is, never replaced, even when it is a regular file.
fn names_a_descriptor(path: &Path) -> bool {
    path == Path::new("/dev/stderr") || path.starts_with("/dev/fd") || path.starts_with("/proc/self/fd")
}

/// A temp file beside `target`, with the mode (and, if we may, the owner) of the file it
/// replaces.
fn replace(target: &Path, existing: Option<&std::fs::Metadata>) -> anyhow::Result<Output> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".stowage-get-")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .with_context(|| {
            format!(
                "cannot create a temp file in {} (needed to replace {} atomically)",
                dir.display(),
                target.display()
            )
        })?;
    if let Some(meta) = existing {
        let file = tmp.as_file();
        // Keeping the owner needs privilege; without it the new file is the caller's, as
        // with `cp`. (Before the mode: a change of owner clears set-id bits.)
        let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
        file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("cannot give the new {} its mode", target.display()))?;
    }
    Ok(Output::Replace { tmp, target: target.to_path_buf() })
}
