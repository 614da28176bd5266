//! The host interfaces a plugin may import, one file each, and the linkers that offer them:
//! WASI limited to the plugin's grants (`wasi.rs`), the contract's `log` and `config`, and for
//! policies the PHI `ledger`. Drivers also get `wasi:http`, whose every request leaves through
//! the disk's granted origin or not at all (`crate::http::EndpointGuard`).

mod config;
mod ledger;
mod log;
mod wasi;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::driver::stowage::storage::{config as wit_config, log as wit_log};
use crate::bindings::wit_ledger;
use crate::state::PluginState;

/// What every plugin may import: WASI (limited by its `WasiCtx` to the grants) and the
/// contract's `log` and `config` interfaces.
fn plugin_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wit_log::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    wit_config::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A driver's imports: every plugin's, and `wasi:http` (the host refuses every request outside
/// the disk's granted endpoint; none granted: no request leaves).
pub(crate) fn driver_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = plugin_linker(engine)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// A policy's imports: every plugin's, and the PHI ledger.
pub(crate) fn policy_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = plugin_linker(engine)?;
    wit_ledger::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?;
    Ok(linker)
}
