//! The Stowage config file: loaded and checked once, every problem reported with the file,
//! line and column it comes from (all semantic problems at once; a TOML syntax or shape error
//! stops at the first), and turned into a [`Plan`]: plain data saying what the host loads
//! (plugins, grants, limits, trust), which the runtime brings to life.
//!
//! ```
//! use stowage_config::{ConfigSource, LoadedConfig, StorageClass};
//! let text = "role = \"testing\"\n[disks.a]\nplugin = \"local-fs\"\n[storage]\ndefault = \"a\"\n";
//! let loaded = LoadedConfig::parse(text, ConfigSource::Embedded, ".".into()).unwrap();
//! assert_eq!(loaded.disk_for(StorageClass::Scratch), "a");
//! assert_eq!(loaded.plan().disks[0].plugin.name, "a");
//!
//! let bad = LoadedConfig::parse("role = \"testing\"\n[storage]\ndefault = \"b\"\n", ConfigSource::Embedded, ".".into());
//! assert!(bad.unwrap_err().to_string().starts_with("<embedded default>:3:11: storage.default = \"b\": no disk"));
//! ```

mod check;
mod deployment;
mod endpoint;
mod fixity;
pub mod keys;
mod ledger;
mod mirrors;
mod model;
mod plan;
mod source;
mod values;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use deployment::{Role, StorageClass};
pub use endpoint::{Endpoint, read_ca_file};
pub use fixity::{FixityConfig, FixityPlan};
pub use ledger::LedgerPlan;
pub use model::{
    CacheConfig, Config, DiskConfig, Grant, LedgerConfig, LimitsConfig, OnFailure, Pin, PolicyConfig, ServerConfig,
    ServerLimits, ServerTimeouts, StorageMap, TlsConfig, Trust,
};
pub use plan::{
    DiskPlan, GrantPlan, Limits, MirrorPlan, OutboundPlan, Pins, Plan, PluginPlan, PolicyPlan, TrustPolicy,
    default_cache_dir, resolve_plugin,
};
pub use source::{BUNDLED, PluginSource};
pub use values::{Values, flatten, resolve_value};

/// The config used when no file is given and there is no `./stowage.toml`: role `testing`,
/// one local-fs disk rooted at `./stowage-data`, every class on it, the bundled role and
/// PHI-tracking policies, and the ledger in `./stowage-ledger.sqlite`.
pub const EMBEDDED_DEFAULT: &str = r#"# Stowage's embedded default configuration.
role = "testing"

[disks.local]
plugin = "local-fs"
grant = { dir = "./stowage-data" }

[storage]
default = "local"
scratch = "local"
submission = "local"

[[policies]]
plugin = "role-policy"

[[policies]]
plugin = "phi-tracking"
"#;

/// The file looked for in the working directory when no `--config` is given.
pub const DEFAULT_FILE: &str = "stowage.toml";

/// Where a config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// The embedded default.
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => f.write_str("<embedded default>"),
        }
    }
}

/// One problem in a config, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when the problem has a place.
    pub at: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Where the config came from.
    pub origin: ConfigSource,
    /// What is wrong with it.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.at {
                Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, p.message)?,
                None => write!(f, "{}: {}", self.origin, p.message)?,
            }
        }
        Ok(())
    }
}

/// A parsed, checked config and where relative paths in it are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config.
    pub config: Config,
    /// Where it came from.
    pub source: ConfigSource,
    /// Directory that relative paths are resolved against (the file's directory, or the
    /// working directory for the embedded default).
    pub base_dir: PathBuf,
    /// sha256 of the text, hex: which config a host runs (`/metrics` shows it).
    pub sha256: String,
    /// What it asks the host to load, built while it was checked.
    plan: Plan,
}

/// Where checks outside this crate report problems, located in the config's text.
pub struct Report<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    plan: &'a Plan,
}

impl Report<'_> {
    /// What resolved of the plan so far: complete only if no problem is reported. For checks
    /// that need it (the trust policy, to verify plugins); a [`LoadedConfig`] hands out its
    /// plan only once the config has no problem.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// A problem at byte range `span` of the file, or (none) at the file as a whole.
    pub fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.problems.push(Problem { at: span.map(|s| position(self.text, s.start)), message: message.into() });
    }

    /// Where the file's `[NAME]` table header is, if it has one.
    pub fn table(&self, name: &str) -> Option<Range<usize>> {
        let header = format!("[{name}]");
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            if line.trim_start().starts_with(&header) {
                let start = offset + (line.len() - line.trim_start().len());
                return Some(start..start + header.len());
            }
            offset += line.len();
        }
        None
    }

    /// Whether the config has a `[NAME]` table (as a header, dotted keys or inline).
    pub fn has_table(&self, name: &str) -> bool {
        self.text.parse::<toml::Table>().is_ok_and(|t| t.contains_key(name))
    }
}

impl LoadedConfig {
    /// Loads `explicit` if given; otherwise `./stowage.toml` if it exists; otherwise the
    /// embedded default.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        Self::load_with(explicit, |_, _| {})
    }

    /// Like [`LoadedConfig::load`], with the caller's own checks (e.g. `[server]`'s, by the
    /// server) run on the parsed config and reported, located, with this crate's: one list of
    /// every problem. They run even when this crate's checks found problems.
    pub fn load_with(
        explicit: Option<&Path>,
        extra: impl FnOnce(&LoadedConfig, &mut Report<'_>),
    ) -> Result<LoadedConfig, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()),
        };
        match path {
            Some(path) => Self::load_file_with(&path, extra),
            None => {
                let cwd = std::env::current_dir().map_err(|e| ConfigError {
                    origin: ConfigSource::Embedded,
                    problems: vec![Problem { at: None, message: format!("cannot read the working directory: {e}") }],
                })?;
                Self::parse_with(EMBEDDED_DEFAULT, ConfigSource::Embedded, cwd, extra)
            }
        }
    }

    /// Loads and checks the file at `path`.
    pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        Self::load_file_with(path, |_, _| {})
    }

    fn load_file_with(
        path: &Path,
        extra: impl FnOnce(&LoadedConfig, &mut Report<'_>),
    ) -> Result<LoadedConfig, ConfigError> {
        let source = ConfigSource::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: source.clone(),
            problems: vec![Problem { at: None, message: format!("cannot read the config file: {e}") }],
        })?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::parse_with(&text, source, base_dir, extra)
    }

    /// Parses and checks config `text`.
    pub fn parse(text: &str, source: ConfigSource, base_dir: PathBuf) -> Result<LoadedConfig, ConfigError> {
        Self::parse_with(text, source, base_dir, |_, _| {})
    }

    fn parse_with(
        text: &str,
        source: ConfigSource,
        base_dir: PathBuf,
        extra: impl FnOnce(&LoadedConfig, &mut Report<'_>),
    ) -> Result<LoadedConfig, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            origin: source.clone(),
            problems: vec![Problem {
                at: e.span().map(|s| position(text, s.start)),
                message: match e.span().and_then(|s| key_before(text, s.start)) {
                    Some(key) => format!("`{key}`: {}", without_values(e.message().trim())),
                    None => without_values(e.message().trim()),
                },
            }],
        })?;
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let mut loaded = LoadedConfig { config, source, base_dir, sha256, plan: Plan::default() };
        let (problems, plan) = loaded.check(text);
        let mut report = Report { text, problems, plan: &plan };
        extra(&loaded, &mut report);
        let mut problems = report.problems;
        problems.sort_by_key(|p| p.at);
        if !problems.is_empty() {
            return Err(ConfigError { origin: loaded.source, problems });
        }
        loaded.plan = plan;
        Ok(loaded)
    }

    /// What the config asks the host to load: complete, as a `LoadedConfig` is only returned
    /// for a config without problems. (A check given to [`LoadedConfig::load_with`] runs before
    /// that is known: it sees an empty plan here, and what resolved through [`Report::plan`].)
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The ledger database file.
    pub fn ledger_path(&self) -> PathBuf {
        self.plan.ledger.path.clone()
    }

    /// How to open the ledger: its checkpoints (file, host key, schedule) and lock timeout.
    pub fn ledger_options(&self) -> stowage_ledger::LedgerOptions {
        self.plan.ledger.options.clone()
    }

    /// Whether a required policy that cannot record only logs (`[ledger] on_failure = "log"`).
    pub fn ledger_log_only(&self) -> bool {
        self.plan.ledger.log_only
    }

    /// The disk that serves `class`.
    pub fn disk_for(&self, class: StorageClass) -> &str {
        let map = self.config.storage.get_ref();
        let chosen = match class {
            StorageClass::Default => None,
            StorageClass::Scratch => map.scratch.as_ref(),
            StorageClass::Submission => map.submission.as_ref(),
        };
        chosen.unwrap_or(&map.default).get_ref()
    }
}

/// A parse error's message without the string values it quotes (`invalid type: string
/// "...", expected ...`): the value may be a secret written in the wrong place.
fn without_values(message: &str) -> String {
    let mut out = message.to_string();
    for marker in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(start) = out.find(marker) {
            let open = start + marker.len() - 1;
            if let Some(close) = out[open..].find("\", expected").map(|i| open + i + 1) {
                out.replace_range(open..close, "(value not shown)");
            }
        }
    }
    out
}

/// The key whose value starts at `offset` (`key = <value>`), to name it in type errors.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?.trim_end().strip_suffix('=')?.trim_end();
    let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).map_or(0, |i| i + 1);
    Some(&before[start..]).filter(|k| !k.is_empty())
}

/// 1-based (line, column) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;

/// Properties of config parsing over generated and damaged configs (bounded).
#[cfg(test)]
mod properties;
