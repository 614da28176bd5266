//! Listing: a depth-first walk that visits each directory's entries in the byte order of the
//! paths below them, so objects come out already sorted and the walk stops once a page is full.
//!
//! Sorting a directory's entries by `name` for files and `name/` for directories gives the
//! order of the full paths: no name contains `/`, so a file name and a directory key first
//! differ where their paths do. Only directories that can hold matches, and that are not
//! wholly before the cursor, are opened; memory is one directory's names per level.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ListPage, ObjectInfo};
use stowage_plugin_sdk::path::{MAX_PATH_BYTES, Prefix, validate};
use stowage_plugin_sdk::wasip2::filesystem::types::{Descriptor, DescriptorType, ErrorCode};

use crate::error::fs_error;
use crate::fs::{NO_FOLLOW, modified_ms, open_dir, root};
use crate::paths::{is_reserved, join};

/// The most items one page holds (also the page size when the host asks for 0).
const MAX_PAGE: usize = 1000;

/// Lists the objects whose paths start with `prefix`, after `cursor`, at most `limit`.
pub fn list(prefix: Prefix, cursor: Option<String>, limit: u32) -> Result<ListPage, Error> {
    let root = root()?;
    let limit = match usize::try_from(limit) {
        Ok(0) | Err(_) => MAX_PAGE,
        Ok(n) => n.min(MAX_PAGE),
    };
    // Start in the deepest directory the prefix names whole: `a/b/c` starts in `a/b`.
    let start = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut walk = Walk { root, prefix: &prefix, cursor: cursor.as_deref(), limit, items: Vec::new(), more: false };
    if !start.split('/').any(is_reserved) {
        walk.dir(start)?;
    }
    let next_cursor = if walk.more { walk.items.last().map(|item| item.path.clone()) } else { None };
    Ok(ListPage { items: walk.items, next_cursor })
}

/// The state of one listing.
struct Walk<'a> {
    /// The disk's root.
    root: &'a Descriptor,
    /// Objects must start with this.
    prefix: &'a str,
    /// Objects must sort strictly after this.
    cursor: Option<&'a str>,
    /// The page size.
    limit: usize,
    /// The page so far.
    items: Vec<ObjectInfo>,
    /// Whether a match beyond the page was seen.
    more: bool,
}

impl Walk<'_> {
    /// Whether the page is complete and the walk can stop.
    fn done(&self) -> bool {
        self.more
    }

    /// Whether the directory whose paths all start with `key` (`a/b/`) may hold a match.
    fn may_hold_matches(&self, key: &str) -> bool {
        may_hold_matches(self.prefix, self.cursor, key)
    }

    /// Whether the file at `path` belongs on the page.
    fn matches(&self, path: &str) -> bool {
        path.starts_with(self.prefix) && self.cursor.is_none_or(|c| path > c) && validate(path).is_ok()
    }

    /// Walks the directory `dir` (`""` for the root).
    fn dir(&mut self, dir: &str) -> Result<(), Error> {
        let handle = match open_dir(self.root, dir) {
            Ok(handle) => handle,
            // Nothing there (or a link, which is not followed): no objects under it.
            Err(ErrorCode::NoEntry | ErrorCode::NotDirectory | ErrorCode::Loop) => return Ok(()),
            Err(code) => return Err(fs_error(code, &format!("{dir}/"))),
        };
        let keys = self.sorted_keys(dir, &handle)?;
        for key in keys {
            if let Some(name) = key.strip_suffix('/') {
                self.dir(&join(dir, name))?;
                if self.done() {
                    return Ok(());
                }
                continue;
            }
            if self.items.len() == self.limit {
                self.more = true;
                return Ok(());
            }
            let path = join(dir, &key);
            match handle.stat_at(NO_FOLLOW, &key) {
                Ok(stat) if stat.type_ == DescriptorType::RegularFile => {
                    self.items.push(ObjectInfo {
                        path,
                        size: stat.size,
                        sha256: None,
                        content_type: None,
                        modified: modified_ms(&stat),
                        etag: None,
                        metadata: Vec::new(),
                    });
                }
                // Replaced or deleted since the directory was read.
                Ok(_) | Err(ErrorCode::NoEntry) => {}
                Err(code) => return Err(fs_error(code, &path)),
            }
        }
        Ok(())
    }

    /// The entries of `dir` that may hold matches, as sort keys: `name` for a file, `name/`
    /// for a directory, sorted.
    fn sorted_keys(&self, dir: &str, handle: &Descriptor) -> Result<Vec<String>, Error> {
        let listing_error = |code| fs_error(code, &format!("{dir}/"));
        let entries = handle.read_directory().map_err(listing_error)?;
        let mut keys = Vec::new();
        loop {
            let entry = match entries.read_directory_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                // A name that is not UTF-8 cannot be an object path; an entry removed while
                // being read is gone.
                Err(ErrorCode::IllegalByteSequence | ErrorCode::NoEntry) => continue,
                Err(code) => return Err(listing_error(code)),
            };
            if entry.name == "." || entry.name == ".." || is_reserved(&entry.name) {
                continue;
            }
            let kind = match entry.type_ {
                DescriptorType::Unknown => {
                    handle.stat_at(NO_FOLLOW, &entry.name).map_or(DescriptorType::Unknown, |stat| stat.type_)
                }
                known => known,
            };
            let path = join(dir, &entry.name);
            match kind {
                DescriptorType::Directory if self.may_hold_matches(&format!("{path}/")) => {
                    keys.push(sort_key(&entry.name, true));
                }
                DescriptorType::RegularFile if self.matches(&path) => keys.push(sort_key(&entry.name, false)),
                // Symbolic links, devices and the like are not objects.
                _ => {}
            }
        }
        keys.sort_unstable();
        Ok(keys)
    }
}

/// How a directory entry sorts among its siblings: `name` for a file, `name/` for a
/// directory (so it sorts like the paths below it).
fn sort_key(name: &str, is_dir: bool) -> String {
    if is_dir { format!("{name}/") } else { name.to_string() }
}

/// Whether a directory whose paths all start with `key` (`a/b/`) may hold paths that start
/// with `prefix` and sort after `cursor`.
fn may_hold_matches(prefix: &str, cursor: Option<&str>, key: &str) -> bool {
    let overlaps = key.starts_with(prefix) || prefix.starts_with(key);
    // All of its paths sort before the cursor when `key` does and is not a prefix of it.
    let before_cursor = cursor.is_some_and(|c| key < c && !c.starts_with(key));
    overlaps && !before_cursor && key.len() < MAX_PATH_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sort_in_the_byte_order_of_the_paths_below_them() {
        // A directory `a`, files `a.txt` and `a0`, a directory `a-b`: `-` < `.` < `/` < `0`.
        let entries = [("a0", false), ("a", true), ("a.txt", false), ("a-b", true)];
        let mut keys: Vec<String> = entries.iter().map(|(n, d)| sort_key(n, *d)).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a-b/", "a.txt", "a/", "a0"]);
        // A plain name sort would put the directory `a` before `a.txt`: wrong for `a/x`.
        let mut names: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "a-b", "a.txt", "a0"]);
    }

    #[test]
    fn only_directories_that_can_hold_matches_after_the_cursor_are_opened() {
        assert!(may_hold_matches("a/b", None, "a/"), "the prefix goes on below it");
        assert!(may_hold_matches("a/", None, "a/b/"), "it lies below the prefix");
        assert!(!may_hold_matches("a/", None, "a-b/"), "its paths do not start with the prefix");
        assert!(!may_hold_matches("", Some("b/1"), "a/"), "all of it sorts before the cursor");
        assert!(may_hold_matches("", Some("a/5"), "a/"), "the cursor is inside it");
        assert!(may_hold_matches("", Some("a.txt"), "a/"), "it sorts after the cursor");
    }
}
