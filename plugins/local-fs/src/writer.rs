//! Writes: bytes go to a temp file in `.stowage-tmp/`, which `finish` flushes and renames into
//! place (creating the object's directories only then), followed by its sidecar, so a crash
//! never leaves a partial object visible and an aborted write leaves no directory behind.

use std::cell::RefCell;

use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestWriter;
use stowage_plugin_sdk::driver::stowage::storage::types::{Digest, Error, ObjectInfo, WriteOptions};
use stowage_plugin_sdk::path::ObjectPath;
use stowage_plugin_sdk::wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags,
};
use stowage_plugin_sdk::wasip2::io::streams::OutputStream;

use crate::error::{fs_error, not_an_object};
use crate::fs::{NO_FOLLOW, TempFile, check_parents, create_dirs, etag, file_id, modified_ms, root, sync_dir};
use crate::meta::{Sidecar, write_all};
use crate::paths::{TEMP_DIR, check_own_rules, sidecar_path, split, temp_path};
use crate::resume::Token;

/// An object being written; the `writer` resource.
pub struct FsWriter {
    /// The write in progress, or none once finished or aborted.
    state: RefCell<Option<Pending>>,
}

/// A write in progress. Dropping it (an unfinished writer) removes its temp file.
struct Pending {
    /// The object's path.
    path: String,
    /// What to store with the object.
    options: WriteOptions,
    /// The temp file, open for writing.
    file: Descriptor,
    /// Removes the temp file unless it was renamed into place.
    temp: TempFile,
    /// Bytes written through `write`.
    written: u64,
    /// Whether the host took the sink (then bytes must not also come through `write`).
    sink_given: bool,
}

impl FsWriter {
    /// Starts writing the object at `path`: checks the target and its parents, and creates a
    /// temp file named after the write's owner.
    pub fn open(path: ObjectPath, options: WriteOptions) -> Result<FsWriter, Error> {
        check_own_rules(&path)?;
        let root = root()?;
        match root.stat_at(NO_FOLLOW, &path) {
            Ok(stat) if stat.type_ == DescriptorType::RegularFile => {
                if options.create_only {
                    return Err(Error::AlreadyExists(path.into_string()));
                }
            }
            Ok(stat) if stat.type_ == DescriptorType::Directory => {
                return Err(fs_error(ErrorCode::IsDirectory, &path));
            }
            Ok(stat) => return Err(not_an_object(&path, stat.type_)),
            // A parent that is a file is reported by `create_dirs`, with its name.
            Err(ErrorCode::NoEntry | ErrorCode::NotDirectory) => {}
            Err(code) => return Err(fs_error(code, &path)),
        }
        let (dir, _) = split(&path);
        check_parents(root, dir, &path)?;
        crate::temps::ensure_dir(root)?;
        let temp_path = temp_path(&options.owner, "");
        let file = root
            .open_at(NO_FOLLOW, &temp_path, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, DescriptorFlags::WRITE)
            .map_err(|code| fs_error(code, &path))?;
        let temp = TempFile::new(temp_path);
        let pending = Pending { path: path.into_string(), options, file, temp, written: 0, sink_given: false };
        Ok(FsWriter { state: RefCell::new(Some(pending)) })
    }

    /// Continues the suspended write `token` names (`resume.rs`).
    pub fn resume(path: ObjectPath, options: WriteOptions, token: &str) -> Result<FsWriter, Error> {
        check_own_rules(&path)?;
        let token = Token::parse(token)?;
        let file = token.reopen(&path, &options)?;
        let mut temp = TempFile::new(token.path());
        temp.outlive_writer();
        let pending = Pending { path: path.into_string(), options, file, temp, written: token.size, sink_given: false };
        Ok(FsWriter { state: RefCell::new(Some(pending)) })
    }

    /// Makes the bytes written so far durable and returns the token that resumes the write
    /// from here. The temp file now outlives this writer; `finish` and `abort` still end it.
    pub fn suspend(&self) -> Result<String, Error> {
        let mut state = self.state.borrow_mut();
        let pending = state.as_mut().ok_or_else(Self::closed)?;
        let io = |code| fs_error(code, &pending.path);
        pending.file.sync().map_err(io)?;
        let size = pending.file.stat().map_err(io)?.size;
        if !pending.temp.outlives() {
            // The file's name must survive a crash too.
            sync_dir(root()?, TEMP_DIR, &pending.path)?;
            pending.temp.outlive_writer();
        }
        // Bytes that came through the sink count now; the host asks for a new sink.
        pending.written = size;
        pending.sink_given = false;
        Ok(Token::of(pending.temp.path(), size))
    }

    /// The error for a call on a writer that has already finished or been aborted.
    fn closed() -> Error {
        Error::Io("this writer has already finished or been aborted".to_string())
    }
}

impl GuestWriter for FsWriter {
    fn sink(&self) -> Option<OutputStream> {
        let mut state = self.state.borrow_mut();
        let pending = state.as_mut()?;
        if pending.sink_given {
            return None;
        }
        let stream = pending.file.write_via_stream(pending.written).ok()?;
        pending.sink_given = true;
        Some(stream)
    }

    fn write(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let mut state = self.state.borrow_mut();
        let pending = state.as_mut().ok_or_else(Self::closed)?;
        if pending.sink_given {
            return Err(Error::Io(format!(
                "writing `{}`: the host took this writer's sink, so its bytes must go through \
                 the sink, not `write`",
                pending.path
            )));
        }
        write_all(&pending.file, &chunk, pending.written).map_err(|code| fs_error(code, &pending.path))?;
        pending.written += chunk.len() as u64;
        Ok(())
    }

    fn finish(&self, digest: Digest) -> Result<ObjectInfo, Error> {
        // Taken out first: if committing fails, dropping it removes the temp file (unless the
        // write was suspended: its session keeps it).
        let pending = self.state.borrow_mut().take().ok_or_else(Self::closed)?;
        pending.commit(digest)
    }

    fn abort(&self) -> Result<(), Error> {
        match self.state.borrow_mut().take() {
            Some(mut pending) => pending.temp.remove_now(&pending.path),
            None => Ok(()),
        }
    }
}

impl Pending {
    /// Flushes the temp file, writes the sidecar and renames both into place.
    fn commit(mut self, digest: Digest) -> Result<ObjectInfo, Error> {
        let root = root()?;
        let owned_path = self.path.clone();
        let path = owned_path.as_str();
        let io = |code| fs_error(code, path);
        self.file.sync().map_err(io)?;
        let stat = self.file.stat().map_err(io)?;
        if stat.size != digest.size {
            return Err(Error::Io(format!(
                "size mismatch writing `{path}`: the host sent {} bytes but the file holds {}; \
                 nothing was stored",
                digest.size, stat.size
            )));
        }
        let id = file_id(&stat);
        let (dir, _) = split(path);
        let sidecar = Sidecar {
            object_id: id.clone(),
            size: stat.size,
            sha256: digest.sha256.clone(),
            content_type: self.options.content_type.clone(),
            metadata: self.options.metadata.clone(),
        };
        let mut sidecar_temp = TempFile::new(temp_path(&self.options.owner, "-meta"));
        sidecar.write_new(root, sidecar_temp.path(), path)?;

        // The object first, then its sidecar: a crash between the two leaves the new object
        // with the old sidecar, whose `object_id` no longer matches, so it is ignored. Its
        // directories are made now; a concurrent delete may remove a then-empty one before
        // the rename, so that is tried again.
        let mut attempts = 0;
        loop {
            create_dirs(root, dir, path)?;
            let placed =
                if self.options.create_only { self.link_into_place(root) } else { self.rename_into_place(root) };
            match placed {
                Err(Error::NotFound(_)) if attempts < 3 => attempts += 1,
                other => break other?,
            }
        }
        root.rename_at(sidecar_temp.path(), root, &sidecar_path(path)).map_err(io)?;
        sidecar_temp.keep();
        sync_dir(root, dir, path)?;

        Ok(ObjectInfo {
            path: self.path.clone(),
            size: stat.size,
            sha256: Some(digest.sha256),
            content_type: self.options.content_type.clone(),
            modified: modified_ms(&stat),
            etag: Some(etag(&id)),
            metadata: self.options.metadata.clone(),
        })
    }

    /// Renames the temp file over the object's path.
    fn rename_into_place(&mut self, root: &Descriptor) -> Result<(), Error> {
        let path = self.path.clone();
        root.rename_at(self.temp.path(), root, &path).map_err(|code| match code {
            ErrorCode::Exist | ErrorCode::NotEmpty => fs_error(ErrorCode::IsDirectory, &path),
            ErrorCode::NoEntry => Error::NotFound(path.clone()),
            ErrorCode::CrossDevice => Error::Io(format!(
                "writing `{path}`: its directory is on another file system than the disk's root, so the write cannot be committed atomically; give each file system its own disk"
            )),
            other => fs_error(other, &path),
        })?;
        self.temp.keep();
        Ok(())
    }

    /// Makes the temp file visible at the object's path only if nothing is there yet.
    ///
    /// A hard link fails atomically when the target exists, so two racing create-only
    /// writes cannot both succeed. On filesystems without hard links this falls back to
    /// check-then-rename, where a write landing between the check and the rename is replaced.
    fn link_into_place(&mut self, root: &Descriptor) -> Result<(), Error> {
        let path = self.path.clone();
        let path = path.as_str();
        match root.link_at(NO_FOLLOW, self.temp.path(), root, path) {
            Ok(()) => {
                // The object is in place; a temp name left behind is swept later.
                let _ = self.temp.remove_now(path);
                Ok(())
            }
            Err(ErrorCode::Exist) => Err(Error::AlreadyExists(path.to_string())),
            Err(ErrorCode::NoEntry) => Err(Error::NotFound(path.to_string())),
            Err(ErrorCode::Unsupported | ErrorCode::NotPermitted | ErrorCode::CrossDevice) => {
                match root.stat_at(NO_FOLLOW, path) {
                    Ok(_) => return Err(Error::AlreadyExists(path.to_string())),
                    Err(ErrorCode::NoEntry) => {}
                    Err(code) => return Err(fs_error(code, path)),
                }
                root.rename_at(self.temp.path(), root, path).map_err(|code| fs_error(code, path))?;
                self.temp.keep();
                Ok(())
            }
            Err(code) => Err(fs_error(code, path)),
        }
    }
}
