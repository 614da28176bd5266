//! Copy and move between any two addresses (two paths of a disk, two classes, two disks):
//! streamed a chunk at a time, through the policies on both sides (the read is recorded on
//! the source, the write on the destination), and verified end to end.
//!
//! Verification: the destination is committed only if the bytes written have the sha256 the
//! source recorded for the object (when the source knows one), so a copy of bytes that rotted
//! at rest is refused with `digest-mismatch` and nothing is stored. After the commit the
//! destination's own stat must report the same size and sha256. A move (`stowage mv`) deletes
//! the source only once `copy` returned `Ok`.

use bytes::Bytes;

use super::Storage;
use crate::driver::MAX_CHUNK;
use crate::error::StorageError;
use crate::request::{Address, Request};
use crate::types::{ObjectInfo, WriteOptions};

impl Storage {
    /// Copies the object at `from` to `to` (replacing what is there), carrying its content
    /// type and metadata, calling `progress` with each chunk's length and the object's size;
    /// returns the destination's info once it verified.
    pub async fn copy(
        &self,
        from: &Address,
        to: &Address,
        req: &Request,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ObjectInfo, StorageError> {
        // The same object under two names (a class and its disk) is still the same object: a
        // move onto it would delete the only copy.
        // Compared as written, before either path is checked (the reader and the writer check
        // them): a bad path copied onto itself is refused as the same object.
        let (source_disk, target_disk) = (self.resolve_name(&from.name)?.0, self.resolve_name(&to.name)?.0);
        if source_disk.name() == target_disk.name() && from.path == to.path {
            return Err(StorageError::InvalidPath(format!(
                "`{}:{}` and `{}:{}` are the same object (disk `{}`); it cannot be copied onto itself",
                from.name,
                from.path,
                to.name,
                to.path,
                source_disk.name()
            )));
        }
        let mut reader = self.reader(from, req, None).await?;
        let source = reader.info().clone();
        let options = WriteOptions {
            content_type: source.content_type.clone(),
            metadata: source.metadata.clone(),
            create_only: false,
        };
        let mut writer = self.writer(to, req, &options).await?;
        loop {
            let chunk: Bytes = match reader.next_chunk(MAX_CHUNK).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            let n = chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                let _ = writer.abort().await;
                return Err(e);
            }
            progress(n, source.size);
        }
        let copied = writer.finish_verified(source.sha256.as_deref()).await?;
        let landed = self.stat(to, req).await?;
        let matches = landed.size == source.size
            && (source.sha256.is_none() || landed.sha256 == source.sha256 || landed.sha256.is_none());
        if !matches || copied.size != source.size {
            return Err(StorageError::Io(format!(
                "the copy at `{}:{}` does not match its source (size {} vs {}, sha256 {:?} vs {:?})",
                to.name, to.path, landed.size, source.size, landed.sha256, source.sha256
            )));
        }
        Ok(copied)
    }
}
