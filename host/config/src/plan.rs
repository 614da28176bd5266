//! What a checked config becomes: plain data the runtime loads. The plan is built in the same
//! pass that checks the config ([`crate::LoadedConfig::parse`]), so every value is resolved once
//! and every problem is located; a [`crate::LoadedConfig`] always holds a complete plan. Nothing here is
//! live: the runtime builds engines, pools and connections from it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use toml::Spanned;

use crate::endpoint::{Endpoint, read_ca_file};
use crate::fixity::FixityPlan;
use crate::keys;
use crate::ledger::LedgerPlan;
use crate::model::{self, Config, DiskConfig, PolicyConfig};
use crate::source::PluginSource;
use crate::values::{Values, flatten, resolve_value};

/// Everything a config asks the host to load.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Each disk, in name order.
    pub disks: Vec<DiskPlan>,
    /// Each policy, in config order.
    pub policies: Vec<PolicyPlan>,
    /// Who may sign plugin files.
    pub trust: TrustPolicy,
    /// Where compiled plugins are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Where the PHI ledger lives and how it is kept.
    pub ledger: LedgerPlan,
    /// Scheduled fixity checks (`[fixity]`), if any.
    pub fixity: Option<FixityPlan>,
    /// Each mirrored disk, in name order.
    pub mirrors: Vec<MirrorPlan>,
}

/// A mirrored disk: the disks that hold its copies, and how many must hold a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPlan {
    /// The mirrored disk's name.
    pub name: String,
    /// Its mirrors, in read order (each a disk with a plugin).
    pub members: Vec<String>,
    /// How many must hold a write durably before it succeeds.
    pub write_quorum: usize,
}

/// What every plugin needs, whatever its world: its name, where its component is, the pins
/// it must match, its limits and its own config values.
#[derive(Debug, Clone)]
pub struct PluginPlan {
    /// The disk's or policy's name.
    pub name: String,
    /// Its component.
    pub plugin: PluginSource,
    /// Pins on its signer and content.
    pub pins: Pins,
    /// Its limits.
    pub limits: Limits,
    /// Its config values, flattened (`key`, `parent.child`) with references resolved. May hold
    /// secrets: [`PluginPlan`]'s `Debug` shows the keys only.
    pub values: Values,
}

/// One disk: its plugin, what it may touch, and what it may hold.
#[derive(Debug, Clone)]
pub struct DiskPlan {
    /// The driver plugin.
    pub plugin: PluginPlan,
    /// What the driver may touch beyond its config values.
    pub grant: GrantPlan,
    /// Temp objects of unknown owners older than this are orphans.
    pub orphan_after: Duration,
    /// The largest object it takes, in bytes.
    pub max_object: Option<u64>,
    /// The most bytes it may hold.
    pub quota: Option<u64>,
    /// The disk that takes its writes while it is unavailable.
    pub fallback: Option<String>,
}

/// One policy: its plugin, and whether an operation it cannot record fails.
#[derive(Debug, Clone)]
pub struct PolicyPlan {
    /// The policy plugin.
    pub plugin: PluginPlan,
    /// An operation this policy cannot record fails.
    pub required: bool,
}

/// What config grants a driver: at most one directory and one HTTP(S) origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantPlan {
    /// The one host directory it may use, preopened as `/`.
    pub dir: Option<PathBuf>,
    /// The one origin it may send requests to.
    pub outbound: Option<OutboundPlan>,
}

/// The one origin a driver may reach, what the host adds to its requests, and whom it trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundPlan {
    /// The origin.
    pub endpoint: Endpoint,
    /// The API key the host adds (`Authorization: Bearer KEY`); the plugin never sees it.
    pub api_key: Option<String>,
    /// Extra certificate authorities for the origin: a PEM file, checked to hold at least one
    /// certificate while the config was read (the runtime reads it again to build its pool).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for OutboundPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: whether there is one, never what it is.
        f.debug_struct("OutboundPlan")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.is_some())
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Resource limits for one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory the plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// Longest a single call into the plugin may run.
    pub call_timeout: Duration,
    /// Most instances of the plugin alive at once (= operations in flight on the disk).
    pub max_instances: usize,
    /// Most of them one credential (an API key, all signed URLs together, one local user)
    /// may hold at once, so the others keep a share.
    pub max_instances_per_key: usize,
    /// Longest an operation waits for an instance before it is refused as busy.
    pub wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(30),
            max_instances: 64,
            max_instances_per_key: 48,
            wait: Duration::from_secs(10),
        }
    }
}

/// Optional pins on a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// The key id that must have signed it.
    pub key_id: Option<String>,
    /// The exact sha256 of the file.
    pub sha256: Option<String>,
}

/// Who may sign plugin files.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Trusted public keys.
    pub keys: Vec<VerifyingKey>,
    /// Load unsigned files (development only).
    pub allow_unsigned: bool,
}

/// Where `plugin = "..."` points, or why it points nowhere.
pub fn resolve_plugin(value: &str, base_dir: &Path) -> Result<PluginSource, String> {
    if let Some(name) = crate::source::BUNDLED.iter().find(|n| **n == value) {
        return Ok(PluginSource::Bundled(name));
    }
    if !value.ends_with(".wasm") {
        return Err(format!(
            "`{value}` is neither a bundled plugin ({}) nor a path to a .wasm component",
            crate::source::BUNDLED.join(", ")
        ));
    }
    let path = base_dir.join(value);
    if !path.is_file() {
        return Err(format!("plugin file {} does not exist", path.display()));
    }
    Ok(PluginSource::File(path))
}

/// The default cache directory: `$STOWAGE_CACHE_DIR`, else `$XDG_CACHE_HOME/stowage`, else
/// `$HOME/.cache/stowage`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STOWAGE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("stowage"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("stowage"))
}

/// Where a problem goes: its byte range in the config text, and what is wrong.
pub(crate) type Problems<'a> = dyn FnMut(Range<usize>, String) + 'a;

/// Builds the plan of `config` (relative paths from `base_dir`), reporting every value that
/// does not resolve at its place. A plan with problems is incomplete and is never handed out.
pub(crate) fn build(config: &Config, base_dir: &Path, problem: &mut Problems<'_>) -> Plan {
    let b = Builder { config, base_dir };
    let disks = config
        .disks
        .iter()
        .filter(|(_, disk)| disk.mirror.is_none())
        .filter_map(|(name, disk)| b.disk_plan(name.get_ref(), disk, problem))
        .collect();
    let mirrors = config
        .disks
        .iter()
        .filter_map(|(name, disk)| {
            let members = disk.mirror.as_ref()?.get_ref().clone();
            let write_quorum = disk.write_quorum.as_ref().map_or(members.len(), |q| *q.get_ref() as usize);
            Some(MirrorPlan { name: name.get_ref().clone(), members, write_quorum })
        })
        .collect();
    let policies = config.policies.iter().enumerate().filter_map(|(i, p)| b.policy_plan(i, p, problem)).collect();
    let names: Vec<&str> = config.disks.keys().map(|k| k.get_ref().as_str()).collect();
    let fixity = crate::fixity::plan(config.fixity.as_ref(), &names, problem);
    Plan {
        disks,
        policies,
        trust: b.trust_policy(problem),
        cache_dir: b.cache_dir(),
        ledger: crate::ledger::plan(&config.ledger, base_dir, problem),
        fixity,
        mirrors,
    }
}

/// What every part of the plan is built from.
struct Builder<'a> {
    config: &'a Config,
    base_dir: &'a Path,
}

impl Builder<'_> {
    fn disk_plan(&self, n: &str, disk: &DiskConfig, problem: &mut Problems<'_>) -> Option<DiskPlan> {
        let Some(plugin_value) = &disk.plugin else {
            // `check_mirrors` says what a disk without a plugin lacks.
            return None;
        };
        let plugin = resolve_plugin(plugin_value.get_ref(), self.base_dir)
            .map_err(|message| problem(plugin_value.span(), format!("disks.{n}.plugin: {message}")))
            .ok();
        let endpoint = disk.grant.endpoint.as_ref().map(|e| {
            Endpoint::parse(e.get_ref())
                .map_err(|message| problem(e.span(), format!("disks.{n}.grant.endpoint: {message}")))
        });
        let mut api_key = None;
        if let Some(key) = &disk.grant.api_key {
            match &endpoint {
                None => {
                    problem(key.span(), format!("disks.{n}.grant.api_key needs grant.endpoint: it is only sent there"))
                }
                Some(Ok(e)) if !e.is_https() && !self.config.server.dev_mode => problem(
                    key.span(),
                    format!(
                        "disks.{n}.grant.api_key would travel over plain HTTP to {e}: use an https:// endpoint (plain HTTP only with [server] dev_mode = true)"
                    ),
                ),
                Some(_) => {}
            }
            api_key = resolve_value(key.get_ref(), &format!("disks.{n}.grant.api_key"))
                .map_err(|message| problem(key.span(), message))
                .ok();
        }
        let mut ca_file = None;
        if let Some(ca) = &disk.grant.ca_file {
            if endpoint.is_none() {
                problem(
                    ca.span(),
                    format!("disks.{n}.grant.ca_file needs grant.endpoint: it only vouches for that endpoint"),
                );
            }
            let path = self.base_dir.join(ca.get_ref());
            match read_ca_file(&path) {
                Ok(_) => ca_file = Some(path),
                Err(message) => problem(ca.span(), format!("disks.{n}.grant.ca_file: {message}")),
            }
        }
        let values = flatten(&disk.config, &format!("disks.{n}.config"))
            .map_err(|message| problem(plugin_value.span(), message))
            .ok();
        let mut dir = None;
        if let Some(d) = &disk.grant.dir {
            let resolved = self.base_dir.join(d.get_ref());
            if resolved.exists() && !resolved.is_dir() {
                problem(d.span(), format!("disks.{n}.grant.dir: {} exists but is not a directory", resolved.display()));
            }
            dir = Some(resolved);
        }
        let outbound = match endpoint {
            None => None,
            Some(Ok(endpoint)) => Some(OutboundPlan { endpoint, api_key, ca_file }),
            Some(Err(())) => return None,
        };
        Some(DiskPlan {
            plugin: PluginPlan {
                name: n.to_string(),
                plugin: plugin?,
                pins: Pins::from(&disk.pin),
                limits: limits(&disk.limits),
                values: Values(values?),
            },
            grant: GrantPlan { dir, outbound },
            orphan_after: Duration::from_secs(disk.orphan_after_secs.as_ref().map_or(86_400, |v| *v.get_ref())),
            max_object: disk.max_object_mib.as_ref().map(|m| m.get_ref().saturating_mul(1 << 20)),
            quota: disk.quota_gib.as_ref().map(|q| (q.get_ref() * (1u64 << 30) as f64) as u64),
            fallback: disk.fallback.as_ref().map(|f| f.get_ref().clone()),
        })
    }

    fn policy_plan(&self, i: usize, p: &PolicyConfig, problem: &mut Problems<'_>) -> Option<PolicyPlan> {
        let plugin = resolve_plugin(p.plugin.get_ref(), self.base_dir)
            .map_err(|message| problem(p.plugin.span(), format!("policies[{i}].plugin: {message}")))
            .ok();
        let values = flatten(&p.config, &format!("policies[{i}].config"))
            .map_err(|message| problem(p.plugin.span(), message))
            .ok();
        let plugin = plugin?;
        // The PHI ledger's own policy fails closed unless told otherwise.
        let required = p.required.unwrap_or(plugin == PluginSource::Bundled("phi-tracking"));
        Some(PolicyPlan {
            plugin: PluginPlan {
                name: p.name.clone().unwrap_or_else(|| plugin.name()),
                plugin,
                pins: Pins::from(&p.pin),
                limits: limits(&p.limits),
                values: Values(values?),
            },
            required,
        })
    }

    /// The trust policy: parsed keys and whether unsigned files may load.
    fn trust_policy(&self, problem: &mut Problems<'_>) -> TrustPolicy {
        let trust = &self.config.trust;
        let keys = trust
            .keys
            .iter()
            .filter_map(|k| {
                keys::read_public(k.get_ref(), self.base_dir)
                    .map_err(|e| problem(k.span(), format!("trust.keys: {e}")))
                    .ok()
            })
            .collect();
        TrustPolicy { keys, allow_unsigned: trust.allow_unsigned.as_ref().is_some_and(|a| *a.get_ref()) }
    }

    /// Where compiled plugins are cached, if anywhere.
    fn cache_dir(&self) -> Option<PathBuf> {
        let cache = &self.config.cache;
        if !cache.enabled {
            return None;
        }
        match &cache.dir {
            Some(d) => Some(self.base_dir.join(d)),
            None => default_cache_dir(),
        }
    }
}

fn limits(l: &model::LimitsConfig) -> Limits {
    let defaults = Limits::default();
    let max_instances = l.max_instances.as_ref().map_or(defaults.max_instances, |v| *v.get_ref() as usize);
    Limits {
        memory_bytes: l.memory_mib.as_ref().map_or(defaults.memory_bytes, |v| (*v.get_ref() as usize) << 20),
        call_timeout: l.call_timeout_ms.as_ref().map_or(defaults.call_timeout, |v| Duration::from_millis(*v.get_ref())),
        max_instances,
        max_instances_per_key: l
            .max_instances_per_key
            .as_ref()
            .map_or((max_instances * 3 / 4).max(1), |v| *v.get_ref() as usize),
        wait: l.wait_ms.as_ref().map_or(defaults.wait, |v| Duration::from_millis(*v.get_ref())),
    }
}

impl From<&model::Pin> for Pins {
    fn from(p: &model::Pin) -> Pins {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|k| k.get_ref().clone());
        Pins { key_id: text(&p.key_id), sha256: text(&p.sha256) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_must_be_bundled_or_an_existing_wasm_file() {
        let dir = std::path::Path::new(".");
        assert_eq!(resolve_plugin("local-fs", dir), Ok(PluginSource::Bundled("local-fs")));
        assert!(resolve_plugin("s4", dir).unwrap_err().contains("neither a bundled plugin"));
        assert!(resolve_plugin("missing.wasm", dir).unwrap_err().contains("does not exist"));
    }
}
