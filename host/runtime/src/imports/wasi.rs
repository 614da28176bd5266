//! WASI 0.2 and `wasi:http` over the store: the context holds only what the grants allow (a
//! preopened directory, no environment, no sockets), and outgoing HTTP goes through the
//! disk's `EndpointGuard`. The contract's `types` interface has no functions.

use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use crate::bindings::driver::stowage::storage::types;
use crate::state::PluginState;

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

impl types::Host for PluginState {}
