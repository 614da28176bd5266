//! A driver instance leased for one operation: the pool's lease over the driver world, whose
//! calls go to its `store` exports.

use crate::bindings::driver::DriverPre;
use crate::bindings::wit_store;
use crate::pool::Prelinked;
use crate::state::PluginState;

/// A driver instance leased for one operation.
pub(crate) type Lease = crate::pool::Lease<DriverPre<PluginState>>;

impl Prelinked for DriverPre<PluginState> {
    type Bindings = crate::bindings::driver::Driver;
    type Exports = wit_store::Guest;

    fn exports(bindings: &Self::Bindings) -> &Self::Exports {
        bindings.stowage_storage_store()
    }

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
