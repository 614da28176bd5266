//! Reads: the object's file, opened once, handed to the host as a stream or read in chunks.

use std::cell::Cell;

use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestReader;
use stowage_plugin_sdk::driver::stowage::storage::types::{ByteRange, Error, ObjectInfo};
use stowage_plugin_sdk::path::ObjectPath;
use stowage_plugin_sdk::wasip2::filesystem::types::{Descriptor, DescriptorFlags, DescriptorType, OpenFlags};
use stowage_plugin_sdk::wasip2::io::streams::InputStream;

use crate::error::{fs_error, lookup_error, not_an_object};
use crate::fs::{NO_FOLLOW, file_id, root};
use crate::meta::object_info;
use crate::paths::check_own_rules;

/// The most `read` returns at once, whatever the host asks for.
const MAX_CHUNK: u64 = 1 << 20;

/// An object being read; the `reader` resource.
pub struct FsReader {
    /// The object's path, for messages.
    path: String,
    /// The object's file, open for reading. Writes replace files by rename, so this file's
    /// content does not change while it is read.
    file: Descriptor,
    /// Where the next `read` starts.
    offset: Cell<u64>,
    /// Where the requested range ends (exclusive).
    end: u64,
    /// Whether the host took the source stream.
    source_given: Cell<bool>,
}

impl FsReader {
    /// Opens the object at `path` for reading `range` (all of it when none).
    pub fn open(path: ObjectPath, range: Option<ByteRange>) -> Result<(FsReader, ObjectInfo), Error> {
        check_own_rules(&path)?;
        let root = root()?;
        // Checked before opening: opening a named pipe would block, and directories and
        // links are not objects.
        let found = root.stat_at(NO_FOLLOW, &path).map_err(|code| lookup_error(code, &path))?;
        if found.type_ != DescriptorType::RegularFile {
            return Err(not_an_object(&path, found.type_));
        }
        let file = root
            .open_at(NO_FOLLOW, &path, OpenFlags::empty(), DescriptorFlags::READ)
            .map_err(|code| lookup_error(code, &path))?;
        let stat = file.stat().map_err(|code| fs_error(code, &path))?;
        let id = file_id(&stat);
        let info = object_info(root, &path, &stat, &id);
        let size = stat.size;
        let (offset, end) = match range {
            None => (0, size),
            Some(ByteRange { offset, .. }) if offset > size => {
                return Err(Error::InvalidRange(format!("offset {offset} is past the end of `{path}` (size {size})")));
            }
            Some(ByteRange { offset, length }) => {
                (offset, length.map_or(size, |len| offset.saturating_add(len).min(size)))
            }
        };
        let reader =
            FsReader { path: path.into_string(), file, offset: Cell::new(offset), end, source_given: Cell::new(false) };
        Ok((reader, info))
    }
}

impl GuestReader for FsReader {
    fn source(&self) -> Option<InputStream> {
        if self.source_given.get() {
            return None;
        }
        let stream = self.file.read_via_stream(self.offset.get()).ok()?;
        self.source_given.set(true);
        Some(stream)
    }

    fn read(&self, max: u64) -> Result<Vec<u8>, Error> {
        let offset = self.offset.get();
        let want = max.min(self.end.saturating_sub(offset)).min(MAX_CHUNK);
        if want == 0 {
            return Ok(Vec::new());
        }
        // A regular file returns short reads only at its end; retry a few empty ones anyway.
        for _ in 0..3 {
            let (bytes, eof) = self.file.read(want, offset).map_err(|code| fs_error(code, &self.path))?;
            if !bytes.is_empty() {
                self.offset.set(offset + bytes.len() as u64);
                return Ok(bytes);
            }
            if eof {
                break;
            }
        }
        Err(Error::Io(format!(
            "`{}` ended at byte {offset}, before the end of the requested range (byte {}): \
             something other than this driver truncated it",
            self.path, self.end
        )))
    }
}
