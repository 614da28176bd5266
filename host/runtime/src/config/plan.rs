//! From a checked config to what the host loads: each disk's plugin bytes, grants and limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::LoadedConfig;
use crate::engine::Limits;
use crate::plugin::PluginSource;
use crate::plugin::inspect::World;
use crate::state::Grants;

/// Everything needed to bring up one disk or policy.
#[derive(Debug, Clone)]
pub struct PluginPlan {
    /// The disk's or policy's name.
    pub name: String,
    /// Its component.
    pub plugin: PluginSource,
    /// What it may touch (policies get no directory), and its config values.
    pub grants: Grants,
    /// Its limits.
    pub limits: Limits,
    /// Pins on its signer and content.
    pub pins: crate::plugin::Pins,
    /// For a policy: an operation it cannot record fails.
    pub required: bool,
    /// For a disk: temp objects of unknown owners older than this are orphans.
    pub orphan_after: Duration,
    /// For a disk: its largest object and its quota, bytes.
    pub max_object: Option<u64>,
    /// For a disk: most bytes it may hold.
    pub quota: Option<u64>,
}

/// Where `plugin = "..."` points, or why it points nowhere.
pub fn resolve_plugin(value: &str, base_dir: &Path) -> Result<PluginSource, String> {
    if let Some(name) = stowage_bundled::NAMES.iter().find(|n| **n == value) {
        return Ok(PluginSource::Bundled(name));
    }
    if !value.ends_with(".wasm") {
        return Err(format!(
            "`{value}` is neither a bundled plugin ({}) nor a path to a .wasm component",
            stowage_bundled::NAMES.join(", ")
        ));
    }
    let path = base_dir.join(value);
    if !path.is_file() {
        return Err(format!("plugin file {} does not exist", path.display()));
    }
    Ok(PluginSource::File(path))
}

pub(super) fn check_plugin(value: &Spanned<String>, base_dir: &Path) -> Result<(), String> {
    resolve_plugin(value.get_ref(), base_dir).map(|_| ())
}

impl LoadedConfig {
    /// The trust policy: parsed keys and whether unsigned files may load.
    pub fn trust_policy(&self) -> Result<crate::plugin::TrustPolicy, String> {
        let trust = &self.config.trust;
        let keys = trust
            .keys
            .iter()
            .map(|k| {
                crate::plugin::keys::read_public(k.get_ref(), &self.base_dir).map_err(|e| format!("trust.keys: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::plugin::TrustPolicy {
            keys,
            allow_unsigned: trust.allow_unsigned.as_ref().is_some_and(|a| *a.get_ref()),
        })
    }

    /// Verifies every plugin as loading would, short of compiling (signature under
    /// `[trust]`, pins, world), and reports each refusal at its `plugin = ...` line. What
    /// `config check` and `serve` (also on reload) run before anything loads.
    pub fn check_plugins(&self, report: &mut super::Report<'_>) {
        // A `[trust]` problem is reported by the config's own checks.
        let Ok(trust) = self.trust_policy() else { return };
        let disks =
            self.config.disks.iter().map(|(n, d)| (format!("disks.{}", n.get_ref()), &d.plugin, &d.pin, World::Driver));
        let policies = self
            .config
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("policies[{i}]"), &p.plugin, &p.pin, World::Policy));
        for (owner, plugin, pin, world) in disks.chain(policies) {
            // A plugin that does not resolve is reported by the config's own checks.
            let Ok(source) = resolve_plugin(plugin.get_ref(), &self.base_dir) else { continue };
            if let Err(e) = crate::plugin::verify(&source, &pins(pin), world, &trust) {
                report.at(Some(plugin.span()), format!("{owner}.plugin: {source}: {e}"));
            }
        }
    }

    /// Where compiled plugins are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        let cache = &self.config.cache;
        if !cache.enabled {
            return None;
        }
        match &cache.dir {
            Some(d) => Some(self.base_dir.join(d)),
            None => crate::plugin::cache::default_dir(),
        }
    }

    /// What to load for each disk, in name order.
    pub fn disk_plans(&self) -> Result<Vec<PluginPlan>, String> {
        self.config
            .disks
            .iter()
            .map(|(name, disk)| {
                let name = name.get_ref().clone();
                let plugin = resolve_plugin(disk.plugin.get_ref(), &self.base_dir)
                    .map_err(|e| format!("disks.{name}.plugin: {e}"))?;
                let outbound = match &disk.grant.endpoint {
                    Some(e) => {
                        let endpoint = crate::http::Endpoint::parse(e.get_ref())
                            .map_err(|e| format!("disks.{name}.grant.endpoint: {e}"))?;
                        let api_key = match &disk.grant.api_key {
                            Some(k) => Some(resolve_value(k.get_ref(), &format!("disks.{name}.grant.api_key"))?),
                            None => None,
                        };
                        let ca_file = disk.grant.ca_file.as_ref().map(|c| self.base_dir.join(c.get_ref()));
                        let outbound = crate::http::Outbound::new(endpoint, api_key.as_deref(), ca_file.as_deref())
                            .map_err(|e| format!("disks.{name}.grant: {e}"))?;
                        Some(std::sync::Arc::new(outbound))
                    }
                    None => None,
                };
                let grants = Grants {
                    dir: disk.grant.dir.as_ref().map(|d| self.base_dir.join(d.get_ref())),
                    config: flatten(&disk.config, &format!("disks.{name}.config"))?,
                    ledger: None,
                    outbound,
                };
                let orphan_after =
                    Duration::from_secs(disk.orphan_after_secs.as_ref().map_or(86_400, |v| *v.get_ref()));
                let max_object = disk.max_object_mib.as_ref().map(|m| m.get_ref().saturating_mul(1 << 20));
                let quota = disk.quota_gib.as_ref().map(|q| (q.get_ref() * (1u64 << 30) as f64) as u64);
                Ok(PluginPlan {
                    name,
                    plugin,
                    grants,
                    limits: limits(&disk.limits),
                    pins: pins(&disk.pin),
                    required: false,
                    orphan_after,
                    max_object,
                    quota,
                })
            })
            .collect()
    }

    /// What to load for each policy, in config order.
    pub fn policy_plans(&self) -> Result<Vec<PluginPlan>, String> {
        self.config
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let plugin = resolve_plugin(p.plugin.get_ref(), &self.base_dir)
                    .map_err(|e| format!("policies[{i}].plugin: {e}"))?;
                let name = p.name.clone().unwrap_or_else(|| plugin.name());
                let grants =
                    Grants { config: flatten(&p.config, &format!("policies[{i}].config"))?, ..Grants::default() };
                // The PHI ledger's own policy fails closed unless told otherwise.
                let required = p.required.unwrap_or(plugin == PluginSource::Bundled("phi-tracking"));
                Ok(PluginPlan {
                    name,
                    plugin,
                    grants,
                    limits: limits(&p.limits),
                    pins: pins(&p.pin),
                    required,
                    orphan_after: Duration::ZERO,
                    max_object: None,
                    quota: None,
                })
            })
            .collect()
    }

    /// The ledger database file.
    pub fn ledger_path(&self) -> PathBuf {
        match &self.config.ledger.path {
            Some(p) => self.base_dir.join(p.get_ref()),
            None => self.base_dir.join("stowage-ledger.sqlite"),
        }
    }

    /// How to open the ledger: its checkpoints (file, host key, schedule) and lock timeout.
    pub fn ledger_options(&self) -> stowage_ledger::LedgerOptions {
        let l = &self.config.ledger;
        let beside = |suffix: &str| {
            let mut p = self.ledger_path().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let policy = stowage_ledger::CheckpointPolicy {
            origin: l.origin.as_ref().map_or_else(|| "stowage-ledger".to_string(), |o| o.get_ref().clone()),
            every_records: l.checkpoint_every.as_ref().map_or(1000, |v| *v.get_ref()),
            every_secs: l.checkpoint_interval_secs.as_ref().map_or(60, |v| *v.get_ref()),
            file: l.checkpoints.as_ref().map_or_else(|| beside(".checkpoints"), |p| self.base_dir.join(p)),
            key_file: l.host_key.as_ref().map_or_else(|| beside(".key"), |p| self.base_dir.join(p)),
        };
        stowage_ledger::LedgerOptions {
            checkpoints: Some(policy),
            lock_timeout: Duration::from_millis(l.lock_timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref())),
        }
    }

    /// Whether a required policy that cannot record only logs (`[ledger] on_failure = "log"`).
    pub fn ledger_log_only(&self) -> bool {
        self.config.ledger.on_failure.as_ref().is_some_and(|o| *o.get_ref() == super::model::OnFailure::Log)
    }
}

fn limits(l: &crate::config::LimitsConfig) -> Limits {
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

fn pins(p: &crate::config::Pin) -> crate::plugin::Pins {
    crate::plugin::Pins {
        key_id: p.key_id.as_ref().map(|k| k.get_ref().clone()),
        sha256: p.sha256.as_ref().map(|k| k.get_ref().clone()),
    }
}

/// A plugin's config table as `key` / `parent.child` → string pairs. A value written
/// `{ env = "NAME" }` is read from the host's environment variable `NAME` (so secrets stay out
/// of config files); `at` names the table in errors.
pub fn flatten(table: &toml::Table, at: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    flatten_into("", table, at, &mut out)?;
    Ok(out)
}

fn flatten_into(prefix: &str, table: &toml::Table, at: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) if !is_env_ref(t) => flatten_into(&key, t, at, out)?,
            value => out.push((key.clone(), resolve_value(value, &format!("{at}.{key}"))?)),
        }
    }
    Ok(())
}

/// `{ env = "NAME" }` or `{ file = "/PATH" }`: a value kept outside the config file.
fn is_env_ref(t: &toml::Table) -> bool {
    t.len() == 1 && (t.contains_key("env") || t.contains_key("file"))
}

/// One scalar config value as a string. `{ env = "NAME" }` reads the environment variable
/// `NAME` (fixed for a process: a reload sees the value the host started with);
/// `{ file = "/PATH" }` reads the file (its content, without a trailing newline), again on
/// every reload, so a key rotated in its file takes effect without a restart (systemd's
/// `LoadCredential=` files are such files). `at` names the value in errors, which never carry
/// the value (it may be a secret).
pub fn resolve_value(value: &toml::Value, at: &str) -> Result<String, String> {
    match value {
        toml::Value::Table(t) if is_env_ref(t) => match (t.get("env"), t.get("file")) {
            (Some(toml::Value::String(var)), _) => {
                std::env::var(var).map_err(|_| format!("{at}: environment variable `{var}` is not set"))
            }
            (_, Some(toml::Value::String(path))) if Path::new(path).is_absolute() => {
                match std::fs::read_to_string(path) {
                    Ok(text) => Ok(text.trim_end_matches(['\r', '\n']).to_string()),
                    Err(e) => Err(format!("{at}: cannot read {path}: {}", e.kind())),
                }
            }
            (_, Some(toml::Value::String(_))) => Err(format!("{at}: `file` must be an absolute path")),
            (Some(_), _) => Err(format!("{at}: `env` must name an environment variable")),
            _ => Err(format!("{at}: `file` must be a path")),
        },
        toml::Value::Table(_) => Err(format!("{at}: expected a value, {{ env = \"NAME\" }} or {{ file = \"/PATH\" }}")),
        toml::Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_renders_scalars_and_nests_keys() {
        let t: toml::Table = toml::from_str("a = \"x\"\nn = 3\nb = true\n[t]\nc = 1.5\n").unwrap();
        assert_eq!(
            flatten(&t, "x").unwrap(),
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "true".into()),
                ("n".into(), "3".into()),
                ("t.c".into(), "1.5".into()),
            ]
        );
    }

    #[test]
    fn env_references_are_resolved_and_a_missing_one_is_named_without_a_value() {
        let t: toml::Table =
            toml::from_str("key = { env = \"PATH\" }\nsecret = { env = \"STOWAGE_TEST_UNSET_VAR\" }\n").unwrap();
        let e = flatten(&t, "disks.s3.config").unwrap_err();
        assert_eq!(e, "disks.s3.config.secret: environment variable `STOWAGE_TEST_UNSET_VAR` is not set");
        let t: toml::Table = toml::from_str("key = { env = \"PATH\" }\n").unwrap();
        assert_eq!(flatten(&t, "x").unwrap(), vec![("key".to_string(), std::env::var("PATH").unwrap())]);
    }

    #[test]
    fn file_references_are_read_each_time_and_name_no_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("web-1.key");
        std::fs::write(&key, "first-secret\n").unwrap();
        let value: toml::Value =
            toml::from_str::<toml::Table>(&format!("v = {{ file = \"{}\" }}", key.display())).unwrap()["v"].clone();
        assert_eq!(resolve_value(&value, "api_keys[0]").unwrap(), "first-secret");
        std::fs::write(&key, "second-secret").unwrap();
        assert_eq!(resolve_value(&value, "api_keys[0]").unwrap(), "second-secret", "read again, not cached");
        std::fs::remove_file(&key).unwrap();
        let e = resolve_value(&value, "api_keys[0]").unwrap_err();
        assert!(e.starts_with("api_keys[0]: cannot read") && !e.contains("secret"), "{e}");
        let relative: toml::Value = toml::from_str::<toml::Table>("v = { file = \"k.key\" }").unwrap()["v"].clone();
        assert_eq!(resolve_value(&relative, "url_secret").unwrap_err(), "url_secret: `file` must be an absolute path");
    }

    #[test]
    fn plugin_must_be_bundled_or_an_existing_wasm_file() {
        let dir = std::path::Path::new(".");
        assert_eq!(resolve_plugin("local-fs", dir), Ok(PluginSource::Bundled("local-fs")));
        assert!(resolve_plugin("s4", dir).unwrap_err().contains("neither a bundled plugin"));
        assert!(resolve_plugin("missing.wasm", dir).unwrap_err().contains("does not exist"));
    }
}
