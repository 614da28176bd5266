//! What a plugin instance may reach, by world: a driver gets at most one directory and one
//! HTTP(S) origin; a policy gets the ledger. Both get their own config values. Built by the
//! runtime from the config's plain-data plan (`stowage_config::GrantPlan`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::http::Outbound;
use crate::ledger::Ledger;

/// What config grants a driver, and its own config values.
#[derive(Clone, Default)]
pub struct DriverGrants {
    /// The one host directory the driver may use, preopened as `/`.
    pub dir: Option<PathBuf>,
    /// The driver's config values, flattened (`key`, `parent.child`).
    pub config: Vec<(String, String)>,
    /// The one HTTP(S) origin it may send requests to, with the credentials the host adds and
    /// the connection pool the disk's instances share.
    pub outbound: Option<Arc<Outbound>>,
}

/// What a policy is given: its config values and the ledger it may append to.
#[derive(Clone, Default)]
pub struct PolicyGrants {
    /// The policy's config values, flattened (`key`, `parent.child`).
    pub config: Vec<(String, String)>,
    /// The ledger `ledger.append` writes to (none: appends fail).
    pub ledger: Option<Arc<Ledger>>,
}

/// What one instance's store may reach: a driver's grants or a policy's.
pub(crate) enum Grants {
    /// A driver's.
    Driver(DriverGrants),
    /// A policy's.
    Policy(PolicyGrants),
}

impl Grants {
    /// The plugin's config values.
    pub(crate) fn config(&self) -> &[(String, String)] {
        match self {
            Grants::Driver(g) => &g.config,
            Grants::Policy(g) => &g.config,
        }
    }

    /// The directory preopened as `/` (drivers only).
    pub(crate) fn dir(&self) -> Option<&PathBuf> {
        match self {
            Grants::Driver(g) => g.dir.as_ref(),
            Grants::Policy(_) => None,
        }
    }

    /// The way out to the granted origin (drivers only).
    pub(crate) fn outbound(&self) -> Option<&Arc<Outbound>> {
        match self {
            Grants::Driver(g) => g.outbound.as_ref(),
            Grants::Policy(_) => None,
        }
    }

    /// The ledger (policies only).
    pub(crate) fn ledger(&self) -> Option<&Arc<Ledger>> {
        match self {
            Grants::Driver(_) => None,
            Grants::Policy(g) => g.ledger.as_ref(),
        }
    }
}

impl std::fmt::Debug for DriverGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config values may be secrets (env references): keys only.
        let keys: Vec<&str> = self.config.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("DriverGrants")
            .field("dir", &self.dir)
            .field("config_keys", &keys)
            .field("endpoint", &self.outbound.as_ref().map(|o| o.endpoint()))
            .finish()
    }
}

impl std::fmt::Debug for PolicyGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.config.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("PolicyGrants").field("config_keys", &keys).field("ledger", &self.ledger.is_some()).finish()
    }
}
