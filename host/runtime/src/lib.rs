//! The Stowage host runtime: loads storage driver components (WebAssembly, wasm32-wasip2)
//! with only the capabilities config grants them, pools their instances, and streams bytes
//! through them while measuring size and sha256.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stowage_runtime::{Address, LoadedConfig, Request, Storage};
//! let config = LoadedConfig::load(None)?; // ./stowage.toml or the embedded default
//! let storage = Storage::start(&config)?;
//! let addr = Address::parse("default:hello.txt")?;
//! let mut writer = storage.writer(&addr, &Request::new(), &Default::default()).await?;
//! writer.write(bytes::Bytes::from_static(b"hello")).await?;
//! let info = writer.finish().await?;
//! assert_eq!(info.size, 5);
//! # Ok(()) }
//! ```

mod audit;
mod bindings;
/// The config file and its plans (its own crate, re-exported).
pub use stowage_config as config;
mod convert;
pub mod driver;
pub mod engine;
pub mod error;
pub mod fallback;
pub mod fixity;
pub mod http;
mod imports;
mod maintenance;
pub mod mirror;
/// The PHI ledger (its own crate, re-exported).
pub use stowage_ledger as ledger;
mod owner;
pub mod plugin;
pub mod policy;
mod pool;
mod request;
pub mod scratch;
mod state;
pub mod storage;
pub mod types;
mod upload;
mod usage;

pub use config::{ConfigError, ConfigSource, LoadedConfig};
pub use driver::{DigestState, Disk, MAX_CHUNK, ObjectReader, ObjectWriter, Suspended, Unchecked};
pub use engine::{Limits, PluginEngine};
pub use error::{FaultKind, StorageError};
pub use fixity::{FixityReport, FsckOptions, Problem, ProblemKind};
pub use maintenance::{Reconciled, Swept};
pub use owner::{HostId, Liveness, OwnerTag, Owners, owners};
pub use request::{Address, Request};
pub use scratch::{ScratchFile, scratch_path, submission_path};
pub use state::{DriverGrants, PolicyGrants};
pub use storage::{StartError, Storage, UrlSigner};
/// Checked object paths and listing prefixes (the `stowage-path` crate's types).
pub use stowage_path::{ObjectPath, PathError, Prefix};
pub use types::*;
pub use upload::Upload;
