//! A driver instance leased for one operation, and how a call into it begins.

use crate::bindings::driver::DriverPre;
use crate::bindings::wit_store;
use crate::error::StorageError;
use crate::pool::Prelinked;
use crate::state::PluginState;

/// A driver instance leased for one operation.
pub(crate) type Lease = crate::pool::Lease<DriverPre<PluginState>>;

impl Prelinked for DriverPre<PluginState> {
    type Bindings = crate::bindings::driver::Driver;

    fn engine(&self) -> &wasmtime::Engine {
        DriverPre::engine(self)
    }

    fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send {
        self.instantiate_async(store)
    }
}

impl Lease {
    /// Arms the call deadline and gives the store and the driver's `store` exports.
    pub(crate) fn begin(&mut self) -> Result<(&mut wasmtime::Store<PluginState>, &wit_store::Guest), StorageError> {
        self.begin_with(std::time::Duration::ZERO)
    }

    /// Like `begin`, with `extra` time for calls whose host-side I/O grows with the object.
    pub(crate) fn begin_with(
        &mut self,
        extra: std::time::Duration,
    ) -> Result<(&mut wasmtime::Store<PluginState>, &wit_store::Guest), StorageError> {
        let (store, driver) = self.enter(extra)?;
        Ok((store, driver.stowage_storage_store()))
    }
}
