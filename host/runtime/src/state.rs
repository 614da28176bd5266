//! What one plugin instance's `Store` holds: its WASI context (with only the granted
//! capabilities), its resource table, its memory limiter, and the host interfaces it imports
//! (`log`, `config`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::http::EndpointGuard;

use crate::bindings::driver::stowage::storage::{config, log, types};

/// What config grants a plugin, and its own config values.
#[derive(Clone, Default)]
pub struct Grants {
    /// The one host directory the plugin may use, preopened as `/`.
    pub dir: Option<PathBuf>,
    /// The plugin's config values, flattened (`key`, `parent.child`).
    pub config: Vec<(String, String)>,
    /// For policies: the ledger they may append to.
    pub ledger: Option<Arc<crate::ledger::Ledger>>,
    /// For drivers: the one HTTP(S) origin they may send requests to, with the credentials
    /// the host adds and the connection pool the disk's instances share.
    pub outbound: Option<Arc<crate::http::Outbound>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config values may be secrets (env references): keys only.
        let keys: Vec<&str> = self.config.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Grants")
            .field("dir", &self.dir)
            .field("config_keys", &keys)
            .field("ledger", &self.ledger.is_some())
            .field("endpoint", &self.outbound.as_ref().map(|o| o.endpoint()))
            .finish()
    }
}

/// A plugin tried to grow its memory past its limit (the trap's cause).
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {desired})")]
pub struct MemoryLimitExceeded {
    /// The limit.
    pub limit: usize,
    /// What the plugin asked for.
    pub desired: usize,
}

struct Limiter {
    memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { limit: self.memory_bytes, desired }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one plugin instance's `Store`.
pub struct PluginState {
    name: Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: EndpointGuard,
    table: ResourceTable,
    limiter: Limiter,
    grants: Arc<Grants>,
    /// When the current call must have returned (see `pool::Lease::begin_with`).
    pub(crate) deadline: Instant,
    /// For a policy's `observe` call: what the host stamps on its ledger records, and what
    /// they were.
    pub(crate) audit: Option<Arc<std::sync::Mutex<crate::policy::types::CallAudit>>>,
    /// The last error the plugin logged (its first KiB): a policy that refuses its config
    /// logs why before it traps, and the host's refusal to start quotes it.
    last_error: Option<String>,
}

impl PluginState {
    /// A fresh state for plugin `name` with exactly `grants`: the granted directory (if any)
    /// preopened as `/`, no environment, no arguments, no stdio, no network.
    pub fn new(name: Arc<str>, grants: Arc<Grants>, limits: crate::engine::Limits) -> std::io::Result<Self> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some(dir) = &grants.dir {
            wasi.preopened_dir(dir, "/", FsPerms::ReadWrite)
                .map_err(|e| std::io::Error::other(format!("cannot open granted directory {}: {e}", dir.display())))?;
        }
        Ok(PluginState {
            http_hooks: EndpointGuard {
                plugin: name.clone(),
                outbound: grants.outbound.clone(),
                timeout: limits.call_timeout,
            },
            name,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: Limiter { memory_bytes: limits.memory_bytes },
            grants,
            deadline: Instant::now(),
            audit: None,
            last_error: None,
        })
    }

    /// The resource table (streams handed over by the plugin live here).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The limiter to install on the store.
    pub fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }

    /// The last error the plugin logged since this was last asked.
    pub(crate) fn take_last_error(&mut self) -> Option<String> {
        self.last_error.take()
    }
}

/// A linker with what every plugin may import: WASI (limited by its `WasiCtx` to the grants)
/// and the contract's `log` and `config` interfaces. Policies add the ledger.
pub(crate) fn plugin_linker(engine: &wasmtime::Engine) -> wasmtime::Result<wasmtime::component::Linker<PluginState>> {
    use wasmtime::component::HasSelf;
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    log::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    config::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = &*self.name;
        match level {
            log::Level::Trace => tracing::trace!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "stowage::plugin", plugin, "{message}"),
        }
        if let log::Level::Error = level {
            let mut message = message;
            let mut end = message.len().min(1024);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            self.last_error = Some(message);
        }
    }
}

impl crate::bindings::wit_ledger::Host for PluginState {
    async fn append(&mut self, record: crate::bindings::wit_ledger::TrackingRecord) -> Result<u64, String> {
        let record = crate::convert::tracking_from_wit(record);
        let audit = self.audit.clone();
        // Outside an observe call (a policy recording from `check`): only its name is stamped.
        let record = match &audit {
            Some(a) => lock_audit(a).stamped(record),
            None => crate::ledger::Record { policy: Some(self.name.to_string()), ..record },
        };
        let result = match &self.grants.ledger {
            Some(ledger) => ledger.append(&record).await.map_err(|e| e.to_string()),
            None => Err("this host has no ledger configured".into()),
        };
        if let Some(a) = &audit {
            let mut a = lock_audit(a);
            match &result {
                Ok(index) => a.appended.push(*index),
                Err(e) => {
                    a.failed.get_or_insert_with(|| e.clone());
                }
            }
        }
        result
    }
}

/// A call's audit, even after a panic elsewhere poisoned it (it holds plain data).
fn lock_audit(
    a: &std::sync::Mutex<crate::policy::types::CallAudit>,
) -> std::sync::MutexGuard<'_, crate::policy::types::CallAudit> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.grants.config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.grants.config.clone()
    }
}
