//! Deletes.

use stowage_runtime::StorageError;

use crate::ensure;
use crate::harness::Harness;

pub(crate) async fn removes(h: &Harness) -> Result<(), String> {
    h.put("d/x", b"bye").await?;
    h.put("d/keep", b"stay").await?;
    h.disk.delete(&h.ctx, &h.object("d/x")?).await.map_err(|e| format!("delete: {e}"))?;
    match h.disk.stat(&h.ctx, &h.object("d/x")?).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("stat after delete gave {other:?}")),
    }
    let page = h.disk.list(&h.ctx, &h.listing("d/")?, None, 100).await.map_err(|e| format!("list: {e}"))?;
    let paths: Vec<_> = page.items.into_iter().map(|i| i.path).collect();
    ensure!(paths == vec![h.path("d/keep")], "after delete list gave {paths:?}");
    Ok(())
}

pub(crate) async fn not_found(h: &Harness) -> Result<(), String> {
    match h.disk.delete(&h.ctx, &h.object("ghost")?).await {
        Err(StorageError::NotFound(_)) => Ok(()),
        other => Err(format!("deleting a missing object gave {other:?}")),
    }
}
