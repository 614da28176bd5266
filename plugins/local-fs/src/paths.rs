//! Object paths on disk: which names belong to the driver, and where an object's files live.
//!
//! The object `a/b/c.csv` is the file `a/b/c.csv` under the disk's root; its metadata is the
//! sidecar `a/b/.c.csv.stowage-meta`; a write in progress is a temp file
//! `.stowage-tmp/<owner>.<16 hex>` in one directory at the root (so every unfinished write is
//! found by reading one directory, and the final rename stays on the disk's filesystem).
//! Driver files are hidden from listings and refused as object paths.

use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::path::{MAX_SEGMENT_BYTES, ObjectPath};

/// Ends the name of a metadata sidecar (which also starts with `.`).
const SIDECAR_SUFFIX: &str = ".stowage-meta";

/// Marks a temp file of a write in progress as earlier versions named them (beside the
/// object); still reserved.
const OLD_TEMP_MARK: &str = ".stowage-tmp-";

/// The directory at the disk's root that holds the temp files of writes in progress.
pub const TEMP_DIR: &str = ".stowage-tmp";

/// Starts every name the driver may add in future.
const RESERVED_PREFIX: &str = ".stowage-";

/// Longest object file name: its sidecar name (`.` + name + `.stowage-meta`) must still fit
/// the filesystem's 255-byte name limit.
pub const MAX_NAME_BYTES: usize = MAX_SEGMENT_BYTES - 1 - SIDECAR_SUFFIX.len();

/// Whether a file or directory name belongs to the driver (sidecar, temp file, future use).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
        || (name.starts_with('.') && name.ends_with(SIDECAR_SUFFIX))
        || name.contains(OLD_TEMP_MARK)
}

/// Checks local-fs's own rules for an object path (the shared rules passed already): no
/// driver names, a last segment short enough for its sidecar.
pub fn check_own_rules(path: &ObjectPath) -> Result<(), Error> {
    for (i, segment) in path.split('/').enumerate() {
        if is_reserved(segment) {
            return Err(Error::InvalidPath(format!(
                "path segment {}, `{segment}`, is reserved for the driver's own files",
                i + 1
            )));
        }
    }
    let (_, name) = split(path);
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidPath(format!(
            "the last path segment is {} bytes long; local-fs allows at most {MAX_NAME_BYTES} so \
             the metadata file beside it fits the filesystem's name limit",
            name.len()
        )));
    }
    Ok(())
}

/// Splits a path into its parent directory (`""` for the root) and its last segment.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Joins a directory (`""` for the root) and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// The path of the metadata sidecar of the object at `path`.
pub fn sidecar_path(path: &str) -> String {
    let (dir, name) = split(path);
    join(dir, &format!(".{name}{SIDECAR_SUFFIX}"))
}

/// A write's owner tag as it may appear in a file name (`a-z0-9-`, at most 64), or `none`.
pub fn owner_tag(owner: &str) -> &str {
    let plain = !owner.is_empty()
        && owner.len() <= 64
        && owner.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain { owner } else { "none" }
}

/// A fresh temp file path for a write by `owner`: `.stowage-tmp/<owner>.<16 hex><suffix>`;
/// `suffix` tells the object's and the sidecar's apart.
pub fn temp_path(owner: &str, suffix: &str) -> String {
    let random = stowage_plugin_sdk::wasip2::random::random::get_random_u64();
    format!("{TEMP_DIR}/{}.{random:016x}{suffix}", owner_tag(owner))
}

/// The owner tag in a temp file's name, if it has one.
pub fn temp_owner(name: &str) -> Option<&str> {
    name.split_once('.').map(|(owner, _)| owner).filter(|o| *o != "none" && !o.is_empty())
}

/// Each ancestor directory of `path`, deepest first: `a/b/c` gives `a/b`, then `a`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (dir, _) = rest.rsplit_once('/')?;
        rest = dir;
        Some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_are_reserved() {
        for name in [".c.csv.stowage-meta", ".stowage-tmp-00ff", ".stowage-tmp", ".x.stowage-tmp-1", ".stowage-x"] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["c.csv", ".hidden", "stowage-meta", "a.stowage-meta"] {
            assert!(!is_reserved(name), "{name}");
        }
    }

    #[test]
    fn layout() {
        assert_eq!(split("a/b/c.csv"), ("a/b", "c.csv"));
        assert_eq!(split("c.csv"), ("", "c.csv"));
        assert_eq!(sidecar_path("a/b/c.csv"), "a/b/.c.csv.stowage-meta");
        assert_eq!(sidecar_path("c"), ".c.stowage-meta");
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a/b", "a"]);
        assert_eq!(MAX_NAME_BYTES, 241);
        assert_eq!(owner_tag("h1-2-3-4"), "h1-2-3-4");
        assert_eq!(owner_tag("../x"), "none");
        assert_eq!(temp_owner("h1-2-3-4.00ff-meta"), Some("h1-2-3-4"));
        assert_eq!(temp_owner("none.00ff"), None);
    }
}
