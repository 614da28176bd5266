//! The calls into a driver that carry a path, with the path as any text: where a path becomes
//! the contract's `string`. [`Disk`]'s own methods come here with a checked `ObjectPath` or
//! `Prefix`; [`Disk::unchecked`] hands them out for the one job that needs any text: checking
//! that a driver refuses a bad path itself (the conformance suite's `paths/invalid-refused`,
//! the sandbox tests).

use bytes::Bytes;

use super::reader::{DriverReader, MAX_CHUNK};
use super::writer::{self, DriverWriter};
use super::{Disk, Kind, ObjectReader, ObjectWriter};
use crate::convert;
use crate::error::StorageError;
use crate::types::{ByteRange, ListPage, ObjectInfo, RequestContext, WriteOptions};

/// [`Disk`]'s calls that send the driver a path exactly as given (`Disk::unchecked`).
pub struct Unchecked<'a> {
    disk: &'a Disk,
}

impl<'a> Unchecked<'a> {
    pub(super) fn new(disk: &'a Disk) -> Unchecked<'a> {
        Unchecked { disk }
    }

    /// Writes a whole object from memory.
    pub async fn put_bytes(
        &self,
        ctx: &RequestContext,
        path: &str,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<ObjectInfo, StorageError> {
        let mut writer = self.writer(ctx, path, options).await?;
        let mut rest = data;
        while !rest.is_empty() {
            let chunk = rest.split_to(rest.len().min(MAX_CHUNK));
            if let Err(e) = writer.write(chunk).await {
                // Best effort: the write failed already; abort cleans up what it can.
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        writer.finish().await
    }

    /// Starts writing `path`.
    pub async fn writer(
        &self,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
    ) -> Result<ObjectWriter, StorageError> {
        match &self.disk.kind {
            Kind::Driver(_) => Ok(ObjectWriter::driver(self.driver_writer(ctx, path, options).await?)),
            Kind::Composite(c) => Ok(ObjectWriter::composite(c.clone().writer(ctx, path, options).await?)),
        }
    }

    /// Starts writing `path` on a disk served by a driver.
    pub(crate) async fn driver_writer(
        &self,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
    ) -> Result<DriverWriter, StorageError> {
        self.driver_writer_tagged(ctx, path, options, crate::owner::owners().begin()).await
    }

    /// Like [`Unchecked::driver_writer`], the write's temp objects tagged `owner`.
    pub(crate) async fn driver_writer_tagged(
        &self,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
        owner: crate::owner::OwnerTag,
    ) -> Result<DriverWriter, StorageError> {
        let mut lease = self.disk.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_open_writer(
                store,
                &convert::context_to_wit(ctx),
                path,
                &convert::write_options_to_wit(options, owner.as_str()),
            ),
        )
        .await;
        let writer = lease.end(r)?;
        DriverWriter::new(lease, writer, owner).await
    }

    /// Starts reading `path` (all of it, or `range`).
    pub async fn reader(
        &self,
        ctx: &RequestContext,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, StorageError> {
        match &self.disk.kind {
            Kind::Driver(_) => Ok(ObjectReader::driver(self.driver_reader(ctx, path, range).await?)),
            Kind::Composite(c) => Ok(ObjectReader::composite(c.clone().reader(ctx, path, range).await?)),
        }
    }

    /// Starts reading `path` (all of it, or `range`) on a disk served by a driver.
    pub(crate) async fn driver_reader(
        &self,
        ctx: &RequestContext,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<DriverReader, StorageError> {
        let mut lease = self.disk.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_open_reader(store, &convert::context_to_wit(ctx), path, range.map(convert::range_to_wit)),
        )
        .await;
        let (reader, info) = lease.end(r)?;
        let info = convert::info_from_wit(info);
        let remaining = match range {
            None => info.size,
            Some(r) => match info.size.checked_sub(r.offset) {
                Some(rest) => r.length.map_or(rest, |len| len.min(rest)),
                None => {
                    // The driver should have refused this range itself.
                    writer::drop_resource(&mut lease, reader).await;
                    return Err(lease.protocol_fault(format!(
                        "open-reader accepted offset {} past the end (size {})",
                        r.offset, info.size
                    )));
                }
            },
        };
        DriverReader::new(lease, reader, info, remaining, path.to_string()).await
    }

    /// Everything known about `path`.
    pub async fn stat(&self, ctx: &RequestContext, path: &str) -> Result<ObjectInfo, StorageError> {
        let pool = match &self.disk.kind {
            Kind::Driver(pool) => pool,
            Kind::Composite(c) => return c.stat(ctx, path).await,
        };
        let mut lease = pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, guest.call_stat(store, &convert::context_to_wit(ctx), path))
                .await;
        lease.end(r).map(convert::info_from_wit)
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, ctx: &RequestContext, path: &str) -> Result<bool, StorageError> {
        let pool = match &self.disk.kind {
            Kind::Driver(pool) => pool,
            Kind::Composite(c) => return c.exists(ctx, path).await,
        };
        let mut lease = pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, guest.call_exists(store, &convert::context_to_wit(ctx), path))
                .await;
        lease.end(r)
    }

    /// One page of the objects under `prefix`.
    pub async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StorageError> {
        let pool = match &self.disk.kind {
            Kind::Driver(pool) => pool,
            Kind::Composite(c) => return c.list(ctx, prefix, cursor, limit).await,
        };
        let mut lease = pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_list(store, &convert::context_to_wit(ctx), prefix, cursor, limit),
        )
        .await;
        lease.end(r).map(convert::page_from_wit)
    }

    /// Removes `path`.
    pub async fn delete(&self, ctx: &RequestContext, path: &str) -> Result<(), StorageError> {
        let pool = match &self.disk.kind {
            Kind::Driver(pool) => pool,
            Kind::Composite(c) => return c.delete(ctx, path).await,
        };
        let mut lease = pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, guest.call_delete(store, &convert::context_to_wit(ctx), path))
                .await;
        lease.end(r)
    }

    /// A URL serving `path` for `expires_in_secs`, if the driver can make one.
    pub async fn url(&self, ctx: &RequestContext, path: &str, expires_in_secs: u64) -> Result<String, StorageError> {
        let pool = match &self.disk.kind {
            Kind::Driver(pool) => pool,
            Kind::Composite(c) => {
                return Err(StorageError::Unsupported(format!(
                    "disk `{}` is made of other disks and has no URL of its own: the host serves its downloads, checked",
                    c.name()
                )));
            }
        };
        let mut lease = pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_url(store, &convert::context_to_wit(ctx), path, expires_in_secs),
        )
        .await;
        lease.end(r)
    }
}
