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

use crate::config::{ConfigError, LoadedConfig, PluginPlan, PluginSource};
use crate::driver::Disk;
use crate::engine::PluginEngine;
use crate::error::StorageError;
use crate::ledger::{Broken, Ledger, LedgerError, VerifyMode};
use crate::plugin::inspect::World;
use crate::plugin::{Loaded, PluginLoader};
use crate::policy::{Pipeline, Policy};
use crate::request::{Address, Request};
use crate::types::{RequestContext, Role, StorageClass, WriteOptions};

mod copy;
mod operations;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The engine could not be built.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// A disk's or policy's plugin could not be read, verified, compiled or linked.
    #[error("`{disk}`: plugin {plugin}: {reason}")]
    Plugin {
        /// The disk.
        disk: String,
        /// The plugin (bundled name or file).
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// Something the config names could not be set up (keys, plugin paths).
    #[error("{0}")]
    Setup(String),
    /// The ledger could not be opened.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The ledger does not verify: nothing is served until an operator looks.
    #[error(
        "the PHI ledger does not verify, so this host will not start: {0}. Find out what happened (`stowage ledger verify --full`); to go on, record that you did with `stowage ledger seal --reason TEXT`"
    )]
    LedgerBroken(Broken),
    /// A policy needs a driver capability a disk does not declare.
    #[error(
        "policy `{policy}` needs {} from every disk it guards, but disk `{disk}` (plugin {driver}) does not declare {} (it declares: {declared}). Put that disk behind a driver that supports it, or remove the policy",
        needs.join(", "), lacking.join(", ")
    )]
    Wiring {
        /// The policy.
        policy: String,
        /// What it needs.
        needs: Vec<&'static str>,
        /// The disk.
        disk: String,
        /// Its driver.
        driver: String,
        /// What the disk lacks of `needs`.
        lacking: Vec<&'static str>,
        /// What the disk declares.
        declared: crate::types::Capabilities,
    },
    /// A disk's granted directory could not be created.
    #[error("disk `{disk}`: granted directory {}: {reason}", dir.display())]
    GrantDir {
        /// The disk.
        disk: String,
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

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
}

impl Storage {
    /// Starts the host as configured and checks its wiring ([`Storage::check_wiring`]): what
    /// every host that serves requests calls.
    pub async fn open(config: &LoadedConfig) -> Result<Storage, StartError> {
        let storage = Self::start(config)?;
        storage.check_wiring().await?;
        // What a crash left: write-ahead records without an outcome, temp objects of writes
        // that never finished. Neither stops the start: what cannot be settled now is
        // settled next time.
        if let Err(e) = storage.reconcile().await {
            tracing::warn!(error = %e, "could not reconcile the ledger's open intents at start");
        }
        if let Err(e) = storage.sweep_orphans().await {
            tracing::warn!(error = %e, "could not sweep orphaned temp objects at start");
        }
        // A checkpoint an earlier process made reaches the checkpoint disk now.
        if let Err(e) = storage.copy_checkpoint().await {
            tracing::warn!(error = %e, "could not copy the latest ledger checkpoint to the checkpoint disk");
        }
        Ok(storage)
    }

    /// Builds the engine, creates granted directories, and verifies, compiles and links every
    /// disk's plugin. Fails (starting nothing) if any of it fails. Does not run the policies or
    /// drivers, so it cannot check their wiring: [`Storage::open`] does both.
    pub fn start(config: &LoadedConfig) -> Result<Storage, StartError> {
        let engine = PluginEngine::new().map_err(|e| StartError::Engine(e.to_string()))?;
        Self::start_with(config, &engine)
    }

    /// Like [`Storage::start`], on an existing engine.
    pub fn start_with(config: &LoadedConfig, engine: &PluginEngine) -> Result<Storage, StartError> {
        // Every plugin is verified and compiled before anything is created on disk: a refused
        // plugin means nothing starts and nothing is touched.
        let plugins = Plugins::load(config, engine)?;
        let ledger = Arc::new(Ledger::open(&config.ledger_path(), config.ledger_options())?);
        if let Err(broken) = ledger.verify(VerifyMode::Incremental)? {
            if !config.ledger_log_only() {
                return Err(StartError::LedgerBroken(broken));
            }
            tracing::error!(error = %broken, "the PHI ledger does not verify; going on because [ledger] on_failure = \"log\"");
        }
        Self::assemble(config, engine, plugins, ledger, None)
    }

    /// The set `config` describes, for a running host to swap in for this one (`serve`'s
    /// reload): every plugin verified, compiled and its wiring checked, on this set's engine
    /// and ledger. Nothing of this set is touched, so a refusal leaves it serving as it was.
    /// The ledger is the one thing that cannot change this way: a `[ledger]` that differs is
    /// refused (a host moves its ledger with a restart).
    pub async fn reload(&self, config: &LoadedConfig) -> Result<Storage, StartError> {
        let ledger = (config.ledger_path(), config.ledger_options(), config.ledger_log_only());
        if ledger != self.ledger_setup {
            return Err(StartError::Setup(
                "[ledger] differs from the running host's: the ledger cannot change while serving; restart to change it".into(),
            ));
        }
        let plugins = Plugins::load(config, &self.engine)?;
        let storage = Self::assemble(config, &self.engine, plugins, self.ledger.clone(), Some(self))?;
        storage.check_wiring().await?;
        Ok(storage)
    }

    /// The set of `plugins` on `engine` and `ledger`. A disk that is the same as one of
    /// `previous` (same plugin, grants, config and limits) keeps its usage count, so writes
    /// still running on the previous set count against the same quota.
    fn assemble(
        config: &LoadedConfig,
        engine: &PluginEngine,
        plugins: Plugins,
        ledger: Arc<Ledger>,
        previous: Option<&Storage>,
    ) -> Result<Storage, StartError> {
        let Plugins { loader, drivers, policies: policy_plugins } = plugins;
        let log_only = config.ledger_log_only();
        let mut policies = Vec::with_capacity(policy_plugins.len());
        for (plan, l) in policy_plugins {
            let grants = crate::state::Grants { ledger: Some(ledger.clone()), ..plan.grants };
            let policy = Policy::from_component(engine, &plan.name, &l.component, grants, plan.limits)
                .map_err(|e| plugin_error(&plan.name, &plan.plugin, e))?
                .with_required(plan.required);
            policies.push(policy);
        }
        let mut disks = BTreeMap::new();
        let mut orphan_after = BTreeMap::new();
        let mut usage = BTreeMap::new();
        let mut identity = BTreeMap::new();
        for (plan, l) in drivers {
            orphan_after.insert(plan.name.clone(), plan.orphan_after);
            let same = disk_identity(&plan);
            let kept = previous
                .filter(|p| p.identity.get(&plan.name) == Some(&same))
                .and_then(|p| p.usage.get(&plan.name).cloned());
            usage.insert(
                plan.name.clone(),
                kept.unwrap_or_else(|| crate::usage::Usage::new(plan.max_object, plan.quota)),
            );
            identity.insert(plan.name.clone(), same);
            if let Some(dir) = &plan.grants.dir {
                create_grant_dir(&plan.name, dir)?;
            }
            let disk = Disk::from_component(engine, &plan.name, &l.component, plan.grants, plan.limits)
                .map_err(|e| plugin_error(&plan.name, &plan.plugin, e))?
                .with_driver_name(&plan.plugin.name());
            disks.insert(plan.name, disk);
        }
        let classes = StorageClass::ALL.into_iter().map(|c| (c, config.disk_for(c).to_string())).collect();
        Ok(Storage {
            role: *config.config.role.get_ref(),
            disks,
            classes,
            pipeline: Pipeline::new(policies).log_only(log_only),
            ledger,
            ledger_setup: (config.ledger_path(), config.ledger_options(), log_only),
            engine: engine.clone(),
            loader,
            orphan_after,
            usage,
            identity,
            checkpoint_disk: config.config.ledger.checkpoint_disk.as_ref().map(|d| d.get_ref().clone()),
        })
    }

    /// Checks that every disk declares the driver capabilities the policies need (policies
    /// guard every disk). Asks each policy its interests and, if any needs something, each
    /// disk its capabilities (once).
    pub async fn check_wiring(&self) -> Result<(), StartError> {
        let mut declared_by: BTreeMap<&str, crate::types::Capabilities> = BTreeMap::new();
        for policy in self.pipeline.policies() {
            let needs = policy.interests().await.needs;
            let wanted = needs.names();
            if wanted.is_empty() {
                continue;
            }
            for (name, disk) in &self.disks {
                let declared = match declared_by.get(name.as_str()) {
                    Some(caps) => *caps,
                    None => {
                        let caps = disk.capabilities().await.map_err(|e| StartError::Plugin {
                            disk: name.clone(),
                            plugin: disk.driver_name().to_string(),
                            reason: format!("cannot ask its capabilities: {e}"),
                        })?;
                        *declared_by.entry(name).or_insert(caps)
                    }
                };
                let lacking = declared.lacking(&needs);
                if !lacking.is_empty() {
                    return Err(StartError::Wiring {
                        policy: policy.name().to_string(),
                        needs: wanted,
                        disk: name.clone(),
                        driver: disk.driver_name().to_string(),
                        lacking,
                        declared,
                    });
                }
            }
        }
        Ok(())
    }

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
        Ok(Target { disk: disk.clone(), class, path: addr.object_path()? })
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

/// Every plugin of a config, verified and compiled, with the loader that did it.
struct Plugins {
    loader: PluginLoader,
    drivers: Vec<(PluginPlan, Loaded)>,
    policies: Vec<(PluginPlan, Loaded)>,
}

impl Plugins {
    fn load(config: &LoadedConfig, engine: &PluginEngine) -> Result<Plugins, StartError> {
        let trust = config.trust_policy().map_err(StartError::Setup)?;
        if trust.allow_unsigned {
            tracing::warn!(
                "[trust] allow_unsigned = true: UNSIGNED PLUGIN FILES WILL RUN. Development only; sign plugins with `stowage plugin sign`."
            );
        }
        let loader = PluginLoader::new(engine, trust, config.cache_dir().as_deref());
        let drivers = load_all(&loader, config.disk_plans().map_err(StartError::Setup)?, World::Driver)?;
        let policies = load_all(&loader, config.policy_plans().map_err(StartError::Setup)?, World::Policy)?;
        Ok(Plugins { loader, drivers, policies })
    }
}

/// What makes a disk the same disk across a reload: its plugin, grants, config values and
/// size limits (digested: the config may hold secrets).
fn disk_identity(plan: &PluginPlan) -> [u8; 32] {
    use sha2::Digest as _;
    let g = &plan.grants;
    let text = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        plan.plugin, g.dir, g.config, g.outbound, plan.max_object, plan.quota
    );
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Verifies and compiles every plan's plugin as `world`, stopping at the first refusal.
fn load_all(
    loader: &PluginLoader,
    plans: Vec<PluginPlan>,
    world: World,
) -> Result<Vec<(PluginPlan, Loaded)>, StartError> {
    plans
        .into_iter()
        .map(|plan| match loader.load(&plan.plugin, &plan.pins, world) {
            Ok(l) => Ok((plan, l)),
            Err(e) => Err(plugin_error(&plan.name, &plan.plugin, e)),
        })
        .collect()
}

fn plugin_error(name: &str, plugin: &PluginSource, reason: impl std::fmt::Display) -> StartError {
    StartError::Plugin { disk: name.to_string(), plugin: plugin.to_string(), reason: reason.to_string() }
}

fn create_grant_dir(disk: &str, dir: &std::path::Path) -> Result<(), StartError> {
    let err = |reason: String| StartError::GrantDir { disk: disk.to_string(), dir: dir.to_path_buf(), reason };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err("exists but is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir).map_err(|e| {
            err(match e.kind() {
                std::io::ErrorKind::PermissionDenied => "permission denied while creating it".into(),
                std::io::ErrorKind::AlreadyExists => "a parent exists but is not a directory".into(),
                _ => format!("cannot create it: {e}"),
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(err("permission denied".into())),
        Err(e) => Err(err(format!(
            "cannot inspect it ({e}); a stale NFS handle or a corrupted volume entry looks like this: check the mount"
        ))),
    }
}
