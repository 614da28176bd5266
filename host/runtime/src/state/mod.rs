//! What one plugin instance's `Store` holds: its WASI context (with only the granted
//! capabilities), its resource table, its memory limiter and what its grants let it reach.
//! The host interfaces it imports are implemented over it in `imports/`.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::http::EndpointGuard;

mod grants;

pub(crate) use grants::Grants;
pub use grants::{DriverGrants, PolicyGrants};

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
    pub(crate) name: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_hooks: EndpointGuard,
    pub(crate) table: ResourceTable,
    limiter: Limiter,
    pub(crate) grants: Arc<Grants>,
    /// When the current call must have returned (see `pool::Lease::begin_with`).
    pub(crate) deadline: Instant,
    /// For a policy's `observe` call: what the host stamps on its ledger records, and what
    /// they were.
    pub(crate) audit: Option<Arc<std::sync::Mutex<crate::policy::types::CallAudit>>>,
    /// The last error the plugin logged (its first KiB): a policy that refuses its config
    /// logs why before it traps, and the host's refusal to start quotes it.
    pub(crate) last_error: Option<String>,
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
        if let Some(dir) = grants.dir() {
            wasi.preopened_dir(dir, "/", FsPerms::ReadWrite)
                .map_err(|e| std::io::Error::other(format!("cannot open granted directory {}: {e}", dir.display())))?;
        }
        Ok(PluginState {
            http_hooks: EndpointGuard {
                plugin: name.clone(),
                outbound: grants.outbound().cloned(),
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
