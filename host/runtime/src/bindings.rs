//! The one place where Rust bindings for the WIT contract are generated on the host side.
//! Nothing outside `bindings` and `convert` uses these generated types.

#![allow(missing_docs, reason = "generated code carries the WIT's own docs")]

/// Bindings for the `driver` world.
pub mod driver {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "driver",
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
        },
        require_store_data_send: true,
    });
}

pub use driver::exports::stowage::storage::store as wit_store;

/// Bindings for the `resumable-driver` world (0.3.1): only its `resumable` export is used,
/// found apart from `store` so that a driver without it (any 0.3.0 driver) still loads.
pub mod resumable_driver {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "resumable-driver",
        exports: { default: async },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "stowage:storage/types": super::driver::stowage::storage::types,
            "stowage:storage/log": super::driver::stowage::storage::log,
            "stowage:storage/config": super::driver::stowage::storage::config,
        },
        require_store_data_send: true,
    });
}

pub use driver::stowage::storage::types as wit;
pub use resumable_driver::exports::stowage::storage::resumable as wit_resumable;

/// Bindings for the `policy` world; shared interfaces reuse the driver world's types.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy",
        exports: { default: async },
        // A ledger append waits for its group commit without holding a worker thread.
        imports: { "stowage:storage/ledger.append": async },
        with: {
            "stowage:storage/types": super::driver::stowage::storage::types,
            "stowage:storage/log": super::driver::stowage::storage::log,
            "stowage:storage/config": super::driver::stowage::storage::config,
        },
        require_store_data_send: true,
    });
}

pub use policy::exports::stowage::storage::policy_hooks as wit_policy;
pub use policy::stowage::storage::ledger as wit_ledger;
