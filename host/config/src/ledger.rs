//! `[ledger]` checked and planned: the SQLite file (or, with `url`, the PostgreSQL database
//! and this host's files beside `path`), checkpoints, the host's name and the lock bound.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::endpoint::read_ca_file;
use crate::model::{self, LedgerConfig};
use crate::values::resolve_value;

/// The PHI ledger: its file, how it is opened, and what a failed record does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerPlan {
    /// The SQLite file (with a database URL: where this host's own files are, beside it).
    pub path: PathBuf,
    /// Its checkpoints (file, host key, schedule) and lock timeout.
    pub options: stowage_ledger::LedgerOptions,
    /// A required policy that cannot record only logs (`[ledger] on_failure = "log"`).
    pub log_only: bool,
}

/// Checks `[ledger]` and builds its plan (relative paths from `base_dir`); each problem is
/// reported at its place.
pub(crate) fn plan(l: &LedgerConfig, base_dir: &Path, problem: &mut dyn FnMut(Range<usize>, String)) -> LedgerPlan {
    let path = ledger_path(l, base_dir);
    let log_only = l.on_failure.as_ref().is_some_and(|o| *o.get_ref() == model::OnFailure::Log);
    let mut options = ledger_options(l, base_dir, &path);
    let ca_file = l.ca_file.as_ref().and_then(|ca| {
        if l.url.is_none() {
            problem(ca.span(), "ledger.ca_file needs ledger.url: it only vouches for that database".into());
        }
        let file = base_dir.join(ca.get_ref());
        read_ca_file(&file).map_err(|message| problem(ca.span(), format!("ledger.ca_file: {message}"))).ok()?;
        Some(file)
    });
    if let Some(url) = &l.url {
        match resolve_value(url.get_ref(), "ledger.url") {
            Ok(text) if is_postgres_url(&text) => {
                options.database = Some(stowage_ledger::PostgresLedger { url: text, ca_file });
            }
            // The value may hold a password: it is never quoted.
            Ok(_) => problem(
                url.span(),
                "ledger.url must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)".into(),
            ),
            Err(message) => problem(url.span(), message),
        }
    }
    options.host = match &l.host {
        Some(h) if h.get_ref().trim().is_empty() || h.get_ref().chars().any(char::is_control) => {
            problem(h.span(), "ledger.host must be a non-empty name without control characters".into());
            None
        }
        Some(h) => Some(h.get_ref().clone()),
        None => match (&l.url, options.database.is_some()) {
            (Some(url), true) => {
                let name = machine_name();
                if name.is_none() {
                    // Unnamed, a host could not tell its own write-ahead records from another's.
                    problem(url.span(), "ledger.url: this machine has no host name: set ledger.host".into());
                }
                name
            }
            _ => None,
        },
    };
    if options.database.is_some()
        && let Some(ms) = &l.lock_timeout_ms
        && *ms.get_ref() < 100
    {
        // Every call to the database is bounded by it, round trips included.
        problem(
            ms.span(),
            format!("ledger.lock_timeout_ms = {} is too short for PostgreSQL (at least 100)", ms.get_ref()),
        );
    }
    LedgerPlan { options, path, log_only }
}

/// The ledger database file.
fn ledger_path(l: &LedgerConfig, base_dir: &Path) -> PathBuf {
    match &l.path {
        Some(p) => base_dir.join(p.get_ref()),
        None => base_dir.join("stowage-ledger.sqlite"),
    }
}

/// How to open the ledger at `path`: its checkpoints (file, host key, schedule) and lock
/// timeout.
fn ledger_options(l: &LedgerConfig, base_dir: &Path, path: &Path) -> stowage_ledger::LedgerOptions {
    let beside = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let policy = stowage_ledger::CheckpointPolicy {
        origin: l.origin.as_ref().map_or_else(|| "stowage-ledger".to_string(), |o| o.get_ref().clone()),
        every_records: l.checkpoint_every.as_ref().map_or(1000, |v| *v.get_ref()),
        every_secs: l.checkpoint_interval_secs.as_ref().map_or(60, |v| *v.get_ref()),
        file: l.checkpoints.as_ref().map_or_else(|| beside(".checkpoints"), |p| base_dir.join(p)),
        key_file: l.host_key.as_ref().map_or_else(|| beside(".key"), |p| base_dir.join(p)),
    };
    stowage_ledger::LedgerOptions {
        checkpoints: Some(policy),
        lock_timeout: Duration::from_millis(l.lock_timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref())),
        ..stowage_ledger::LedgerOptions::default()
    }
}

/// Whether `text` is a PostgreSQL connection URL.
fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The machine's host name (`/proc/sys/kernel/hostname`), if it has one.
fn machine_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}
