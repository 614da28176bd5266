//! Operations on one whole object that need no resource: `stat`, `exists`, `delete`.

use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ObjectInfo};
use stowage_plugin_sdk::path::ObjectPath;
use stowage_plugin_sdk::wasip2::filesystem::types::{DescriptorStat, DescriptorType};

use crate::error::{lookup_error, not_an_object};
use crate::fs::{NO_FOLLOW, file_id, remove, root, sync_dir};
use crate::meta::object_info;
use crate::paths::{ancestors, check_own_rules, sidecar_path};

/// The file at `path`, if it is an object (a regular file).
fn object_stat(path: &ObjectPath) -> Result<DescriptorStat, Error> {
    check_own_rules(path)?;
    let stat = root()?.stat_at(NO_FOLLOW, path).map_err(|code| lookup_error(code, path))?;
    match stat.type_ {
        DescriptorType::RegularFile => Ok(stat),
        other => Err(not_an_object(path, other)),
    }
}

/// Everything known about the object at `path`.
pub fn stat(path: &ObjectPath) -> Result<ObjectInfo, Error> {
    let stat = object_stat(path)?;
    let root = root()?;
    let id = file_id(&stat);
    Ok(object_info(root, path, &stat, &id))
}

/// Whether an object exists at `path`.
pub fn exists(path: &ObjectPath) -> Result<bool, Error> {
    match object_stat(path) {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the object at `path` and its sidecar, then the directories it leaves empty, and
/// flushes the directory entries so the delete survives a crash.
pub fn delete(path: &ObjectPath) -> Result<(), Error> {
    object_stat(path)?;
    let root = root()?;
    root.unlink_file_at(path).map_err(|code| lookup_error(code, path))?;
    // The object is gone; a sidecar left behind would be stale (its id matches no file) and is
    // replaced by the next write, so failing to remove it is not worth failing the delete.
    let _ = remove(root, &sidecar_path(path));
    // The deepest directory whose entries changed: the object's own, or the parent of the
    // last empty directory removed.
    let mut changed = crate::paths::split(path).0;
    for dir in ancestors(path) {
        // Stops at the first directory that is not empty (`not-empty`, or `exist` on some
        // systems) or cannot be removed: it and its parents stay.
        if root.remove_directory_at(dir).is_err() {
            break;
        }
        changed = crate::paths::split(dir).0;
    }
    sync_dir(root, changed, path)
}
