//! {{name}}: a Stowage storage driver. It keeps each object as a file under the one directory
//! the host grants it (`grant = { dir = "..." }`, preopened as `/`). A write goes to a
//! temporary file under `/.partial/` and is renamed into place by `finish`, so nothing is
//! visible at the object's path until then. Each temporary file is named after its write's
//! owner tag, and `list-temps` reports them: the host removes (`remove-temp`) those whose
//! writer is gone, after a crash for instance, and records it.
//!
//! Each path is checked once, where it enters (the first line of each call in `impl Guest`):
//! it becomes an `ObjectPath`, which everything after takes, checking nothing again. A bad
//! path is refused with `invalid-path` before anything is touched.
//!
//! It declares no optional capability (ranges, create-only, metadata, presign, pagination):
//! `stowage plugin test` skips those checks. Add them one at a time, with the checks to prove
//! them.

wit_bindgen::generate!({ world: "driver", path: "wit", generate_all });

use std::cell::RefCell;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::ops::Deref;
use std::time::UNIX_EPOCH;

use exports::stowage::storage::store::{Guest, GuestReader, GuestWriter, Reader, Writer};
use stowage::storage::types::{
    ByteRange, Capabilities, Digest, Error, ListPage, ObjectInfo, RequestContext, TempObject, TempPage, WriteOptions,
};
use wasi::io::streams::{InputStream, OutputStream};

/// Where unfinished writes live (hidden from listings, refused as an object path).
const PARTIAL: &str = ".partial";

/// An object path that passed the contract's rules (`wit/store.wit`) and this driver's own
/// (`.partial/` is reserved). Made only by `ObjectPath::parse`, so holding one means the path
/// was checked; it reads as a `&str`.
struct ObjectPath(String);

impl ObjectPath {
    fn parse(path: &str) -> Result<ObjectPath, Error> {
        check(path)?;
        Ok(ObjectPath(path.to_string()))
    }
}

impl Deref for ObjectPath {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Refuses paths outside the contract: empty, absolute, `.`/`..`/empty segments, control
/// characters, backslashes, over 1024 bytes.
fn check(path: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::InvalidPath(format!("`{}`: {why}", path.escape_debug())));
    if path.is_empty() {
        return bad("the path is empty");
    }
    if path.len() > 1024 {
        return bad("the path is longer than 1024 bytes");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("the path has a control character or a backslash");
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("the path has an empty, `.` or `..` segment (or starts or ends with `/`)");
    }
    if path.split('/').next() == Some(PARTIAL) {
        return bad("`.partial/` is reserved for unfinished writes");
    }
    Ok(())
}

fn io_error(what: &str, path: &str, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(path.to_string()),
        _ => Error::Io(format!("{what} `{path}`: {e}")),
    }
}

/// The file an object lives in.
fn file_of(path: &str) -> String {
    format!("/{path}")
}

fn info_of(path: &str, meta: &fs::Metadata, sha256: Option<String>) -> ObjectInfo {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    ObjectInfo { path: path.to_string(), size: meta.len(), sha256, content_type: None, modified, etag: None, metadata: Vec::new() }
}

struct Driver;

/// An object being written to a temporary file.
struct FileWriter {
    path: ObjectPath,
    temp: String,
    file: RefCell<Option<File>>,
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Dropped without finish: leave nothing behind.
        if self.file.borrow_mut().take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn closed() -> Error {
    Error::Io("this writer has already finished or been aborted".into())
}

impl GuestWriter for FileWriter {
    fn sink(&self) -> Option<OutputStream> {
        None // the host calls `write` with each chunk
    }

    fn write(&self, chunk: Vec<u8>) -> Result<(), Error> {
        let mut file = self.file.borrow_mut();
        let file = file.as_mut().ok_or_else(closed)?;
        file.write_all(&chunk).map_err(|e| io_error("write", &self.path, e))
    }

    fn finish(&self, digest: Digest) -> Result<ObjectInfo, Error> {
        let file = self.file.borrow_mut().take().ok_or_else(closed)?;
        let done = (|| {
            file.sync_all()?;
            let target = file_of(&self.path);
            if let Some((dir, _)) = target.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
                fs::create_dir_all(dir)?;
            }
            fs::rename(&self.temp, &target)?;
            fs::metadata(&target)
        })();
        match done {
            Ok(meta) => Ok(info_of(&self.path, &meta, Some(digest.sha256))),
            Err(e) => {
                let _ = fs::remove_file(&self.temp);
                // Not `not-found`: nothing the caller asked for is missing.
                Err(Error::Io(format!("finish `{}`: {e}", &*self.path)))
            }
        }
    }

    fn abort(&self) -> Result<(), Error> {
        if self.file.borrow_mut().take().is_some() {
            fs::remove_file(&self.temp).map_err(|e| io_error("abort", &self.path, e))?;
        }
        Ok(())
    }
}

/// An object being read.
struct FileReader {
    file: RefCell<File>,
    left: RefCell<u64>,
}

impl GuestReader for FileReader {
    fn source(&self) -> Option<InputStream> {
        None // the host calls `read`
    }

    fn read(&self, max: u64) -> Result<Vec<u8>, Error> {
        let mut left = self.left.borrow_mut();
        let want = max.min(*left).min(1 << 20) as usize;
        let mut buf = vec![0; want];
        let n = self.file.borrow_mut().read(&mut buf).map_err(|e| Error::Io(format!("read: {e}")))?;
        buf.truncate(n);
        *left -= n as u64;
        Ok(buf)
    }
}

/// The owner tag as it may appear in a file name (the host sends `a-z0-9-`), or `none`.
fn owner_tag(owner: &str) -> &str {
    let plain = !owner.is_empty() && owner.len() <= 64 && owner.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain { owner } else { "none" }
}

/// Removes the empty directories above the object `path`, up to the root.
fn remove_empty_parents(path: &str) {
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        // Fails (and stops) at the first directory that is not empty.
        if fs::remove_dir(file_of(parent)).is_err() {
            return;
        }
        dir = parent;
    }
}

/// A name no other writer (in this or another instance) is using.
fn unique() -> u64 {
    // RandomState is seeded from the host's random source.
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Every object path under `dir` (a path relative to `/`, or "" for the root), into `out`.
fn walk(dir: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(format!("/{dir}")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
        if path == PARTIAL {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Everything known about the object at `path`.
fn stat(path: &ObjectPath) -> Result<ObjectInfo, Error> {
    match fs::metadata(file_of(path)) {
        Ok(meta) if meta.is_file() => Ok(info_of(path, &meta, None)),
        Ok(_) => Err(Error::NotFound(path.to_string())),
        Err(e) => Err(io_error("stat", path, e)),
    }
}

impl Guest for Driver {
    type Writer = FileWriter;
    type Reader = FileReader;

    fn get_capabilities() -> Capabilities {
        Capabilities::empty()
    }

    fn open_writer(_ctx: RequestContext, path: String, options: WriteOptions) -> Result<Writer, Error> {
        let path = ObjectPath::parse(&path)?;
        if options.create_only {
            return Err(Error::Unsupported("create-only writes".into()));
        }
        let open_error = |e: std::io::Error| Error::Io(format!("open `{}`: {e}", &*path));
        fs::create_dir_all(format!("/{PARTIAL}")).map_err(open_error)?;
        let temp = format!("/{PARTIAL}/{}.{:016x}", owner_tag(&options.owner), unique());
        let file = File::create_new(&temp).map_err(open_error)?;
        Ok(Writer::new(FileWriter { path, temp, file: RefCell::new(Some(file)) }))
    }

    fn open_reader(_ctx: RequestContext, path: String, range: Option<ByteRange>) -> Result<(Reader, ObjectInfo), Error> {
        let path = ObjectPath::parse(&path)?;
        if range.is_some() {
            return Err(Error::Unsupported("byte ranges".into()));
        }
        let file = File::open(file_of(&path)).map_err(|e| io_error("open", &path, e))?;
        let meta = file.metadata().map_err(|e| io_error("stat", &path, e))?;
        if meta.is_dir() {
            return Err(Error::NotFound(path.to_string()));
        }
        let info = info_of(&path, &meta, None);
        let reader = FileReader { file: RefCell::new(file), left: RefCell::new(meta.len()) };
        Ok((Reader::new(reader), info))
    }

    fn stat(_ctx: RequestContext, path: String) -> Result<ObjectInfo, Error> {
        stat(&ObjectPath::parse(&path)?)
    }

    fn exists(_ctx: RequestContext, path: String) -> Result<bool, Error> {
        match stat(&ObjectPath::parse(&path)?) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(_ctx: RequestContext, prefix: String, _cursor: Option<String>, _limit: u32) -> Result<ListPage, Error> {
        // Walk only the deepest directory the prefix names.
        let start = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !start.is_empty() {
            check(start)?;
        }
        let mut paths = Vec::new();
        walk(start, &mut paths).map_err(|e| io_error("list", &prefix, e))?;
        paths.retain(|p| p.starts_with(&prefix));
        paths.sort();
        let mut items = Vec::with_capacity(paths.len());
        for p in paths {
            match fs::metadata(file_of(&p)) {
                Ok(meta) => items.push(info_of(&p, &meta, None)),
                Err(e) if e.kind() == ErrorKind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(io_error("list", &p, e)),
            }
        }
        Ok(ListPage { items, next_cursor: None })
    }

    fn delete(_ctx: RequestContext, path: String) -> Result<(), Error> {
        let path = ObjectPath::parse(&path)?;
        stat(&path)?; // not-found for a directory too
        fs::remove_file(file_of(&path)).map_err(|e| io_error("delete", &path, e))?;
        // Else writing `a` after `a/b` was deleted would find a directory in its way.
        remove_empty_parents(&path);
        Ok(())
    }

    fn url(_ctx: RequestContext, _path: String, _expires_in_secs: u64) -> Result<String, Error> {
        Err(Error::Unsupported("signed URLs".into()))
    }

    fn list_temps(_ctx: RequestContext, cursor: Option<String>, limit: u32) -> Result<TempPage, Error> {
        let mut names: Vec<String> = match fs::read_dir(format!("/{PARTIAL}")) {
            Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::Io(format!("list temporary files: {e}"))),
        };
        names.retain(|n| cursor.as_ref().is_none_or(|c| n > c));
        names.sort();
        let limit = limit.clamp(1, 1000) as usize;
        let next_cursor = (names.len() > limit).then(|| names[limit - 1].clone());
        names.truncate(limit);
        let items = names
            .into_iter()
            .filter_map(|name| {
                let meta = fs::metadata(format!("/{PARTIAL}/{name}")).ok()?;
                let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
                let owner = name.split_once('.').map(|(o, _)| o.to_string()).filter(|o| o != "none");
                Some(TempObject { id: name, owner, size: Some(meta.len()), modified: Some(modified) })
            })
            .collect();
        Ok(TempPage { items, next_cursor })
    }

    fn remove_temp(_ctx: RequestContext, id: String) -> Result<(), Error> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(Error::InvalidPath(format!("`{id}` is not a temporary file of this driver")));
        }
        match fs::remove_file(format!("/{PARTIAL}/{id}")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(id)),
            Err(e) => Err(Error::Io(format!("remove temporary file `{id}`: {e}"))),
        }
    }
}

export!(Driver);
