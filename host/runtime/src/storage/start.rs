//! Bringing a set up: every plugin of a config's plan verified, compiled and linked, the
//! granted directories created, the ledger opened and verified, the policies' wiring checked;
//! and the same on a running host's engine and ledger for a reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::Storage;
use crate::config::{ConfigError, DiskPlan, LoadedConfig, PluginPlan, PolicyPlan};
use crate::driver::Disk;
use crate::engine::PluginEngine;
use crate::fallback::Fallback;
use crate::http::Outbound;
use crate::ledger::{Broken, Ledger, LedgerError, VerifyMode};
use crate::plugin::inspect::World;
use crate::plugin::{Loaded, PluginLoader};
use crate::policy::{Pipeline, Policy};
use crate::state::{DriverGrants, PolicyGrants};
use crate::types::StorageClass;

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
    /// A disk's way out to its granted endpoint could not be set up.
    #[error("disks.{disk}.grant: {reason}")]
    Outbound {
        /// The disk.
        disk: String,
        /// Why.
        reason: String,
    },
    /// The ledger of a reloaded config differs from the running host's.
    #[error("[ledger] differs from the running host's: the ledger cannot change while serving; restart to change it")]
    LedgerChanged,
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
    /// A policy could not start: it refused its config, or failed to declare its interests.
    #[error("policy `{policy}` cannot start: {reason}")]
    Policy {
        /// The policy.
        policy: String,
        /// Why, in the policy's words when it said.
        reason: String,
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
        match ledger.verify(VerifyMode::Incremental) {
            Ok(Ok(_)) => {}
            Ok(Err(broken)) => {
                if !config.ledger_log_only() {
                    return Err(StartError::LedgerBroken(broken));
                }
                tracing::error!(error = %broken, "the PHI ledger does not verify; going on because [ledger] on_failure = \"log\"");
            }
            // A shared database that does not answer yet: the host starts, refuses guarded
            // operations (each commit checks the chain again under the writers' lock) and
            // goes on once the database answers.
            Err(LedgerError::Postgres(why)) => {
                tracing::error!(error = %why, "the PHI ledger's database does not answer: guarded operations are refused until it does");
            }
            Err(e) => return Err(e.into()),
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
            return Err(StartError::LedgerChanged);
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
            let p = &plan.plugin;
            let grants = PolicyGrants { config: p.values.0.clone(), ledger: Some(ledger.clone()) };
            let policy = Policy::from_component(engine, &p.name, &l.component, grants, p.limits)
                .map_err(|e| plugin_error(p, e))?
                .with_required(plan.required);
            policies.push(policy);
        }
        let mut disks = BTreeMap::new();
        let mut orphan_after = BTreeMap::new();
        let mut usage = BTreeMap::new();
        let mut identity = BTreeMap::new();
        for (plan, l, grants) in drivers {
            let name = plan.plugin.name.clone();
            orphan_after.insert(name.clone(), plan.orphan_after);
            let same = disk_identity(&plan);
            let kept =
                previous.filter(|p| p.identity.get(&name) == Some(&same)).and_then(|p| p.usage.get(&name).cloned());
            usage.insert(name.clone(), kept.unwrap_or_else(|| crate::usage::Usage::new(plan.max_object, plan.quota)));
            identity.insert(name.clone(), same);
            if let Some(dir) = &plan.grant.dir {
                create_grant_dir(&name, dir)?;
            }
            let disk = Disk::from_component(engine, &name, &l.component, grants, plan.plugin.limits)
                .map_err(|e| plugin_error(&plan.plugin, e))?
                .with_driver_name(&plan.plugin.plugin.name());
            disks.insert(name, disk);
        }
        for plan in &config.plan().mirrors {
            let members = plan.members.iter().filter_map(|m| disks.get(m).cloned()).collect();
            let disk = crate::mirror::mirrored(&plan.name, members, plan.write_quorum).map_err(|e| {
                StartError::Plugin { disk: plan.name.clone(), plugin: "mirror".into(), reason: e.to_string() }
            })?;
            let members: Vec<[u8; 32]> = plan.members.iter().filter_map(|m| identity.get(m).copied()).collect();
            identity.insert(plan.name.clone(), mirror_identity(&members, plan.write_quorum));
            disks.insert(plan.name.clone(), disk);
        }
        let mut fallbacks = BTreeMap::new();
        let locks = crate::fallback::QueueLocks::beside(&config.ledger_path());
        for plan in config.plan().disks.iter() {
            let (name, Some(to)) = (&plan.plugin.name, &plan.fallback) else { continue };
            let Some(disk) = disks.get(to) else { continue };
            // The queue's state stays across a reload that keeps both disks as they were.
            let kept = previous
                .filter(|p| p.identity.get(to) == identity.get(to))
                .and_then(|p| p.fallbacks.get(name))
                .filter(|f| f.disk().name() == to)
                .map(|f| f.state().clone());
            fallbacks.insert(name.clone(), Fallback::new(name, disk.clone(), kept.unwrap_or_default(), locks.clone()));
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
            fallbacks,
        })
    }

    /// Checks that every disk declares the driver capabilities the policies need (policies
    /// guard every disk). Asks each policy its interests (one that cannot answer, or refuses
    /// its config, stops the start) and, if any needs something, each disk its capabilities
    /// (once).
    pub async fn check_wiring(&self) -> Result<(), StartError> {
        let mut declared_by: BTreeMap<&str, crate::types::Capabilities> = BTreeMap::new();
        for policy in self.pipeline.policies() {
            let needs = policy
                .ready()
                .await
                .map_err(|reason| StartError::Policy { policy: policy.name().to_string(), reason })?
                .needs;
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
}

/// Every plugin of a config, verified and compiled, with the loader that did it.
struct Plugins {
    loader: PluginLoader,
    /// Each disk with its grants made live (its connection pool built), before anything is
    /// created on disk.
    drivers: Vec<(DiskPlan, Loaded, DriverGrants)>,
    policies: Vec<(PolicyPlan, Loaded)>,
}

impl Plugins {
    fn load(config: &LoadedConfig, engine: &PluginEngine) -> Result<Plugins, StartError> {
        let plan = config.plan();
        let trust = plan.trust.clone();
        if trust.allow_unsigned {
            tracing::warn!(
                "[trust] allow_unsigned = true: UNSIGNED PLUGIN FILES WILL RUN. Development only; sign plugins with `stowage plugin sign`."
            );
        }
        let loader = PluginLoader::new(engine, trust, plan.cache_dir.as_deref());
        let drivers = load_all(&loader, &plan.disks, |d| &d.plugin, World::Driver)?
            .into_iter()
            .map(|(plan, l)| driver_grants(&plan).map(|grants| (plan, l, grants)))
            .collect::<Result<Vec<_>, _>>()?;
        let policies = load_all(&loader, &plan.policies, |p| &p.plugin, World::Policy)?;
        Ok(Plugins { loader, drivers, policies })
    }
}

/// What the disk of `plan` may reach, made live: its directory, its config values and its way
/// out to its granted endpoint (a connection pool its instances share).
fn driver_grants(plan: &DiskPlan) -> Result<DriverGrants, StartError> {
    let outbound = match &plan.grant.outbound {
        Some(o) => {
            let outbound = Outbound::new(o.endpoint.clone(), o.api_key.as_deref(), o.ca_file.as_deref())
                .map_err(|reason| StartError::Outbound { disk: plan.plugin.name.clone(), reason })?;
            Some(Arc::new(outbound))
        }
        None => None,
    };
    Ok(DriverGrants { dir: plan.grant.dir.clone(), config: plan.plugin.values.0.clone(), outbound })
}

/// What makes a disk the same disk across a reload: its plugin, grants, config values and
/// size limits (digested: the config may hold secrets).
fn disk_identity(plan: &DiskPlan) -> [u8; 32] {
    use sha2::Digest as _;
    let (p, g) = (&plan.plugin, &plan.grant);
    let outbound = g.outbound.as_ref().map(|o| (&o.endpoint, o.api_key.is_some()));
    let text = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        p.plugin, g.dir, p.values.0, outbound, plan.max_object, plan.quota
    );
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// What makes a mirror the same across a reload: its members (each the same disk) and quorum.
fn mirror_identity(members: &[[u8; 32]], quorum: usize) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    members.iter().for_each(|m| h.update(m));
    h.update(quorum.to_le_bytes());
    h.finalize().into()
}

/// Verifies and compiles every plan's plugin as `world`, stopping at the first refusal.
fn load_all<T: Clone>(
    loader: &PluginLoader,
    plans: &[T],
    plugin: impl Fn(&T) -> &PluginPlan,
    world: World,
) -> Result<Vec<(T, Loaded)>, StartError> {
    plans
        .iter()
        .map(|plan| {
            let p = plugin(plan);
            match loader.load(&p.plugin, &p.pins, world) {
                Ok(l) => Ok((plan.clone(), l)),
                Err(e) => Err(plugin_error(p, e)),
            }
        })
        .collect()
}

fn plugin_error(plan: &PluginPlan, reason: impl std::fmt::Display) -> StartError {
    StartError::Plugin { disk: plan.name.clone(), plugin: plan.plugin.to_string(), reason: reason.to_string() }
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
