//! A driver instance leased for one operation: the pool's lease over the driver world, whose
//! calls go to its `store` exports, and to its `resumable` exports when it has them (a 0.3.0
//! driver has not: it still loads, and its writes cannot be suspended).

use wasmtime::component::InstancePre;

use crate::bindings::driver::{Driver, DriverIndices};
use crate::bindings::{wit_resumable, wit_store};
use crate::pool::Prelinked;
use crate::state::PluginState;

/// A driver instance leased for one operation.
pub(crate) type Lease = crate::pool::Lease<DriverPrelinked>;

/// A driver component linked against the host: where its exports are.
pub(crate) struct DriverPrelinked {
    pre: InstancePre<PluginState>,
    store: DriverIndices,
    /// Where `resumable` is, if the driver exports it.
    resumable: Option<wit_resumable::GuestIndices>,
}

/// One driver instance's exports.
pub(crate) struct DriverBindings {
    store: Driver,
    resumable: Option<wit_resumable::Guest>,
}

impl DriverBindings {
    /// The `resumable` interface, if the driver exports it.
    pub(crate) fn resumable(&self) -> Option<&wit_resumable::Guest> {
        self.resumable.as_ref()
    }
}

impl DriverPrelinked {
    /// Finds the exports of a linked driver: `store` must be there, `resumable` may be.
    pub(crate) fn new(pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        let store = DriverIndices::new(&pre)?;
        let resumable = wit_resumable::GuestIndices::new(&pre).ok();
        Ok(DriverPrelinked { pre, store, resumable })
    }

    /// Whether the driver exports `resumable`.
    pub(crate) fn resumable(&self) -> bool {
        self.resumable.is_some()
    }
}

impl Prelinked for DriverPrelinked {
    type Bindings = DriverBindings;
    type Exports = wit_store::Guest;

    fn exports(bindings: &Self::Bindings) -> &Self::Exports {
        bindings.store.stowage_storage_store()
    }

    fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }

    async fn instantiate(&self, store: &mut wasmtime::Store<PluginState>) -> wasmtime::Result<Self::Bindings> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let driver = self.store.load(&mut *store, &instance)?;
        let resumable = match &self.resumable {
            Some(indices) => Some(indices.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(DriverBindings { store: driver, resumable })
    }
}
