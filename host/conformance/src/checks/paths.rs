//! Path rules, enforced by the driver itself: these calls go through `Disk::unchecked`, so
//! the paths reach the driver as written, past the host's own check. A driver built on the
//! SDK refuses them in its export wrapper; any other driver must refuse them itself.

use bytes::Bytes;
use stowage_runtime::{StorageError, WriteOptions};

use crate::ensure;
use crate::harness::Harness;

/// Paths every driver must refuse with `invalid-path`.
pub const INVALID: &[&str] = &[
    "",
    "../escape",
    "a/../../escape",
    "/etc/passwd",
    "a//b",
    "a/./b",
    "trailing/",
    "nul\0byte",
    "line\nbreak",
    "back\\slash",
];

pub(crate) async fn invalid_refused(h: &Harness) -> Result<(), String> {
    let long = "x/".repeat(600) + "x";
    let mut cases: Vec<String> = INVALID.iter().map(|s| s.to_string()).collect();
    cases.push(long);
    for path in &cases {
        match h.disk.unchecked().writer(&h.ctx, path, &WriteOptions::default()).await {
            Err(StorageError::InvalidPath(reason)) => ensure!(!reason.is_empty(), "empty reason for {path:?}"),
            Err(e) => return Err(format!("writing {path:?} gave {e}, not invalid-path")),
            Ok(_) => return Err(format!("writing {path:?} was accepted")),
        }
        match h.disk.unchecked().stat(&h.ctx, path).await {
            Err(StorageError::InvalidPath(_)) => {}
            other => return Err(format!("stat {path:?} gave {other:?}, not invalid-path")),
        }
        match h.disk.unchecked().reader(&h.ctx, path, None).await {
            Err(StorageError::InvalidPath(_)) => {}
            Err(e) => return Err(format!("reading {path:?} gave {e}, not invalid-path")),
            Ok(_) => return Err(format!("reading {path:?} was accepted")),
        }
        match h.disk.unchecked().delete(&h.ctx, path).await {
            Err(StorageError::InvalidPath(_)) => {}
            other => return Err(format!("delete {path:?} gave {other:?}, not invalid-path")),
        }
    }
    match h.disk.unchecked().list(&h.ctx, "../", None, 10).await {
        Err(StorageError::InvalidPath(_)) => Ok(()),
        other => Err(format!("list of `../` gave {other:?}, not invalid-path")),
    }
}

pub(crate) async fn nested_and_unicode(h: &Harness) -> Result<(), String> {
    let name = "submissions/VACS/2024/patient/dönnées v2 (final).csv";
    h.disk
        .put_bytes(&h.ctx, &h.object(name)?, Bytes::from_static(b"ok"), &WriteOptions::default())
        .await
        .map_err(|e| format!("put {name}: {e}"))?;
    let back = h.get(name, None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == b"ok", "nested unicode path read back wrong");
    Ok(())
}
