//! The host's front door: loads every configured disk, resolves `CLASS_OR_DISK:path`
//! addresses (checking each path once, into an `ObjectPath` or a `Prefix`), and runs
//! operations on the right disk.
//!
//! Data flows one way: request → (policies, later) → driver → backend.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::sync::Arc;
use std::time::Instant;

use stowage_path::{ObjectPath, Prefix};

use crate::driver::Disk;
use crate::engine::PluginEngine;
use crate::error::StorageError;
use crate::fallback::Fallback;
use crate::ledger::Ledger;
use crate::plugin::PluginLoader;
use crate::policy::Pipeline;
use crate::request::{Address, Request};
use crate::types::{RequestContext, Role, StorageClass, WriteOptions};

mod copy;
mod operations;
mod resumable;
mod start;

pub use start::StartError;

/// How long a readiness probe of one disk may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A resolved address: which disk, through which class, which path (an object's, or a
/// listing's prefix).
#[derive(Clone)]
pub(crate) struct Target<P = ObjectPath> {
    /// The disk serving it.
    pub disk: Disk,
    /// The class it was addressed through, if any.
    pub class: Option<StorageClass>,
    /// The object path or prefix, checked.
    pub path: P,
}

/// Signs download URLs the host serves itself, for disks whose driver cannot (`stowage
/// serve`'s `/v1/signed/...`).
pub trait UrlSigner: Send + Sync {
    /// A URL serving `name:path` for `expires_in_secs`, and its id.
    fn sign(&self, name: &str, path: &str, expires_in_secs: u64) -> Result<(String, String), StorageError>;
}

/// All configured disks and the class → disk map.
pub struct Storage {
    role: Role,
    disks: BTreeMap<String, Disk>,
    classes: BTreeMap<StorageClass, String>,
    pipeline: Pipeline,
    ledger: Arc<Ledger>,
    /// Where the ledger is and how it was opened: what a reload may not change.
    ledger_setup: (PathBuf, stowage_ledger::LedgerOptions, bool),
    /// The engine every plugin runs on (a reload compiles on it too).
    engine: PluginEngine,
    loader: PluginLoader,
    /// Per disk: temp objects of unknown owners older than this are orphans.
    orphan_after: BTreeMap<String, std::time::Duration>,
    /// Per disk: its size limits and what it holds.
    usage: BTreeMap<String, Arc<crate::usage::Usage>>,
    /// Per disk: a digest of what makes it that disk (plugin, grants, config, limits).
    identity: BTreeMap<String, [u8; 32]>,
    /// The disk that keeps a copy of every checkpoint.
    checkpoint_disk: Option<String>,
    /// Per disk with a `fallback`: the disk that takes its writes while it is away.
    fallbacks: BTreeMap<String, Fallback>,
}

impl Storage {
    /// Writes, reads back and deletes a small object on every disk: what `/readyz` reports.
    /// Bypasses the policies: a probe is not a user's operation and must not fill the ledger.
    pub async fn probe(&self) -> Vec<(String, Result<std::time::Duration, StorageError>)> {
        let mut out = Vec::with_capacity(self.disks.len());
        for (name, disk) in &self.disks {
            let started = Instant::now();
            let req = Request::new();
            let ctx = self.context(disk, None, &req);
            let payload = bytes::Bytes::from(format!("stowage readiness probe {}", req.request_id));
            let round_trip = async {
                let path = ObjectPath::parse(&format!("stowage-probe/{}", req.request_id))?;
                disk.put_bytes(&ctx, &path, payload.clone(), &WriteOptions::default()).await?;
                // Delete whatever the read gives: a probe leaves nothing behind.
                let read = disk.get_bytes(&ctx, &path, None).await;
                let deleted = disk.delete(&ctx, &path).await;
                let (_, back) = read?;
                deleted?;
                if back != payload {
                    return Err(StorageError::Io("the probe object read back differs from what was written".into()));
                }
                Ok(started.elapsed())
            };
            let result = tokio::time::timeout(PROBE_TIMEOUT, round_trip).await.unwrap_or_else(|_| {
                Err(StorageError::Unavailable {
                    reason: format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
                    retryable: true,
                })
            });
            out.push((name.clone(), result));
        }
        out
    }

    /// The PHI ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The disk checkpoints are copied to, if one is configured.
    pub(crate) fn checkpoint_disk(&self) -> Option<&Disk> {
        self.checkpoint_disk.as_ref().and_then(|d| self.disks.get(d))
    }

    /// How old a temp object of an unknown owner on `disk` must be to count as an orphan.
    pub(crate) fn orphan_after(&self, disk: &str) -> std::time::Duration {
        self.orphan_after.get(disk).copied().unwrap_or(std::time::Duration::from_secs(86_400))
    }

    /// A disk by name (for the host's own maintenance: probes, sweeps, reconciling).
    pub(crate) fn disk(&self, name: &str) -> Option<&Disk> {
        self.disks.get(name)
    }

    /// The fallback of disk `name`, if it has one.
    pub(crate) fn fallback_of(&self, name: &str) -> Option<&Fallback> {
        self.fallbacks.get(name)
    }

    /// Every disk with a fallback, and its fallback.
    pub(crate) fn fallbacks(&self) -> impl Iterator<Item = (&String, &Fallback)> {
        self.fallbacks.iter()
    }

    /// Whether some disk is a mirror (and so has a repairer to run).
    pub fn has_mirrors(&self) -> bool {
        self.disks.values().any(|d| crate::mirror::of(d).is_some())
    }

    /// Disk `name`'s limits, if it has any.
    pub(crate) fn usage_of(&self, name: &str) -> Option<&Arc<crate::usage::Usage>> {
        self.usage.get(name)
    }

    /// Every disk.
    pub(crate) fn disks(&self) -> impl Iterator<Item = (&String, &Disk)> {
        self.disks.iter()
    }

    /// The policies, in order.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// (plugins compiled, plugins loaded from the compiled-code cache) at start-up.
    pub fn load_stats(&self) -> (u64, u64) {
        self.loader.stats()
    }

    /// The host's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Every disk's name. (Disks themselves are not handed out: every operation goes
    /// through the policies.)
    pub fn disk_names(&self) -> impl Iterator<Item = &str> {
        self.disks.keys().map(String::as_str)
    }

    /// Whether `name` is a storage class or a disk of this host.
    pub fn knows(&self, name: &str) -> bool {
        StorageClass::parse(name).is_some() || self.disks.contains_key(name)
    }

    /// (disk, plugin instances replaced after a fault since start), for every disk.
    pub fn disk_restarts(&self) -> Vec<(&str, u64)> {
        self.disks.iter().map(|(n, d)| (n.as_str(), d.restarts())).collect()
    }

    /// The disk a storage class name maps to, if `class` is one.
    pub fn class_disk(&self, class: &str) -> Option<&str> {
        StorageClass::parse(class).and_then(|c| self.classes.get(&c)).map(String::as_str)
    }

    /// Resolves an address's name: a class name goes through the class map, anything else
    /// must be a disk name. Returns the disk and the class it was addressed through.
    pub(crate) fn resolve_name(&self, name: &str) -> Result<(&Disk, Option<StorageClass>), StorageError> {
        let (class, disk_name) = match StorageClass::parse(name) {
            Some(class) => (Some(class), self.classes.get(&class).map(String::as_str)),
            None => (None, Some(name)),
        };
        let disk = disk_name.and_then(|n| self.disks.get(n)).ok_or_else(|| StorageError::UnknownName(name.into()))?;
        Ok((disk, class))
    }

    /// Resolves an object's address: its name, then its path, checked once here (every
    /// policy and driver call after this takes the [`ObjectPath`]).
    pub(crate) fn resolve(&self, addr: &Address) -> Result<Target, StorageError> {
        let (disk, class) = self.resolve_name(&addr.name)?;
        let path = addr.object_path()?;
        // A queue entry is reached through its own disk's address only: written, replaced or
        // removed through the fallback's, it would be lost or resurrected by the syncer.
        if crate::fallback::in_queue(&path) && self.fallbacks.values().any(|f| f.disk().name() == disk.name()) {
            return Err(StorageError::Denied(format!(
                "`{path}` is in the queue of writes this disk holds as another disk's fallback: use that disk's address"
            )));
        }
        // A mirror's own objects (its marks and block digests) are not the client's to touch.
        if crate::mirror::of(disk).is_some() && crate::mirror::reserved(&path) {
            return Err(StorageError::Denied(format!(
                "`{path}` is where the mirrored disk `{}` keeps its own records; choose another path",
                disk.name()
            )));
        }
        Ok(Target { disk: disk.clone(), class, path })
    }

    /// Resolves a listing's address: its name, then its prefix, checked.
    pub(crate) fn resolve_prefix(&self, addr: &Address) -> Result<Target<Prefix>, StorageError> {
        let (disk, class) = self.resolve_name(&addr.name)?;
        Ok(Target { disk: disk.clone(), class, path: addr.prefix()? })
    }

    /// The context a driver sees for `req` on `disk`, addressed through `class`.
    pub(crate) fn context(&self, disk: &Disk, class: Option<StorageClass>, req: &Request) -> RequestContext {
        RequestContext {
            role: self.role,
            class,
            disk: disk.name().to_string(),
            driver: disk.driver_name().to_string(),
            actor: req.actor.clone(),
            authenticated_as: req.authenticated_as.clone(),
            request_id: req.request_id.clone(),
            metadata: req.metadata.clone(),
        }
    }
}
