//! The metadata sidecar kept beside each object: content type, user metadata, sha256, size.
//!
//! The sidecar names the object content it describes (`object_id`: the object file's size and
//! modification time, taken before the rename). A sidecar whose id does not match the current
//! object file is stale — e.g. a crash between the object's rename and the sidecar's — and is
//! ignored: the object is then served with its size and time only.

use serde::{Deserialize, Serialize};
use stowage_plugin_sdk::driver::stowage::storage::types::{Error, ObjectInfo};
use stowage_plugin_sdk::wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorStat, ErrorCode, OpenFlags,
};

use crate::error::fs_error;
use crate::fs::{NO_FOLLOW, etag, modified_ms};

/// Sidecars larger than this are not ours (or are damaged) and are ignored.
const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// What the sidecar file holds, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sidecar {
    /// The object file's content version when it was written (see [`crate::fs::file_id`]).
    pub object_id: String,
    /// The object's size, as measured by the host.
    pub size: u64,
    /// Lowercase hex sha256 of the object, as measured by the host.
    pub sha256: String,
    /// The MIME type given when the object was written.
    pub content_type: Option<String>,
    /// User metadata given when the object was written.
    pub metadata: Vec<(String, String)>,
}

impl Sidecar {
    /// Reads the sidecar at `sidecar_path`, if there is a readable, well-formed one.
    pub fn read(root: &Descriptor, sidecar_path: &str) -> Option<Sidecar> {
        let file = root.open_at(NO_FOLLOW, sidecar_path, OpenFlags::empty(), DescriptorFlags::READ).ok()?;
        let mut bytes = Vec::new();
        loop {
            let (chunk, eof) = file.read(64 * 1024, bytes.len() as u64).ok()?;
            bytes.extend_from_slice(&chunk);
            if eof || chunk.is_empty() {
                break;
            }
            if bytes.len() as u64 > MAX_SIDECAR_BYTES {
                return None;
            }
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the sidecar to the new file `temp_path` and flushes it to disk. `path` is the
    /// object's, for messages.
    pub fn write_new(&self, root: &Descriptor, temp_path: &str, path: &str) -> Result<(), Error> {
        let bytes =
            serde_json::to_vec(self).map_err(|e| Error::Io(format!("cannot encode the metadata of `{path}`: {e}")))?;
        let file = root
            .open_at(NO_FOLLOW, temp_path, OpenFlags::CREATE | OpenFlags::EXCLUSIVE, DescriptorFlags::WRITE)
            .map_err(|code| fs_error(code, path))?;
        write_all(&file, &bytes, 0).map_err(|code| fs_error(code, path))?;
        file.sync().map_err(|code| fs_error(code, path))
    }
}

/// Writes all of `bytes` at `offset`.
pub fn write_all(file: &Descriptor, mut bytes: &[u8], mut offset: u64) -> Result<(), ErrorCode> {
    while !bytes.is_empty() {
        let n = file.write(bytes, offset)?;
        if n == 0 {
            return Err(ErrorCode::Io);
        }
        let n = usize::try_from(n).map_err(|_| ErrorCode::Overflow)?.min(bytes.len());
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

/// The info of the object at `path`, whose file has `stat` and identity `id`: with the content
/// type, metadata and sha256 of its sidecar when that sidecar describes this very file.
pub fn object_info(root: &Descriptor, path: &str, stat: &DescriptorStat, id: &str) -> ObjectInfo {
    let sidecar =
        Sidecar::read(root, &crate::paths::sidecar_path(path)).filter(|s| s.object_id == id && s.size == stat.size);
    let (sha256, content_type, metadata) = match sidecar {
        Some(s) => (Some(s.sha256), s.content_type, s.metadata),
        None => (None, None, Vec::new()),
    };
    ObjectInfo {
        path: path.to_string(),
        size: stat.size,
        sha256,
        content_type,
        modified: modified_ms(stat),
        etag: Some(etag(id)),
        metadata,
    }
}
