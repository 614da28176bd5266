//! The queue's locks, shared by every process of one host (`serve`, the command line, a cron
//! `stowage sync`): lock files beside the ledger, held with `flock` (which also excludes two
//! holders within one process, as each takes its own open file).
//!
//! - The **entry lock** is held briefly: while a write or delete replaces an entry on the
//!   fallback, and while the syncer checks that the entry it moved is unchanged, records the
//!   move and removes the entry. So an entry a client replaced is never removed.
//! - The **sync lease** is held for a whole pass: one syncer at a time, so no pass copies an
//!   old entry over what another pass (or a later entry) put on the disk.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::StorageError;

/// The lock files of one host's queues.
#[derive(Debug)]
pub(crate) struct QueueLocks {
    entry: PathBuf,
    sync: PathBuf,
    /// One waiter per process at a time (the others wait here, not on a blocking thread).
    local: tokio::sync::Mutex<()>,
}

/// The entry lock, held until dropped.
pub(crate) struct EntryLock<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _file: File,
}

/// The sync lease, held until dropped.
pub(crate) struct SyncLease {
    _file: File,
}

impl QueueLocks {
    /// The locks of the host whose ledger is at `ledger`.
    pub(crate) fn beside(ledger: &Path) -> Arc<QueueLocks> {
        let with = |suffix: &str| {
            let mut name = ledger.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Arc::new(QueueLocks {
            entry: with(".fallback-entries.lock"),
            sync: with(".fallback-sync.lock"),
            local: tokio::sync::Mutex::new(()),
        })
    }

    /// Waits for the entry lock.
    pub(crate) async fn entry(&self) -> Result<EntryLock<'_>, StorageError> {
        let local = self.local.lock().await;
        let file = open(&self.entry)?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| StorageError::Io(format!("waiting for the fallback queue's lock failed: {e}")))?
            .map_err(|e| lock_error(&self.entry, &e))?;
        Ok(EntryLock { _local: local, _file: file })
    }

    /// The sync lease, unless another process holds it (`None`).
    pub(crate) fn try_sync(&self) -> Result<Option<SyncLease>, StorageError> {
        let file = open(&self.sync)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SyncLease { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(lock_error(&self.sync, &e)),
        }
    }
}

fn open(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| lock_error(path, &e))
}

fn lock_error(path: &Path, e: &std::io::Error) -> StorageError {
    StorageError::Io(format!("the fallback queue's lock file {} cannot be used: {e}", path.display()))
}
