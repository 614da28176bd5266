//! A disk made of other disks (a mirror, `crate::mirror`): what the disk layer asks of one.
//! The disk layer names only these traits, never the module that implements them, so data and
//! imports flow one way: the composite builds on disks, never the reverse.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::digest::Digest;
use crate::error::StorageError;
use crate::types::{ByteRange, Capabilities, ListPage, ObjectInfo, RequestContext, WriteOptions};

/// A boxed, sendable future (a composite's calls are dynamic, and may call disks in turn).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A disk whose calls go to other disks. Paths arrive as given (see `Unchecked`); the disks
/// it calls check them.
pub trait Composite: Send + Sync + 'static {
    /// The disk's name.
    fn name(&self) -> &str;
    /// Calls running right now in the disks it is made of.
    fn calls_in_progress(&self) -> usize;
    /// Waits (at most `limit`) until the background clean-ups of the disks it is made of have
    /// finished; whether they have.
    fn settled(&self, limit: std::time::Duration) -> BoxFuture<'_, bool>;
    /// What it supports.
    fn capabilities(&self) -> BoxFuture<'_, Result<Capabilities, StorageError>>;
    /// Everything known about `path`.
    fn stat<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<ObjectInfo, StorageError>>;
    /// Whether an object exists at `path`.
    fn exists<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// One page of the objects under `prefix`.
    fn list<'a>(
        &'a self,
        ctx: &'a RequestContext,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<ListPage, StorageError>>;
    /// Removes `path`.
    fn delete<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Starts writing `path`.
    fn writer<'a>(
        self: Arc<Self>,
        ctx: &'a RequestContext,
        path: &'a str,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn CompositeWriter>, StorageError>>;
    /// Starts reading `path` (all of it, or `range`).
    fn reader<'a>(
        self: Arc<Self>,
        ctx: &'a RequestContext,
        path: &'a str,
        range: Option<ByteRange>,
    ) -> BoxFuture<'a, Result<Box<dyn CompositeReader>, StorageError>>;
    /// Itself, to be told apart by type (`crate::mirror::of`).
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A composite's streaming write: what [`super::ObjectWriter`] does, for it.
pub trait CompositeWriter: Send {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// The owner tag of the write.
    fn owner(&self) -> &str;
    /// Writes one chunk.
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StorageError>>;
    /// Ends and measures the bytes, checking `expected_sha256` when given.
    fn seal<'a>(&'a mut self, expected_sha256: Option<&'a str>) -> BoxFuture<'a, Result<Digest, StorageError>>;
    /// Makes the object visible.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<ObjectInfo, StorageError>>;
    /// Drops the write as a crash would.
    fn crash(self: Box<Self>);
    /// Aborts the write.
    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>>;
}

/// A composite's streaming read: what [`super::ObjectReader`] does, for it.
pub trait CompositeReader: Send {
    /// The object's info.
    fn info(&self) -> &ObjectInfo;
    /// Replaces the info.
    fn set_info(&mut self, info: ObjectInfo);
    /// Bytes left to read.
    fn remaining(&self) -> u64;
    /// The next chunk (at most `max` bytes), or `None` at the end.
    fn next_chunk(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>>;
    /// Ends the read early.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}
