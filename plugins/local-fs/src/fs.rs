//! Filesystem helpers over the one directory the host grants: the root descriptor, `mkdir -p`,
//! directory fsync, temp-file cleanup, and small conversions.

use std::sync::OnceLock;

use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::wasip2::clocks::wall_clock::Datetime;
use stowage_plugin_sdk::wasip2::filesystem::preopens::get_directories;
use stowage_plugin_sdk::wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorStat, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

use crate::error::{fs_error, not_a_directory};

/// Path flags for every lookup: never follow a symbolic link in the last segment.
pub const NO_FOLLOW: PathFlags = PathFlags::empty();

/// The disk's root, opened once per instance.
static ROOT: OnceLock<Descriptor> = OnceLock::new();

/// The directory the host preopened as `/` (or its only preopen, whatever its name).
pub fn root() -> Result<&'static Descriptor, Error> {
    if let Some(root) = ROOT.get() {
        return Ok(root);
    }
    let mut dirs = get_directories();
    let index = match dirs.iter().position(|(_, name)| name == "/") {
        Some(i) => i,
        None if dirs.len() == 1 => 0,
        None if dirs.is_empty() => {
            return Err(Error::Io(
                "local-fs was granted no directory: give its disk `grant = { dir = \"...\" }` \
                 in the host config"
                    .to_string(),
            ));
        }
        None => {
            let names: Vec<&str> = dirs.iter().map(|(_, name)| name.as_str()).collect();
            return Err(Error::Io(format!(
                "local-fs needs its disk's directory granted as `/`, but the host granted \
                 {names:?}: check the disk's `grant.dir` in the host config"
            )));
        }
    };
    let (dir, _) = dirs.swap_remove(index);
    Ok(ROOT.get_or_init(|| dir))
}

/// Opens the directory `dir` (`""` is the root itself) for reading its entries or syncing it.
pub fn open_dir(root: &Descriptor, dir: &str) -> Result<Descriptor, ErrorCode> {
    root.open_at(NO_FOLLOW, if dir.is_empty() { "." } else { dir }, OpenFlags::DIRECTORY, DescriptorFlags::READ)
}

/// Creates the directory `dir` and its missing parents; `path` is the object being written,
/// for messages.
pub fn create_dirs(root: &Descriptor, dir: &str, path: &str) -> Result<(), Error> {
    if dir.is_empty() {
        return Ok(());
    }
    // The common case: the directory is already there.
    if let Ok(stat) = root.stat_at(NO_FOLLOW, dir)
        && stat.type_ == DescriptorType::Directory
    {
        return Ok(());
    }
    let mut end = 0;
    while end < dir.len() {
        end = dir[end..].find('/').map_or(dir.len(), |i| end + i);
        let component = &dir[..end];
        match root.create_directory_at(component) {
            // The new directory's entry must reach the disk too, or a crash could lose the
            // whole subtree (and the object about to be written in it).
            Ok(()) => sync_dir(root, component.rsplit_once('/').map_or("", |(p, _)| p), path)?,
            Err(ErrorCode::Exist) => match root.stat_at(NO_FOLLOW, component) {
                Ok(stat) if stat.type_ == DescriptorType::Directory => {}
                Ok(stat) => return Err(not_a_directory(component, path, stat.type_)),
                Err(code) => return Err(fs_error(code, path)),
            },
            Err(code) => return Err(fs_error(code, path)),
        }
        end += 1;
    }
    Ok(())
}

/// Checks, without creating anything, that every existing ancestor of `path` in `dir` is a
/// directory (missing ones are created when the write commits).
pub fn check_parents(root: &Descriptor, dir: &str, path: &str) -> Result<(), Error> {
    let mut end = 0;
    while end < dir.len() {
        end = dir[end..].find('/').map_or(dir.len(), |i| end + i);
        let component = &dir[..end];
        match root.stat_at(NO_FOLLOW, component) {
            Ok(stat) if stat.type_ == DescriptorType::Directory => {}
            Ok(stat) => return Err(not_a_directory(component, path, stat.type_)),
            Err(ErrorCode::NoEntry) => return Ok(()),
            Err(code) => return Err(fs_error(code, path)),
        }
        end += 1;
    }
    Ok(())
}

/// Flushes the directory `dir`'s entries to disk, so a rename in it survives a crash.
pub fn sync_dir(root: &Descriptor, dir: &str, path: &str) -> Result<(), Error> {
    let result = if dir.is_empty() { root.sync() } else { open_dir(root, dir).and_then(|d| d.sync()) };
    match result {
        // Some filesystems (and platforms) cannot fsync a directory; the rename is then as
        // durable as that filesystem makes it, which is all we can do.
        Ok(()) | Err(ErrorCode::Unsupported | ErrorCode::Invalid) => Ok(()),
        Err(code) => Err(fs_error(code, path)),
    }
}

/// Removes the driver file `file` if it exists; errors are returned for the caller to judge.
pub fn remove(root: &Descriptor, file: &str) -> Result<(), ErrorCode> {
    match root.unlink_file_at(file) {
        Ok(()) | Err(ErrorCode::NoEntry) => Ok(()),
        Err(code) => Err(code),
    }
}

/// A driver file (a temp file) that is removed when this guard is dropped, unless
/// [`TempFile::keep`] was called because it has been renamed into place.
#[derive(Debug)]
pub struct TempFile {
    /// The file's path under the root, or none once kept.
    path: Option<String>,
    /// Whether dropping the guard leaves the file (a suspended write's, which its session
    /// resumes or discards later).
    outlives_writer: bool,
}

impl TempFile {
    /// Guards the temp file at `path`.
    pub fn new(path: String) -> Self {
        Self { path: Some(path), outlives_writer: false }
    }

    /// Whether the file outlives the guard.
    pub fn outlives(&self) -> bool {
        self.outlives_writer
    }

    /// From now on the file outlives the guard (see `resume.rs`); `remove_now` still removes it.
    pub fn outlive_writer(&mut self) {
        self.outlives_writer = true;
    }

    /// The temp file's path under the root.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or_default()
    }

    /// Forgets the file: it has been renamed away and must not be removed.
    pub fn keep(&mut self) {
        self.path = None;
    }

    /// Removes the file now, reporting a failure.
    pub fn remove_now(&mut self, object: &str) -> Result<(), Error> {
        match self.path.take() {
            Some(path) => remove(root()?, &path).map_err(|code| fs_error(code, object)),
            None => Ok(()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.outlives_writer {
            return;
        }
        if let (Some(path), Ok(root)) = (self.path.take(), root()) {
            // Best effort: a temp file left behind is hidden, and the host removes it once its
            // write is gone (`list-temps`, `remove-temp`).
            let _ = remove(root, &path);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: Datetime) -> u64 {
    t.seconds.saturating_mul(1000).saturating_add(u64::from(t.nanoseconds / 1_000_000))
}

/// A file's last modification, in milliseconds since the Unix epoch.
pub fn modified_ms(stat: &DescriptorStat) -> Option<u64> {
    stat.data_modification_timestamp.map(millis)
}

/// The version of a file's content: its size and modification time (nanoseconds). It survives
/// renames, host upgrades and backups that keep times, and changes with every write, so a
/// sidecar that names it describes exactly this content. (The host's `metadata-hash` was not
/// used: wasmtime derives it from a hasher that may change between host builds, which would
/// silently orphan every sidecar.)
pub fn file_id(stat: &DescriptorStat) -> String {
    match stat.data_modification_timestamp {
        Some(t) => format!("{:x}-{:x}.{:09}", stat.size, t.seconds, t.nanoseconds),
        None => format!("{:x}", stat.size),
    }
}

/// An opaque version tag for a file: its [`file_id`].
pub fn etag(id: &str) -> String {
    id.to_string()
}
