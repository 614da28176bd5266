//! A disk: one driver component, its grants and limits, and the pool of its instances. This is
//! the "driver handle" the conformance suite runs against.

mod digest;
mod lease;
mod reader;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Component;

pub use digest::{Digest, Digester};
pub use reader::{MAX_CHUNK, ObjectReader};
pub use writer::ObjectWriter;

use crate::bindings::driver::DriverPre;
use crate::convert;
use crate::engine::{Limits, PluginEngine};
use crate::error::StorageError;
use crate::plugin::LoadError;
use crate::pool::Pool;
use crate::state::{DriverGrants, Grants, PluginState};
use crate::types::{ByteRange, Capabilities, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions};

/// The instances of one disk's driver.
pub(crate) type DriverPool = Pool<DriverPre<PluginState>>;

/// A storage disk served by a driver component.
#[derive(Clone)]
pub struct Disk {
    pool: Arc<DriverPool>,
    driver: Arc<str>,
}

impl Disk {
    /// Compiles `bytes` and links it as disk `name` with exactly `grants`.
    pub fn load(
        engine: &PluginEngine,
        name: &str,
        bytes: &[u8],
        grants: DriverGrants,
        limits: Limits,
    ) -> Result<Disk, LoadError> {
        let component = Component::new(engine.engine(), bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        Self::from_component(engine, name, &component, grants, limits)
    }

    /// Links an already compiled component as disk `name`.
    pub fn from_component(
        engine: &PluginEngine,
        name: &str,
        component: &Component,
        grants: DriverGrants,
        limits: Limits,
    ) -> Result<Disk, LoadError> {
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let linker = crate::imports::driver_linker(engine.engine()).map_err(link)?;
        let pre = DriverPre::new(linker.instantiate_pre(component).map_err(link)?).map_err(link)?;
        let pool = DriverPool::new(engine, name, pre, Grants::Driver(grants), limits);
        Ok(Disk { pool: Arc::new(pool), driver: "unnamed".into() })
    }

    /// The same disk, recording which plugin serves it (what policies see as `driver`).
    pub fn with_driver_name(mut self, driver: &str) -> Disk {
        self.driver = driver.into();
        self
    }

    /// The plugin serving this disk: a bundled name or a plugin file's stem.
    pub fn driver_name(&self) -> &str {
        &self.driver
    }

    /// The disk's name.
    pub fn name(&self) -> &str {
        self.pool.disk()
    }

    /// How many plugin instances were replaced after a fault since the disk was loaded.
    pub fn restarts(&self) -> u64 {
        self.pool.restarts()
    }

    /// Calls into the driver's instances running right now.
    pub fn calls_in_progress(&self) -> usize {
        self.pool.calls_in_progress()
    }

    /// Waits (at most `limit`) until clean-ups the disk runs in the background (the abort of a
    /// dropped writer, the release of a dropped reader) have finished; whether they have.
    pub async fn settled(&self, limit: std::time::Duration) -> bool {
        self.pool.settled(limit).await
    }

    /// GETs `url` through the disk's granted endpoint (what a holder of the driver's signed
    /// URL would get); `None` when the disk is granted no endpoint.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Option<Result<(u16, Bytes), String>> {
        let outbound = self.pool.grants().outbound()?.clone();
        Some(outbound.fetch(url, max_bytes).await)
    }

    /// What the driver declares it supports.
    pub async fn capabilities(&self) -> Result<Capabilities, StorageError> {
        let mut lease = self.pool.lease().await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(store.data().deadline, guest.call_get_capabilities(store)).await;
        lease.end_infallible(r).map(convert::capabilities_from_wit)
    }

    /// Starts writing `path`.
    pub async fn writer(
        &self,
        ctx: &RequestContext,
        path: &str,
        options: &WriteOptions,
    ) -> Result<ObjectWriter, StorageError> {
        let owner = crate::owner::owners().begin();
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        ObjectWriter::new(lease, writer, owner).await
    }

    /// Starts reading `path` (all of it, or `range`).
    pub async fn reader(
        &self,
        ctx: &RequestContext,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        ObjectReader::new(lease, reader, info, remaining, path.to_string()).await
    }

    /// Everything known about `path`.
    pub async fn stat(&self, ctx: &RequestContext, path: &str) -> Result<ObjectInfo, StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, guest.call_stat(store, &convert::context_to_wit(ctx), path))
                .await;
        lease.end(r).map(convert::info_from_wit)
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, ctx: &RequestContext, path: &str) -> Result<bool, StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, guest.call_delete(store, &convert::context_to_wit(ctx), path))
                .await;
        lease.end(r)
    }

    /// A URL serving `path` for `expires_in_secs`, if the driver can make one.
    pub async fn url(&self, ctx: &RequestContext, path: &str, expires_in_secs: u64) -> Result<String, StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_url(store, &convert::context_to_wit(ctx), path, expires_in_secs),
        )
        .await;
        lease.end(r)
    }

    /// A page of the temporary objects unfinished writes left.
    pub async fn list_temps(
        &self,
        ctx: &RequestContext,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TempPage, StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_list_temps(store, &convert::context_to_wit(ctx), cursor, limit),
        )
        .await;
        lease.end(r).map(convert::temp_page_from_wit)
    }

    /// Removes one temporary object.
    pub async fn remove_temp(&self, ctx: &RequestContext, id: &str) -> Result<(), StorageError> {
        let mut lease = self.pool.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(
            store.data().deadline,
            guest.call_remove_temp(store, &convert::context_to_wit(ctx), id),
        )
        .await;
        lease.end(r)
    }

    /// Writes a whole object from memory (small objects; stream large ones with `writer`).
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

    /// Reads a whole object (or range) into memory (small objects; stream large ones with
    /// `reader`).
    pub async fn get_bytes(
        &self,
        ctx: &RequestContext,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, Vec<u8>), StorageError> {
        let mut reader = self.reader(ctx, path, range).await?;
        let mut out = Vec::with_capacity(reader.remaining().min(MAX_CHUNK as u64) as usize);
        while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await? {
            out.extend_from_slice(&chunk);
        }
        Ok((reader.info().clone(), out))
    }
}
