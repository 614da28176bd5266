//! Loading plugin components, fail-closed: read bytes → verify the signature against trusted
//! keys → check pins → check the world → compile (or load this host's own compiled copy from
//! the cache).

pub mod cache;
pub mod inspect;
pub mod signature;

/// Signing-key files (the config reads public keys; the CLI writes key pairs).
pub use stowage_config::keys;
pub use stowage_config::{Pins, PluginSource, TrustPolicy};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::engine::PluginEngine;
use inspect::World;
use signature::SignatureError;

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(String),
    /// Its signature did not verify.
    #[error("signature check failed: {0}")]
    Signature(#[from] SignatureError),
    /// A pin in config does not match.
    #[error("pin mismatch: {0}")]
    Pin(String),
    /// Not a component, or not of the expected world.
    #[error("{0}")]
    World(String),
    /// The engine could not compile it.
    #[error("does not compile: {0}")]
    Compile(String),
    /// It compiled, but does not link as the world it is loaded as (it imports what the host
    /// does not offer, or exports something else).
    #[error("does not fit the stowage world it is loaded as (driver or policy): {0}")]
    Link(String),
}

/// A plugin that passed every check, compiled.
pub struct Loaded {
    /// The compiled component.
    pub component: Component,
    /// The trusted keys whose signatures verify (`bundled` for bundled plugins; empty if an
    /// unsigned file was allowed).
    pub signers: Vec<String>,
    /// sha256 of the file.
    pub sha256: String,
}

/// Loads plugins under one trust policy, with an optional compiled-code cache.
pub struct PluginLoader {
    engine: PluginEngine,
    trust: TrustPolicy,
    cache: Option<cache::CompileCache>,
    compiled: AtomicU64,
    cache_hits: AtomicU64,
}

impl PluginLoader {
    /// A loader; `cache_dir` none disables the cache. A cache that cannot be opened is
    /// skipped with a warning (it only costs compile time).
    pub fn new(engine: &PluginEngine, trust: TrustPolicy, cache_dir: Option<&Path>) -> PluginLoader {
        let cache = cache_dir.and_then(|dir| match cache::CompileCache::open(dir, engine.engine()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "compiled-plugin cache unavailable; compiling every start");
                None
            }
        });
        PluginLoader {
            engine: engine.clone(),
            trust,
            cache,
            compiled: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// (components compiled, components loaded from the cache) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.compiled.load(Ordering::Relaxed), self.cache_hits.load(Ordering::Relaxed))
    }

    /// Reads, verifies, checks and compiles the plugin at `source`, expected to be `world`.
    pub fn load(&self, source: &PluginSource, pins: &Pins, world: World) -> Result<Loaded, LoadError> {
        let Verified { bytes, signers, sha256 } = verify(source, pins, world, &self.trust)?;
        let component = self.compile(&bytes, &sha256)?;
        Ok(Loaded { component, signers, sha256 })
    }

    /// Reads and compiles the plugin at `source` WITHOUT checking its signature, for
    /// `stowage plugin test` (an author tests a plugin before signing it). Returns it with the
    /// world it declares. A host serving data never loads plugins this way.
    pub fn load_unverified(&self, source: &PluginSource) -> Result<(Loaded, World), LoadError> {
        let bytes = bytes(source)?;
        let inspection = inspect::inspect(&bytes).map_err(LoadError::World)?;
        let world = inspection.world.ok_or_else(|| LoadError::World(inspection.not_a_plugin()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let component = self.compile(&bytes, &sha256)?;
        Ok((Loaded { component, signers: Vec::new(), sha256 }, world))
    }

    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        if let Some(cache) = &self.cache {
            match cache.load(self.engine.engine(), sha256) {
                Ok(component) => {
                    self.cache_hits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sha256, "loaded compiled plugin from cache");
                    return Ok(component);
                }
                Err(cache::Miss::Absent) => {}
                Err(cache::Miss::Rejected(why)) => {
                    tracing::warn!(sha256, why, "compiled-plugin cache entry rejected; recompiling");
                }
            }
        }
        tracing::info!(sha256, "compiling plugin");
        let component =
            Component::new(self.engine.engine(), bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.cache {
            cache.store(sha256, &component);
        }
        Ok(component)
    }
}

/// A plugin's bytes that passed every check but compiling.
pub struct Verified {
    /// The component.
    pub bytes: std::borrow::Cow<'static, [u8]>,
    /// As [`Loaded::signers`].
    pub signers: Vec<String>,
    /// sha256 of the file.
    pub sha256: String,
}

/// The component's bytes: borrowed from the binary for a bundled plugin, read for a file.
pub fn bytes(source: &PluginSource) -> Result<std::borrow::Cow<'static, [u8]>, LoadError> {
    match source {
        PluginSource::Bundled(name) => stowage_bundled::get(name)
            .map(std::borrow::Cow::Borrowed)
            .ok_or_else(|| LoadError::Read(format!("no bundled plugin named `{name}`"))),
        PluginSource::File(path) => {
            std::fs::read(path).map(std::borrow::Cow::Owned).map_err(|e| LoadError::Read(e.to_string()))
        }
    }
}

/// Reads the plugin at `source` and checks it as loading does, short of compiling: its
/// signature under `trust`, the config's `pins`, and that it is a component of `world`.
pub fn verify(source: &PluginSource, pins: &Pins, world: World, trust: &TrustPolicy) -> Result<Verified, LoadError> {
    let bytes = bytes(source)?;
    let signers = match source {
        PluginSource::Bundled(_) => vec!["bundled".to_string()],
        PluginSource::File(path) => verify_file(path, &bytes, trust)?,
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(want) = &pins.key_id
        && !signers.contains(want)
    {
        return Err(LoadError::Pin(format!(
            "config pins key {want}, but the plugin is signed by {}",
            if signers.is_empty() { "nobody".to_string() } else { signers.join(", ") }
        )));
    }
    if let Some(want) = &pins.sha256
        && *want != sha256
    {
        return Err(LoadError::Pin(format!("config pins sha256 {want}, but the file's is {sha256}")));
    }
    let inspection = inspect::inspect(&bytes).map_err(LoadError::World)?;
    if inspection.world != Some(world) {
        return Err(LoadError::World(match inspection.world {
            Some(other) => format!("it is a {other} plugin, but a {world} is expected here"),
            None => format!("{} (a {world} is expected)", inspection.not_a_plugin()),
        }));
    }
    Ok(Verified { bytes, signers, sha256 })
}

fn verify_file(path: &Path, bytes: &[u8], trust: &TrustPolicy) -> Result<Vec<String>, LoadError> {
    let sig_path = PathBuf::from(format!("{}.sig", path.display()));
    let detached = match std::fs::read(&sig_path) {
        Ok(sig) => Some(sig),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(LoadError::Read(format!("{}: {e}", sig_path.display()))),
    };
    match signature::verify(bytes, detached.as_deref(), &trust.keys) {
        Ok(signers) => Ok(signers),
        Err(SignatureError::Unsigned) if trust.allow_unsigned => {
            tracing::warn!(plugin = %path.display(), "LOADING AN UNSIGNED PLUGIN because [trust] allow_unsigned = true");
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// Verifies every plugin of `config` as loading would, short of compiling (signature under
/// `[trust]`, pins, world), and reports each refusal at its `plugin = ...` line. What
/// `config check` and `serve` (also on reload) run before anything loads.
pub fn check_plugins(config: &crate::config::LoadedConfig, report: &mut crate::config::Report<'_>) {
    // A `[trust]` key that does not parse is reported by the config's own checks; verifying
    // under the others would only add refusals that are not the cause.
    let trust = report.plan().trust.clone();
    if trust.keys.len() != config.config.trust.keys.len() {
        return;
    }
    let model = &config.config;
    let disks = model
        .disks
        .iter()
        .filter_map(|(n, d)| Some((format!("disks.{}", n.get_ref()), d.plugin.as_ref()?, &d.pin, World::Driver)));
    let policies =
        model.policies.iter().enumerate().map(|(i, p)| (format!("policies[{i}]"), &p.plugin, &p.pin, World::Policy));
    for (owner, plugin, pin, world) in disks.chain(policies) {
        // A plugin that does not resolve is reported by the config's own checks.
        let Ok(source) = crate::config::resolve_plugin(plugin.get_ref(), &config.base_dir) else { continue };
        if let Err(e) = verify(&source, &Pins::from(pin), world, &trust) {
            report.at(Some(plugin.span()), format!("{owner}.plugin: {source}: {e}"));
        }
    }
}
