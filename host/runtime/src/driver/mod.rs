//! A disk: one driver component, its grants and limits, and the pool of its instances. This is
//! the "driver handle" the conformance suite runs against. Its calls take an `ObjectPath` (a
//! `Prefix` to list), so a path reaches a driver checked; they go through `unchecked.rs`,
//! where a path becomes the contract's `string`. `Disk::unchecked` hands those calls out, to
//! test that a driver refuses a bad path itself.

mod composite;
mod digest;
mod lease;
mod object;
mod reader;
mod resumable;
mod unchecked;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use stowage_path::{ObjectPath, Prefix};
use wasmtime::component::Component;

pub use composite::{BoxFuture, Composite, CompositeReader, CompositeWriter};
pub use digest::{Digest, DigestState, Digester};
pub use object::{ObjectReader, ObjectWriter};
pub(crate) use reader::DriverReader;
pub use reader::MAX_CHUNK;
pub use unchecked::Unchecked;
pub(crate) use writer::DriverWriter;
pub use writer::Suspended;

use crate::convert;
use crate::engine::{Limits, PluginEngine};
use crate::error::StorageError;
use crate::plugin::LoadError;
use crate::pool::Pool;
use crate::state::{DriverGrants, Grants};
use crate::types::{ByteRange, Capabilities, ListPage, ObjectInfo, RequestContext, TempPage, WriteOptions};

/// The instances of one disk's driver.
pub(crate) type DriverPool = Pool<lease::DriverPrelinked>;

/// A storage disk: served by a driver component, or made of other disks (a mirror).
#[derive(Clone)]
pub struct Disk {
    kind: Kind,
    driver: Arc<str>,
}

/// What serves a disk.
#[derive(Clone)]
enum Kind {
    /// One driver's instances.
    Driver(Arc<DriverPool>),
    /// Other disks (a mirror: `crate::mirror`).
    Composite(Arc<dyn Composite>),
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
        let pre = lease::DriverPrelinked::new(linker.instantiate_pre(component).map_err(link)?).map_err(link)?;
        let pool = DriverPool::new(engine, name, pre, Grants::Driver(grants), limits);
        Ok(Disk { kind: Kind::Driver(Arc::new(pool)), driver: "unnamed".into() })
    }

    /// A disk made of other disks, `driver` naming what kind (`mirror`).
    pub fn composite(composite: Arc<dyn Composite>, driver: &str) -> Disk {
        Disk { kind: Kind::Composite(composite), driver: driver.into() }
    }

    /// What this disk is made of, if it is made of other disks.
    pub fn as_composite(&self) -> Option<&Arc<dyn Composite>> {
        match &self.kind {
            Kind::Composite(c) => Some(c),
            Kind::Driver(_) => None,
        }
    }

    /// The disk's driver instances; refused for a composite (whose members have them).
    pub(crate) fn pool(&self) -> Result<&Arc<DriverPool>, StorageError> {
        match &self.kind {
            Kind::Driver(pool) => Ok(pool),
            Kind::Composite(c) => Err(StorageError::Unsupported(format!(
                "disk `{}` is made of other disks: it has no driver of its own",
                c.name()
            ))),
        }
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
        match &self.kind {
            Kind::Driver(pool) => pool.disk(),
            Kind::Composite(c) => c.name(),
        }
    }

    /// How many plugin instances were replaced after a fault since the disk was loaded.
    pub fn restarts(&self) -> u64 {
        // A composite's members count their own.
        self.pool().map_or(0, |p| p.restarts())
    }

    /// Calls into the driver's instances running right now.
    pub fn calls_in_progress(&self) -> usize {
        match &self.kind {
            Kind::Driver(pool) => pool.calls_in_progress(),
            Kind::Composite(c) => c.calls_in_progress(),
        }
    }

    /// Waits (at most `limit`) until clean-ups the disk runs in the background (the abort of a
    /// dropped writer, the release of a dropped reader) have finished; whether they have.
    pub async fn settled(&self, limit: std::time::Duration) -> bool {
        match &self.kind {
            Kind::Driver(pool) => pool.settled(limit).await,
            Kind::Composite(c) => c.settled(limit).await,
        }
    }

    /// GETs `url` through the disk's granted endpoint (what a holder of the driver's signed
    /// URL would get); `None` when the disk is granted no endpoint.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Option<Result<(u16, Bytes), String>> {
        let outbound = self.pool().ok()?.grants().outbound()?.clone();
        Some(outbound.fetch(url, max_bytes).await)
    }

    /// What the driver declares it supports.
    pub async fn capabilities(&self) -> Result<Capabilities, StorageError> {
        if let Kind::Composite(c) = &self.kind {
            return c.capabilities().await;
        }
        let mut lease = self.pool()?.lease().await?;
        let (store, guest) = lease.begin()?;
        let r = crate::pool::bounded(store.data().deadline, guest.call_get_capabilities(store)).await;
        lease.end_infallible(r).map(convert::capabilities_from_wit)
    }

    /// Starts writing `path`.
    pub async fn writer(
        &self,
        ctx: &RequestContext,
        path: &ObjectPath,
        options: &WriteOptions,
    ) -> Result<ObjectWriter, StorageError> {
        self.unchecked().writer(ctx, path, options).await
    }

    /// Starts reading `path` (all of it, or `range`).
    pub async fn reader(
        &self,
        ctx: &RequestContext,
        path: &ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, StorageError> {
        self.unchecked().reader(ctx, path, range).await
    }

    /// Everything known about `path`.
    pub async fn stat(&self, ctx: &RequestContext, path: &ObjectPath) -> Result<ObjectInfo, StorageError> {
        self.unchecked().stat(ctx, path).await
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, ctx: &RequestContext, path: &ObjectPath) -> Result<bool, StorageError> {
        self.unchecked().exists(ctx, path).await
    }

    /// One page of the objects under `prefix`.
    pub async fn list(
        &self,
        ctx: &RequestContext,
        prefix: &Prefix,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StorageError> {
        self.unchecked().list(ctx, prefix, cursor, limit).await
    }

    /// Removes `path`.
    pub async fn delete(&self, ctx: &RequestContext, path: &ObjectPath) -> Result<(), StorageError> {
        self.unchecked().delete(ctx, path).await
    }

    /// A URL serving `path` for `expires_in_secs`, if the driver can make one.
    pub async fn url(
        &self,
        ctx: &RequestContext,
        path: &ObjectPath,
        expires_in_secs: u64,
    ) -> Result<String, StorageError> {
        self.unchecked().url(ctx, path, expires_in_secs).await
    }

    /// A page of the temporary objects unfinished writes left.
    pub async fn list_temps(
        &self,
        ctx: &RequestContext,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<TempPage, StorageError> {
        if self.as_composite().is_some() {
            // A composite keeps no temp objects: its members do, and are swept as disks.
            return Ok(TempPage { items: Vec::new(), next_cursor: None });
        }
        let mut lease = self.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        if self.as_composite().is_some() {
            // It lists none, so any id is one it never gave.
            return Err(StorageError::NotFound(format!("temp object `{id}`")));
        }
        let mut lease = self.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
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
        path: &ObjectPath,
        data: Bytes,
        options: &WriteOptions,
    ) -> Result<ObjectInfo, StorageError> {
        self.unchecked().put_bytes(ctx, path, data, options).await
    }

    /// Reads a whole object (or range) into memory (small objects; stream large ones with
    /// `reader`).
    pub async fn get_bytes(
        &self,
        ctx: &RequestContext,
        path: &ObjectPath,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, Vec<u8>), StorageError> {
        let mut reader = self.unchecked().reader(ctx, path, range).await?;
        let mut out = Vec::with_capacity(reader.remaining().min(MAX_CHUNK as u64) as usize);
        while let Some(chunk) = reader.next_chunk(MAX_CHUNK).await? {
            out.extend_from_slice(&chunk);
        }
        Ok((reader.info().clone(), out))
    }

    /// The calls that take a path as any text, unchecked: only to check that a driver refuses
    /// a bad path itself ([`Unchecked`]).
    pub fn unchecked(&self) -> Unchecked<'_> {
        Unchecked::new(self)
    }
}
