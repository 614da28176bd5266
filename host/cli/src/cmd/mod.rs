//! One module per subcommand; shared set-up here.

pub mod config;
pub mod copy;
pub mod fsck;
pub mod get;
pub mod health;
pub mod ledger;
pub mod ledger_report;
pub mod ls;
pub mod plugin;
pub mod plugin_new;
pub mod plugin_test;
pub mod put;
pub mod reload;
pub mod rm;
mod send;
pub mod serve;
pub mod stat;
pub mod sync;
pub mod tree;
pub mod url;

use std::path::Path;

use anyhow::Context as _;
use stowage_runtime::{Address, LoadedConfig, Request, Storage};

/// Loads the config (explicit, `./stowage.toml`, or embedded), starts every disk and policy,
/// and checks that the disks give the policies what they need.
pub async fn open_storage(config: Option<&Path>) -> anyhow::Result<Storage> {
    let loaded = LoadedConfig::load(config)?;
    Ok(Storage::open(&loaded).await?)
}

/// Parses `NAME:path`.
pub fn address(s: &str) -> anyhow::Result<Address> {
    Ok(Address::parse(s)?)
}

/// Parses a prefix: `NAME:` (everything), `NAME:prefix`, or a bare `NAME`.
pub fn prefix_address(s: &str) -> anyhow::Result<Address> {
    if s.contains(':') { Ok(Address::parse(s)?) } else { Ok(Address { name: s.to_string(), path: String::new() }) }
}

/// Who is asking: the actor and the request's metadata.
type Identity = (Option<String>, Vec<(String, String)>);

static IDENTITY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();

/// Records who is asking (from `--actor`, `--cohort`, `--req-meta`) for every request.
pub fn set_identity(actor: Option<String>, metadata: Vec<(String, String)>) {
    let _ = IDENTITY.set((actor, metadata));
}

/// A request from the command line.
pub fn request() -> Request {
    let mut req = Request::new();
    if let Some((actor, metadata)) = IDENTITY.get() {
        req.actor = actor.clone().or_else(|| std::env::var("USER").ok());
        req.metadata = metadata.clone();
    }
    // On the command line, the operating system's account is the credential.
    req.authenticated_as = Some(format!("local:{}", local_user()));
    req
}

/// The account this process runs as: its uid (what the kernel vouches for), with `$USER`
/// beside it for people reading the ledger, e.g. `alice/1000`.
fn local_user() -> String {
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m).to_string());
    let uid = uid.unwrap_or_else(|_| "?".into());
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("{user}/{uid}"),
        _ => uid,
    }
}

/// Parses `key=value` (for `--meta`).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not key=value"))?;
    let k = k.trim().to_ascii_lowercase();
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("metadata key `{k}` may only use letters, digits, `-` and `_`"));
    }
    Ok((k, v.to_string()))
}

/// Adds the address to an error's message.
pub fn at<T, E>(r: Result<T, E>, addr: &str) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    r.with_context(|| addr.to_string())
}
