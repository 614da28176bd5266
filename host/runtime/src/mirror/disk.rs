//! A mirror as a disk: the disk layer's `Composite` traits, implemented by the mirror, its
//! writer and its reader.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use super::core::Mirror;
use super::reader::MirrorReader;
use super::writer::MirrorWriter;
use crate::driver::{BoxFuture, Composite, CompositeReader, CompositeWriter, Digest, Disk};
use crate::error::StorageError;
use crate::types::{ByteRange, Capabilities, ListPage, ObjectInfo, RequestContext, WriteOptions};

impl Composite for Mirror {
    fn name(&self) -> &str {
        &self.name
    }

    fn calls_in_progress(&self) -> usize {
        self.members.iter().map(Disk::calls_in_progress).sum()
    }

    fn settled(&self, limit: std::time::Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let all = self.members.iter().map(|d| Box::pin(d.settled(limit)));
            futures::future::join_all(all).await.into_iter().all(|s| s)
        })
    }

    fn capabilities(&self) -> BoxFuture<'_, Result<Capabilities, StorageError>> {
        Box::pin(Mirror::capabilities(self))
    }

    fn stat<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<ObjectInfo, StorageError>> {
        Box::pin(Mirror::stat(self, ctx, path))
    }

    fn exists<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(Mirror::exists(self, ctx, path))
    }

    fn list<'a>(
        &'a self,
        ctx: &'a RequestContext,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<ListPage, StorageError>> {
        Box::pin(Mirror::list(self, ctx, prefix, cursor, limit))
    }

    fn delete<'a>(&'a self, ctx: &'a RequestContext, path: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(Mirror::delete(self, ctx, path))
    }

    fn writer<'a>(
        self: Arc<Self>,
        ctx: &'a RequestContext,
        path: &'a str,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn CompositeWriter>, StorageError>> {
        Box::pin(async move {
            let w = MirrorWriter::open(self, ctx, path, options).await?;
            Ok(Box::new(w) as Box<dyn CompositeWriter>)
        })
    }

    fn reader<'a>(
        self: Arc<Self>,
        ctx: &'a RequestContext,
        path: &'a str,
        range: Option<ByteRange>,
    ) -> BoxFuture<'a, Result<Box<dyn CompositeReader>, StorageError>> {
        Box::pin(async move {
            let r = MirrorReader::open(self, ctx, path, range).await?;
            Ok(Box::new(r) as Box<dyn CompositeReader>)
        })
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl CompositeWriter for MirrorWriter {
    fn written(&self) -> u64 {
        MirrorWriter::written(self)
    }

    fn owner(&self) -> &str {
        MirrorWriter::owner(self)
    }

    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(MirrorWriter::write(self, chunk))
    }

    fn seal<'a>(&'a mut self, expected_sha256: Option<&'a str>) -> BoxFuture<'a, Result<Digest, StorageError>> {
        Box::pin(MirrorWriter::seal(self, expected_sha256))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<ObjectInfo, StorageError>> {
        Box::pin(MirrorWriter::commit(*self))
    }

    fn crash(self: Box<Self>) {
        MirrorWriter::crash(*self)
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(MirrorWriter::abort(*self))
    }
}

impl CompositeReader for MirrorReader {
    fn info(&self) -> &ObjectInfo {
        MirrorReader::info(self)
    }

    fn set_info(&mut self, info: ObjectInfo) {
        MirrorReader::set_info(self, info)
    }

    fn remaining(&self) -> u64 {
        MirrorReader::remaining(self)
    }

    fn next_chunk(&mut self, max: usize) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
        Box::pin(MirrorReader::next_chunk(self, max))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(MirrorReader::close(self))
    }
}
