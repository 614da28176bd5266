//! What every handler shares: the set in force and the data of each area (upload sessions,
//! request counters, per-credential places, readiness, reloads), the storage work runtime and
//! the tuning. It is made of leaf modules that import no handler, and the handlers take it,
//! so data flows one way: handlers → state → the leaves.

use std::sync::{Arc, Weak};

use stowage_runtime::Storage;

use crate::active::{Active, Reloads};
use crate::counters::Counters;
use crate::fixity::FixityRuns;
use crate::per_key::PerKey;
use crate::readiness::Readiness;
use crate::sessions::Sessions;
use crate::settings::Tuning;

/// What every handler shares: one pointer, so the clone each middleware layer and handler
/// takes is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct Shared {
    /// The set requests run on; a reload swaps in a new one, and a request keeps the set it
    /// started on to its end.
    pub(crate) active: arc_swap::ArcSwap<Active>,
    /// Requests and bytes, for `/metrics`.
    pub(crate) metrics: Arc<Counters>,
    /// Reloads tried, refused, and of which config.
    pub(crate) reloads: Reloads,
    /// Resumable uploads in progress, kept in this process's memory.
    pub(crate) uploads: Arc<Sessions>,
    /// Resumable uploads kept in the ledger's database (on disks whose writes can be
    /// suspended); none if the database cannot keep them.
    pub(crate) durable: Option<Arc<crate::leases::Durable>>,
    /// Requests in flight per credential.
    pub(crate) per_key: Arc<PerKey>,
    /// The last readiness probe.
    pub(crate) readiness: Arc<Readiness>,
    /// What the scheduled fixity checks found.
    pub(crate) fixity: FixityRuns,
    /// The runtime storage work runs on (plugin calls, file I/O).
    pub(crate) work: tokio::runtime::Handle,
    /// Timeouts and limits.
    pub(crate) tuning: Tuning,
}

impl Shared {
    /// The storage of the set in force now.
    pub fn storage(&self) -> Arc<Storage> {
        self.active.load().storage.clone()
    }
}

impl AppState {
    /// The shared state over `active`; storage work runs on `work`.
    pub fn new(active: Active, config_sha256: &str, tuning: Tuning, work: tokio::runtime::Handle) -> AppState {
        let durable = match active.storage.ledger().sessions() {
            Ok(store) => Some(Arc::new(crate::leases::Durable::new(store))),
            Err(e) => {
                tracing::warn!(error = %e, "upload sessions are kept in memory only: the ledger's database cannot keep them");
                None
            }
        };
        AppState(Arc::new(Shared {
            durable,
            reloads: Reloads::new(config_sha256),
            active: arc_swap::ArcSwap::from_pointee(active),
            metrics: Arc::default(),
            uploads: Arc::new(Sessions::new(tuning.max_uploads, tuning.max_uploads_per_key)),
            per_key: Arc::new(PerKey::new(tuning.max_requests_per_key)),
            readiness: Arc::new(Readiness::new(tuning.readiness_interval)),
            fixity: FixityRuns::default(),
            work,
            tuning,
        }))
    }

    /// The state `shared` is (from a pointer that did not keep it alive).
    pub fn from_shared(shared: Arc<Shared>) -> AppState {
        AppState(shared)
    }

    /// A pointer to the state that does not keep it alive (for tasks that end with it).
    pub fn downgrade(&self) -> Weak<Shared> {
        Arc::downgrade(&self.0)
    }
}
