//! The config file's shape (TOML). Every table denies unknown fields, so a typo fails at load
//! with the field's name and line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::deployment::Role;

/// A whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The part this host plays: `web`, `services` or `testing`.
    pub role: Spanned<Role>,
    /// Named disks, each served by a driver plugin.
    #[serde(default)]
    pub disks: BTreeMap<Spanned<String>, DiskConfig>,
    /// Which disk serves each storage class.
    pub storage: Spanned<StorageMap>,
    /// Policies, asked in this order before every operation.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Where the PHI ledger lives.
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// Which plugin signers are trusted.
    #[serde(default)]
    pub trust: Trust,
    /// Where compiled plugins are cached.
    #[serde(default)]
    pub cache: CacheConfig,
    /// How `stowage serve` listens and whom it lets in.
    #[serde(default)]
    pub server: ServerConfig,
    /// Scheduled fixity checks while `stowage serve` runs.
    pub fixity: Option<crate::fixity::FixityConfig>,
}

/// The `[server]` table, read by `stowage serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8443`; `--listen` overrides it).
    pub listen: Option<Spanned<String>>,
    /// Development only: allows plain HTTP and API keys shorter than 32 characters.
    #[serde(default)]
    pub dev_mode: bool,
    /// The TLS certificate chain and private key (PEM files, relative to the config file).
    pub tls: Option<TlsConfig>,
    /// API keys a client may present (`Authorization: Bearer KEY`): strings or
    /// `{ env = "NAME" }` references.
    #[serde(default)]
    pub api_keys: Vec<Spanned<toml::Value>>,
    /// The secret that signs download URLs for disks without native presign (32+
    /// characters, usually `{ env = "NAME" }`). Without it, no such URLs are served.
    pub url_secret: Option<Spanned<toml::Value>>,
    /// The base URL clients reach this host at, for `stowage url` (default: https://LISTEN).
    pub public_url: Option<String>,
    /// Time limits on every stage of a connection.
    #[serde(default)]
    pub timeouts: ServerTimeouts,
    /// How much any one client may take.
    #[serde(default)]
    pub limits: ServerLimits,
}

/// `[server.timeouts]`, in seconds. Each stage of a connection is bounded; the defaults suit a
/// services host on a private network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTimeouts {
    /// The TLS handshake (default 10).
    pub tls_handshake_secs: Option<Spanned<u64>>,
    /// A request's head, from when the connection waits for it: bounds both a slow request
    /// line and an idle keep-alive connection (default 15).
    pub header_secs: Option<Spanned<u64>>,
    /// A request body that sends nothing (default 60).
    pub body_idle_secs: Option<Spanned<u64>>,
    /// A response body the client does not read: the download is dropped and its driver
    /// instance released (default 30).
    pub send_stall_secs: Option<Spanned<u64>>,
}

/// `[server.limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections open at once; more wait to be accepted (default 4096).
    pub max_connections: Option<Spanned<u64>>,
    /// Largest request head, in KiB (default 64).
    pub max_header_kib: Option<Spanned<u64>>,
    /// Requests in flight per credential (API key; all signed URLs together); more get 429
    /// (default 128).
    pub max_requests_per_key: Option<Spanned<u64>>,
    /// Upload sessions open per API key (default 16); all keys together: `max_uploads`.
    pub max_uploads_per_key: Option<Spanned<u64>>,
    /// Upload sessions open at once (default 64).
    pub max_uploads: Option<Spanned<u64>>,
    /// Seconds a readiness answer is reused: at most one probe per interval, however many ask
    /// (default 5).
    pub readiness_interval_secs: Option<Spanned<u64>>,
    /// Threads that run storage work (plugin calls, file I/O), apart from the threads that
    /// accept connections and answer `/healthz` (default: the number of CPUs, at least 2).
    pub worker_threads: Option<Spanned<u64>>,
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: Spanned<PathBuf>,
    /// PEM private key.
    pub key: Spanned<PathBuf>,
}

/// One `[[policies]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name in logs and denials (default: the plugin's name).
    pub name: Option<String>,
    /// A bundled policy (`role-policy`, `phi-tracking`) or the path of a `.wasm` component.
    pub plugin: Spanned<String>,
    /// Resource limits of each instance.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The policy's own settings.
    #[serde(default)]
    pub config: toml::Table,
    /// Pins on the plugin's signer and content.
    #[serde(default)]
    pub pin: Pin,
    /// Whether an operation this policy cannot record fails (default: true for
    /// `phi-tracking`, false for every other policy).
    pub required: Option<bool>,
}

/// The `[ledger]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The SQLite file (default `stowage-ledger.sqlite` beside the config file, or in the
    /// working directory for the embedded default). Must not be inside a disk's directory.
    pub path: Option<Spanned<PathBuf>>,
    /// What happens when a required policy cannot record an operation: `fail` (the default:
    /// the operation is refused) or `log` (role `testing` only).
    pub on_failure: Option<Spanned<OnFailure>>,
    /// The signed checkpoints file (default `<path>.checkpoints`).
    pub checkpoints: Option<PathBuf>,
    /// A disk that also keeps every checkpoint (e.g. an S3 bucket), so the anchor lives off
    /// this host.
    pub checkpoint_disk: Option<Spanned<String>>,
    /// A checkpoint after this many records (default 1000)...
    pub checkpoint_every: Option<Spanned<u64>>,
    /// ...or this many seconds after the last one, when records were added (default 60).
    pub checkpoint_interval_secs: Option<Spanned<u64>>,
    /// The host's Ed25519 key that signs checkpoints (default `<path>.key`; created with
    /// `<key>.pub` beside it if missing).
    pub host_key: Option<PathBuf>,
    /// The checkpoints' origin line and the key's name (default `stowage-ledger`).
    pub origin: Option<Spanned<String>>,
    /// How long an append waits for another process's lock on the database (default 10000;
    /// on PostgreSQL also the bound on every call).
    pub lock_timeout_ms: Option<Spanned<u64>>,
    /// The records in PostgreSQL instead of the SQLite file: a `postgres://` URL, usually
    /// `{ env = "STOWAGE_LEDGER_URL" }` (it holds a password). Every host naming the same
    /// database appends to one chain; `path` then names only this host's own files (the
    /// head, checkpoints and key are kept beside it).
    pub url: Option<Spanned<toml::Value>>,
    /// A CA certificate (PEM, relative to the config file) to trust for the database's TLS
    /// certificate, beside the web roots. Needs `url`.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// The name this host stamps on each record it appends (default: the machine's host name
    /// when `url` is set, none otherwise).
    pub host: Option<Spanned<String>>,
}

/// `[ledger] on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse the operation.
    Fail,
    /// Log and go on (role `testing` only).
    Log,
}

/// The `[trust]` table: who may sign plugins loaded from files. Bundled plugins are trusted as
/// part of the binary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Public keys: files written by `stowage plugin keygen` (relative to the config file), or
    /// inline `ed25519:<hex>` values.
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    /// Development only: load unsigned plugin files (logged loudly at every start). Refused on
    /// roles `web` and `services` unless `force_allow_unsigned` is also set.
    #[serde(default)]
    pub allow_unsigned: Option<Spanned<bool>>,
    /// Allows `allow_unsigned` on a production role. Do not.
    #[serde(default)]
    pub force_allow_unsigned: bool,
}

/// The `[cache]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache compiled plugins (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where (default: `$STOWAGE_CACHE_DIR`, `$XDG_CACHE_HOME/stowage` or `~/.cache/stowage`).
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: true, dir: None }
    }
}

fn yes() -> bool {
    true
}

/// Optional pins on a plugin: the key that must have signed it and/or its exact sha256.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Key id (as printed by `stowage plugin keygen` / `verify`).
    pub key_id: Option<Spanned<String>>,
    /// Lowercase hex sha256 of the component file.
    pub sha256: Option<Spanned<String>>,
}

/// One `[disks.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// A bundled plugin's name (`local-fs`) or the path of a `.wasm` component. A disk has a
    /// plugin or is a `mirror`, never both.
    pub plugin: Option<Spanned<String>>,
    /// The disks this disk mirrors, in read order (`mirror = ["nas-a", "nas-b"]`): every write
    /// goes to all of them, reads come from the first that holds good bytes.
    pub mirror: Option<Spanned<Vec<String>>>,
    /// How many mirrors must hold a write durably before it succeeds (default: all); the others
    /// catch up later.
    pub write_quorum: Option<Spanned<u64>>,
    /// What the plugin may touch.
    #[serde(default)]
    pub grant: Grant,
    /// Resource limits of each instance.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The plugin's own settings, passed to it as config values.
    #[serde(default)]
    pub config: toml::Table,
    /// Pins on the plugin's signer and content.
    #[serde(default)]
    pub pin: Pin,
    /// Largest object the disk takes, in MiB (none: no limit).
    pub max_object_mib: Option<Spanned<u64>>,
    /// Most the disk may hold, in GiB (fractions allowed; none: no quota). Counted by a
    /// listing of the disk once per process, then kept current.
    pub quota_gib: Option<Spanned<f64>>,
    /// Temp objects whose owner cannot be told (e.g. S3's unfinished multipart uploads) are
    /// removed once this old (default 86400: a day).
    pub orphan_after_secs: Option<Spanned<u64>>,
    /// Another disk that takes this disk's writes while it is unavailable (the original's
    /// `save_with_fallback`); they are queued there and synced back when it answers again.
    pub fallback: Option<Spanned<String>>,
}

/// The capabilities a plugin is granted. Nothing else is reachable from inside it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The one directory the plugin may read and write, seen by it as `/`. Relative paths are
    /// relative to the config file's directory. Created if missing.
    pub dir: Option<Spanned<PathBuf>>,
    /// The one HTTP(S) origin the plugin may send requests to (`https://host:port`); the host
    /// refuses every other request.
    pub endpoint: Option<Spanned<String>>,
    /// An API key the host adds to every request to `endpoint` (`Authorization: Bearer KEY`),
    /// usually `{ env = "NAME" }`. The plugin never sees it. Never sent over plain HTTP
    /// outside `[server] dev_mode`.
    pub api_key: Option<Spanned<toml::Value>>,
    /// A PEM file of extra certificate authorities to trust for `endpoint` (a private CA),
    /// on top of the public web roots. Relative to the config file.
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// Per-instance limits; defaults in [`crate::Limits`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most linear memory per instance, in MiB (default 64).
    pub memory_mib: Option<Spanned<u64>>,
    /// Longest one call into the plugin may run, in milliseconds (default 30000).
    pub call_timeout_ms: Option<Spanned<u64>>,
    /// Most instances alive at once, i.e. operations in flight on the disk (default 64).
    pub max_instances: Option<Spanned<u64>>,
    /// Most of them one credential may hold (default three quarters of `max_instances`).
    pub max_instances_per_key: Option<Spanned<u64>>,
    /// Longest an operation waits for an instance before it is refused as busy, in
    /// milliseconds (default 10000).
    pub wait_ms: Option<Spanned<u64>>,
}

/// The `[storage]` table: storage class → disk name. `scratch` and `submission` default to the
/// `default` disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageMap {
    /// General storage.
    pub default: Spanned<String>,
    /// Temporary processing files.
    pub scratch: Option<Spanned<String>>,
    /// Permanent submission files.
    pub submission: Option<Spanned<String>>,
}
