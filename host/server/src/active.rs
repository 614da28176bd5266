//! The set a host serves with, which a reload replaces as a whole (`reload.rs`), and what
//! reloads did so far (for `/metrics` and the status file).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use stowage_runtime::Storage;

use crate::keys::ApiKeys;
use crate::settings::{Settings, Tuning};

/// One set a host serves with: what a reload replaces as a whole.
pub struct Active {
    /// Disks, policies and the ledger.
    pub(crate) storage: Arc<Storage>,
    /// Who may call `/v1`.
    pub(crate) keys: ApiKeys,
    /// Signs download URLs, if configured.
    pub(crate) url_secret: Option<Arc<[u8]>>,
    /// The base URL clients reach the host at (`public_url`), if configured.
    pub(crate) public_url: Option<String>,
    /// TLS, or none in development mode.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where it listens (a reload may not change it).
    pub(crate) listen: std::net::SocketAddr,
    /// Its timeouts and limits (a reload may not change them).
    pub(crate) tuning: Tuning,
    /// Scheduled fixity checks (a reload may change them).
    pub(crate) fixity: Option<stowage_runtime::config::FixityPlan>,
}

impl Active {
    /// The set of `storage` under `settings`.
    pub fn new(storage: Arc<Storage>, settings: Settings) -> Active {
        Active {
            storage,
            keys: settings.keys,
            url_secret: settings.url_secret,
            public_url: settings.public_url,
            tls: settings.tls.map(tokio_rustls::TlsAcceptor::from),
            listen: settings.listen,
            tuning: settings.tuning,
            fixity: settings.fixity,
        }
    }
}

/// What `/metrics` says of reloads.
pub struct Reloads {
    /// Reloads that swapped a new set in.
    pub(crate) done: AtomicU64,
    /// Reloads refused.
    pub(crate) failed: AtomicU64,
    /// Reloads asked for (each SIGHUP that started one).
    pub(crate) generation: AtomicU64,
    /// sha256 of the config in force.
    pub(crate) sha256: std::sync::Mutex<String>,
}

impl Reloads {
    /// No reload yet; the config in force hashes to `sha256`.
    pub fn new(sha256: &str) -> Reloads {
        Reloads {
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            sha256: std::sync::Mutex::new(sha256.to_string()),
        }
    }

    /// The config in force.
    pub(crate) fn sha256(&self) -> String {
        self.sha256.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
