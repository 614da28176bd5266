//! Writes that outlive the driver instance, and the host process, that began them
//! (`wit/resumable.wit`, contract 0.3.1): what upload sessions that survive a restart, or move
//! to another host, stand on.
//!
//! A resumable write is opened with an owner tag of its own (the session's, not this process's:
//! its temp objects must not look orphaned when this process ends), suspended after each
//! request ([`ObjectWriter::suspend`]: the driver makes its bytes durable and gives a token; the
//! host keeps its digest's state), and continued anywhere from the last [`Suspended`]
//! ([`Disk::resume_writer`]). A driver built against 0.3.0, or one whose `suspend` answers
//! `unsupported`, cannot: the caller keeps such a write in memory, as before.

use super::digest::Digester;
use super::writer::{DriverWriter, Suspended};
use super::{Disk, Kind, ObjectWriter};
use crate::convert;
use crate::error::StorageError;
use crate::owner::OwnerTag;
use crate::types::{RequestContext, WriteOptions};

fn session_tag(owner: &str) -> Result<OwnerTag, StorageError> {
    OwnerTag::external(owner)
        .ok_or_else(|| StorageError::Io(format!("`{owner}` is not an owner tag (1 to 64 of a-z, 0-9 and -)")))
}

impl Disk {
    /// Whether this disk's driver can suspend writes (it exports `resumable`; it may still
    /// answer `unsupported` for a write). A disk made of other disks cannot.
    pub fn resumable(&self) -> bool {
        match &self.kind {
            Kind::Driver(pool) => pool.prelinked().resumable(),
            Kind::Composite(_) => false,
        }
    }

    /// Starts a write of `path` that can be suspended, its temp objects tagged `owner` (an
    /// upload session's tag, which outlives this process). `unsupported` on a disk that is not
    /// [`Disk::resumable`].
    pub async fn resumable_writer(
        &self,
        ctx: &RequestContext,
        path: &stowage_path::ObjectPath,
        options: &WriteOptions,
        owner: &str,
    ) -> Result<ObjectWriter, StorageError> {
        self.refuse_unless_resumable()?;
        let tag = session_tag(owner)?;
        let w = self.unchecked().driver_writer_tagged(ctx, path, options, tag).await?;
        Ok(ObjectWriter::driver(w))
    }

    /// Continues the write `suspended` describes, as it stood then (bytes written after it are
    /// dropped), in any instance of this disk's driver, on any host. `path`, `options` and
    /// `owner` are those the write was opened with.
    pub async fn resume_writer(
        &self,
        ctx: &RequestContext,
        path: &stowage_path::ObjectPath,
        options: &WriteOptions,
        owner: &str,
        suspended: &Suspended,
    ) -> Result<ObjectWriter, StorageError> {
        self.refuse_unless_resumable()?;
        let tag = session_tag(owner)?;
        let digester = Digester::resume(&suspended.digest).map_err(StorageError::Io)?;
        let mut lease = self.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, bindings) = lease.begin_bindings(std::time::Duration::ZERO)?;
        let Some(resumable) = bindings.resumable() else { return Err(self.not_resumable()) };
        let r = crate::pool::bounded(
            store.data().deadline,
            resumable.call_resume(
                &mut *store,
                &convert::context_to_wit(ctx),
                path,
                &convert::write_options_to_wit(options, tag.as_str()),
                &suspended.token,
            ),
        )
        .await;
        let writer = lease.end(r)?;
        let w = DriverWriter::with_digester(lease, writer, tag, digester, true).await?;
        Ok(ObjectWriter::driver(w))
    }

    /// Discards a suspended write no writer has open (its session was discarded or expired);
    /// `not-found` if it is gone already.
    pub async fn discard_suspended(&self, ctx: &RequestContext, token: &str) -> Result<(), StorageError> {
        self.refuse_unless_resumable()?;
        let mut lease = self.pool()?.lease_for(ctx.authenticated_as.as_deref()).await?;
        let (store, bindings) = lease.begin_bindings(std::time::Duration::ZERO)?;
        let Some(resumable) = bindings.resumable() else { return Err(self.not_resumable()) };
        let r = crate::pool::bounded(
            store.data().deadline,
            resumable.call_discard(&mut *store, &convert::context_to_wit(ctx), token),
        )
        .await;
        lease.end(r)
    }

    fn refuse_unless_resumable(&self) -> Result<(), StorageError> {
        if self.resumable() { Ok(()) } else { Err(self.not_resumable()) }
    }

    fn not_resumable(&self) -> StorageError {
        StorageError::Unsupported(format!(
            "disk `{}` cannot suspend writes: its driver does not export `resumable` (contract 0.3.1), or it is made of other disks",
            self.name()
        ))
    }
}
