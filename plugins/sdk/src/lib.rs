//! Guest-side bindings for Stowage plugins, generated once from the project's WIT, and the
//! kit drivers share.
//!
//! A driver implements [`Store`]: the `store` interface with every object path already
//! checked (an [`ObjectPath`](path::ObjectPath); `list` gets a [`Prefix`](path::Prefix)). It
//! exports it with [`export_store!`], whose wrapper parses each path the host sent once and
//! answers a bad one with `invalid-path` before the driver runs:
//!
//! ```text
//! use stowage_plugin_sdk::Store;
//! struct MyDriver;
//! impl Store for MyDriver { /* ... */ }
//! stowage_plugin_sdk::export_store!(MyDriver);
//! ```
//!
//! `wasi:io` streams are the [`wasip2`] crate's types, so a driver can hand the host a stream
//! it opened with `wasip2` (a file, an HTTP body) for direct byte transfer.

#![allow(missing_docs, reason = "generated bindings carry the WIT's own docs")]

pub use stowage_path as path;
pub use wasip2;

mod describe;
pub mod parts;
pub mod settings;
pub mod store;

pub use store::{Store, StoreExport};

pub use describe::Describe;

/// Bindings for the `resumable-driver` world: the `driver` world's `store` and the `resumable`
/// interface (0.3.1). Every driver built with the kit exports both; one that cannot resume
/// writes keeps [`Store`]'s defaults, which answer `unsupported`.
pub mod driver {
    wit_bindgen::generate!({
        world: "resumable-driver",
        path: "../../wit",
        with: {
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
        },
        pub_export_macro: true,
        export_macro_name: "export_driver",
        default_bindings_module: "stowage_plugin_sdk::driver",
    });
}

/// Bindings for the `policy` world.
pub mod policy {
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "stowage_plugin_sdk::policy",
    });
}

use driver::stowage::storage::types::Error;
use policy::exports::stowage::storage::policy_hooks::OperationSet;

/// Every operation, for a policy's `interests` (`OperationSet::empty()` is none).
pub fn all_operations() -> OperationSet {
    OperationSet::PUT
        | OperationSet::GET
        | OperationSet::STAT
        | OperationSet::EXISTS
        | OperationSet::LIST
        | OperationSet::DELETE
        | OperationSet::URL
}

impl From<path::PathError> for Error {
    fn from(e: path::PathError) -> Self {
        Error::InvalidPath(e.to_string())
    }
}

/// A failure that may pass: trying again later may succeed.
pub fn unavailable(reason: String) -> Error {
    Error::Unavailable(driver::stowage::storage::types::Unavailable { reason, retryable: true })
}

/// Whether trying again later may succeed.
pub fn retryable(e: &Error) -> bool {
    matches!(e, Error::Unavailable(u) if u.retryable)
}

/// A list-valued config setting: `a,b` or a TOML array (`["a", "b"]`), trimmed, without quotes.
pub fn config_list(value: &str) -> Vec<String> {
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `exists` over a driver's `stat`: found, not found, or the failure.
pub fn found<T>(stat: Result<T, Error>) -> Result<bool, Error> {
    match stat {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
