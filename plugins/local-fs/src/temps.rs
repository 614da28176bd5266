//! The temp files of unfinished writes, all in `.stowage-tmp/` at the disk's root: made there
//! by `open-writer`, listed for the host by `list-temps` (with the owner tag in each name), and
//! removed by `remove-temp` once the host knows their write is gone.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, TempObject, TempPage};
use stowage_plugin_sdk::wasip2::filesystem::types::{Descriptor, DescriptorType, ErrorCode};

use crate::error::fs_error;
use crate::fs::{NO_FOLLOW, modified_ms, open_dir, root, sync_dir};
use crate::paths::{TEMP_DIR, temp_owner};

/// A page holds at most this many temp files.
const MAX_PAGE: usize = 1000;

/// Creates `.stowage-tmp/` if it is not there yet.
pub fn ensure_dir(root: &Descriptor) -> Result<(), Error> {
    match root.create_directory_at(TEMP_DIR) {
        // Its entry must survive a crash, or a crashed write's temp file could not be found.
        Ok(()) => sync_dir(root, "", TEMP_DIR),
        Err(ErrorCode::Exist) => match root.stat_at(NO_FOLLOW, TEMP_DIR) {
            Ok(stat) if stat.type_ == DescriptorType::Directory => Ok(()),
            Ok(_) => Err(Error::Io(format!(
                "`{TEMP_DIR}` at the disk's root is not a directory; local-fs keeps its temp files there: move it away"
            ))),
            Err(code) => Err(fs_error(code, TEMP_DIR)),
        },
        Err(code) => Err(fs_error(code, TEMP_DIR)),
    }
}

/// The temp files after `cursor`, in name order.
pub fn list(cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
    let root = root()?;
    let dir = match open_dir(root, TEMP_DIR) {
        Ok(dir) => dir,
        Err(ErrorCode::NoEntry) => return Ok(TempPage { items: Vec::new(), next_cursor: None }),
        Err(code) => return Err(fs_error(code, TEMP_DIR)),
    };
    let entries = dir.read_directory().map_err(|code| fs_error(code, TEMP_DIR))?;
    let mut names = Vec::new();
    while let Some(entry) = entries.read_directory_entry().map_err(|code| fs_error(code, TEMP_DIR))? {
        if matches!(entry.type_, DescriptorType::RegularFile | DescriptorType::Unknown)
            && cursor.as_ref().is_none_or(|c| entry.name > *c)
        {
            names.push(entry.name);
        }
    }
    names.sort_unstable();
    let limit = match limit as usize {
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    };
    let next_cursor = (names.len() > limit).then(|| names[limit - 1].clone());
    names.truncate(limit);
    let items = names
        .into_iter()
        .filter_map(|name| {
            // Gone since the listing: its write finished.
            let stat = dir.stat_at(NO_FOLLOW, &name).ok().filter(|s| s.type_ == DescriptorType::RegularFile)?;
            Some(TempObject {
                owner: temp_owner(&name).map(str::to_string),
                size: Some(stat.size),
                modified: modified_ms(&stat),
                id: name,
            })
        })
        .collect();
    Ok(TempPage { items, next_cursor })
}

/// Removes the temp file `id` (a name `list` gave), durably.
pub fn remove(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::InvalidPath(format!("`{id}` is not a temp file id of this driver")));
    }
    let root = root()?;
    let path = format!("{TEMP_DIR}/{id}");
    match root.unlink_file_at(&path) {
        Ok(()) => sync_dir(root, TEMP_DIR, &path),
        Err(ErrorCode::NoEntry) => Err(Error::NotFound(id.to_string())),
        Err(code) => Err(fs_error(code, &path)),
    }
}
