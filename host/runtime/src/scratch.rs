//! Scoped temporary files (a scratch object that is deleted, through the pipeline and so
//! recorded, whatever way its scope ends) and the path helpers for scratch and submission
//! objects.
//!
//! ```no_run
//! # async fn demo(storage: std::sync::Arc<stowage_runtime::Storage>) -> Result<(), stowage_runtime::StorageError> {
//! use stowage_runtime::Request;
//! let req = Request::new();
//! let tmp = storage.scratch_file("converted.duckdb", &req)?; // scratch:tmp/<request id>/converted.duckdb
//! let mut w = storage.writer(tmp.address(), &req, &Default::default()).await?;
//! w.write(bytes::Bytes::from_static(b"...")).await?;
//! w.finish().await?;
//! // ... use it; on any early return the guard still deletes it ...
//! tmp.remove().await?; // or just drop it
//! # Ok(()) }
//! ```

use std::sync::Arc;

use crate::error::StorageError;
use crate::request::{Address, Request};
use crate::storage::Storage;

/// A scratch object deleted (through the policy pipeline, so the deletion is recorded) when
/// the guard is removed or dropped, whatever the path out of the scope.
pub struct ScratchFile {
    storage: Arc<Storage>,
    addr: Address,
    req: Request,
    armed: bool,
}

impl ScratchFile {
    /// The object's address, to write and read it through the storage.
    pub fn address(&self) -> &Address {
        &self.addr
    }

    /// Deletes the object now (nothing to delete is fine).
    pub async fn remove(mut self) -> Result<(), StorageError> {
        self.armed = false;
        remove(&self.storage, &self.addr, &self.req).await
    }
}

async fn remove(storage: &Storage, addr: &Address, req: &Request) -> Result<(), StorageError> {
    match storage.delete(addr, req).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (storage, addr, req) = (self.storage.clone(), self.addr.clone(), self.req.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = remove(&storage, &addr, &req).await {
                        tracing::warn!(
                            kind = e.kind().as_str(),
                            "a scoped scratch file could not be deleted; `stowage cleanup` will retry"
                        );
                    }
                });
            }
            Err(_) => tracing::warn!("a scoped scratch file outlived its runtime; `stowage cleanup` will delete it"),
        }
    }
}

impl Storage {
    /// A guard for the scratch object `tmp/<request id>/<name>`: the object (once written) is
    /// deleted when the guard is removed or dropped. Its cleanup deadline is recorded by the
    /// PHI-tracking policy like any scratch file's.
    pub fn scratch_file(self: &Arc<Self>, name: &str, req: &Request) -> Result<ScratchFile, StorageError> {
        let path = format!("tmp/{}/{name}", req.request_id);
        stowage_path::validate(&path)?;
        Ok(ScratchFile {
            storage: self.clone(),
            addr: Address { name: "scratch".into(), path },
            req: req.clone(),
            armed: true,
        })
    }
}

/// `submissions/{cohort}/{year}/{file_type}/{file}`, e.g. `submissions/VACS/2024/patient/data.csv`.
pub fn submission_path(cohort: &str, protocol_year: u32, file_type: &str, file: &str) -> Result<String, StorageError> {
    let path = format!("submissions/{cohort}/{protocol_year}/{file_type}/{file}");
    stowage_path::validate(&path)?;
    Ok(path)
}

/// `scratch/audit_{id}/{file}`, e.g. `scratch/audit_123/converted_data.duckdb`.
pub fn scratch_path(audit_id: &str, file: &str) -> Result<String, StorageError> {
    let path = format!("scratch/audit_{audit_id}/{file}");
    stowage_path::validate(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers_build_the_original_layout_and_refuse_escapes() {
        assert_eq!(submission_path("VACS", 2024, "patient", "d.csv").unwrap(), "submissions/VACS/2024/patient/d.csv");
        assert_eq!(scratch_path("123", "x.duckdb").unwrap(), "scratch/audit_123/x.duckdb");
        assert!(matches!(submission_path("..", 2024, "p", "f"), Err(StorageError::InvalidPath(_))));
        assert!(matches!(scratch_path("1", "a/../../b"), Err(StorageError::InvalidPath(_))));
    }
}
