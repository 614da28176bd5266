//! A disk's streaming write and read, whatever serves the disk: one driver (`writer.rs`,
//! `reader.rs`) or a composite of several disks (`composite.rs`: a mirror). Everything above the disk (uploads,
//! fallbacks, copies, the server) holds these and never asks which.

use bytes::Bytes;

use super::composite::{CompositeReader, CompositeWriter};
use super::digest::Digest;
use super::reader::DriverReader;
use super::writer::{DriverWriter, Suspended};
use crate::error::StorageError;
use crate::types::ObjectInfo;

/// An object being written. The host measures every byte's sha256 on the way; `finish`
/// commits, dropping it aborts (in the background).
pub struct ObjectWriter(WriterKind);

#[allow(
    clippy::large_enum_variant,
    reason = "the driver's write is the common one and stays inline (no allocation per operation); a composite's is boxed"
)]
enum WriterKind {
    Driver(DriverWriter),
    Composite(Box<dyn CompositeWriter>),
}

impl ObjectWriter {
    pub(crate) fn driver(w: DriverWriter) -> Self {
        ObjectWriter(WriterKind::Driver(w))
    }

    pub(crate) fn composite(w: Box<dyn CompositeWriter>) -> Self {
        ObjectWriter(WriterKind::Composite(w))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        match &self.0 {
            WriterKind::Driver(w) => w.written(),
            WriterKind::Composite(w) => w.written(),
        }
    }

    /// The owner tag of this write (in its temp object's name and its write-ahead record).
    pub fn owner(&self) -> &str {
        match &self.0 {
            WriterKind::Driver(w) => w.owner(),
            WriterKind::Composite(w) => w.owner(),
        }
    }

    /// Writes one chunk. After an error the write can only be aborted.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match &mut self.0 {
            WriterKind::Driver(w) => w.write(chunk).await,
            WriterKind::Composite(w) => w.write(chunk).await,
        }
    }

    /// Seals and commits: the object becomes visible, whole.
    pub async fn finish(self) -> Result<ObjectInfo, StorageError> {
        self.finish_verified(None).await
    }

    /// Like [`ObjectWriter::finish`], but nothing is stored unless the bytes have
    /// `expected_sha256`.
    pub async fn finish_verified(mut self, expected_sha256: Option<&str>) -> Result<ObjectInfo, StorageError> {
        self.seal(expected_sha256).await?;
        self.commit().await
    }

    /// Ends the bytes: measures them (checking `expected_sha256`, when given) and closes the
    /// stream, without making the object visible. What it measured is what `commit` stores.
    pub async fn seal(&mut self, expected_sha256: Option<&str>) -> Result<Digest, StorageError> {
        match &mut self.0 {
            WriterKind::Driver(w) => w.seal(expected_sha256).await,
            WriterKind::Composite(w) => w.seal(expected_sha256).await,
        }
    }

    /// Makes the sealed object visible (sealing first if needed).
    pub async fn commit(self) -> Result<ObjectInfo, StorageError> {
        match self.0 {
            WriterKind::Driver(w) => w.commit().await,
            WriterKind::Composite(w) => w.commit().await,
        }
    }

    /// Drops the write as a crash would: no abort, its temp objects stay (for tests of what
    /// a crash leaves).
    pub fn crash(self) {
        match self.0 {
            WriterKind::Driver(w) => w.crash(),
            WriterKind::Composite(w) => w.crash(),
        }
    }

    /// Aborts: nothing of the write stays.
    pub async fn abort(self) -> Result<(), StorageError> {
        match self.0 {
            WriterKind::Driver(w) => w.abort().await,
            WriterKind::Composite(w) => w.abort().await,
        }
    }

    /// Lets a suspended write go without aborting it (see `DriverWriter::release`); any other
    /// write is aborted, as when dropped.
    pub async fn release(self) {
        match self.0 {
            WriterKind::Driver(w) => w.release().await,
            WriterKind::Composite(w) => {
                if let Err(e) = w.abort().await {
                    tracing::warn!(kind = e.kind().as_str(), "aborting a released write failed");
                }
            }
        }
    }

    /// Makes the bytes so far durable with the driver and returns what resumes the write from
    /// there (`resumable.rs`); the write also goes on here. `unsupported` if it cannot be
    /// suspended.
    pub async fn suspend(&mut self) -> Result<Suspended, StorageError> {
        match &mut self.0 {
            WriterKind::Driver(w) => w.suspend().await,
            WriterKind::Composite(_) => {
                Err(StorageError::Unsupported("a write to a disk made of other disks cannot be suspended".into()))
            }
        }
    }
}

/// An object being read: its info, then its bytes in chunks, up to the end of the range.
pub struct ObjectReader(ReaderKind);

#[allow(clippy::large_enum_variant, reason = "as for `WriterKind`: the driver's read stays inline")]
enum ReaderKind {
    Driver(DriverReader),
    Composite(Box<dyn CompositeReader>),
}

impl ObjectReader {
    pub(crate) fn driver(r: DriverReader) -> Self {
        ObjectReader(ReaderKind::Driver(r))
    }

    pub(crate) fn composite(r: Box<dyn CompositeReader>) -> Self {
        ObjectReader(ReaderKind::Composite(r))
    }

    /// The object's info, as the disk reported it when the read opened.
    pub fn info(&self) -> &ObjectInfo {
        match &self.0 {
            ReaderKind::Driver(r) => r.info(),
            ReaderKind::Composite(r) => r.info(),
        }
    }

    /// Replaces the info (a fallback's entry read as the primary's object).
    pub(crate) fn set_info(&mut self, info: ObjectInfo) {
        match &mut self.0 {
            ReaderKind::Driver(r) => r.set_info(info),
            ReaderKind::Composite(r) => r.set_info(info),
        }
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        match &self.0 {
            ReaderKind::Driver(r) => r.remaining(),
            ReaderKind::Composite(r) => r.remaining(),
        }
    }

    /// The next chunk (at most `max` bytes), or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StorageError> {
        match &mut self.0 {
            ReaderKind::Driver(r) => r.next_chunk(max).await,
            ReaderKind::Composite(r) => r.next_chunk(max).await,
        }
    }

    /// Ends the read early, releasing what it holds.
    pub async fn close(&mut self) {
        match &mut self.0 {
            ReaderKind::Driver(r) => r.close().await,
            ReaderKind::Composite(r) => r.close().await,
        }
    }
}
