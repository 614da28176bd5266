//! Reads: not-found, stat, exists, ranges, URLs.

use stowage_runtime::{ByteRange, StorageError};

use crate::ensure;
use crate::harness::{Harness, pattern, sha256_hex};

pub(crate) async fn not_found(h: &Harness) -> Result<(), String> {
    let path = h.path("never-written");
    match h.disk.stat(&h.ctx, &path).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("stat of a missing object gave {other:?}")),
    }
    match h.disk.reader(&h.ctx, &path, None).await {
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(format!("reading a missing object gave {e}")),
        Ok(_) => return Err("reading a missing object succeeded".into()),
    }
    Ok(())
}

pub(crate) async fn stat(h: &Harness) -> Result<(), String> {
    let data = pattern(4321, 20);
    h.put("s", &data).await?;
    let info = h.disk.stat(&h.ctx, &h.path("s")).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(info.size == 4321, "stat size {}", info.size);
    ensure!(info.path == h.path("s"), "stat path {:?}", info.path);
    if let Some(sha) = &info.sha256 {
        ensure!(*sha == sha256_hex(&data), "stat sha256 {sha} is wrong");
    }
    Ok(())
}

pub(crate) async fn exists(h: &Harness) -> Result<(), String> {
    h.put("e", b"x").await?;
    ensure!(h.disk.exists(&h.ctx, &h.path("e")).await == Ok(true), "exists is not true for a stored object");
    ensure!(h.disk.exists(&h.ctx, &h.path("nope")).await == Ok(false), "exists is not false for a missing object");
    Ok(())
}

pub(crate) async fn range(h: &Harness) -> Result<(), String> {
    let data = pattern(1000, 21);
    h.put("r", &data).await?;
    let cases = [
        (ByteRange { offset: 100, length: Some(50) }, &data[100..150]),
        (ByteRange { offset: 990, length: None }, &data[990..]),
        (ByteRange { offset: 990, length: Some(500) }, &data[990..]),
        (ByteRange { offset: 0, length: Some(1) }, &data[..1]),
        (ByteRange { offset: 1000, length: None }, &data[1000..]),
    ];
    for (range, want) in cases {
        let got = h.get("r", Some(range)).await.map_err(|e| format!("range {range:?}: {e}"))?;
        ensure!(got == want, "range {range:?} gave {} bytes, not the {} expected", got.len(), want.len());
    }
    match h.get("r", Some(ByteRange { offset: 1001, length: None })).await {
        Err(StorageError::InvalidRange(_)) => Ok(()),
        other => Err(format!("a range past the end gave {other:?}")),
    }
}

pub(crate) async fn url_or_unsupported(h: &Harness) -> Result<(), String> {
    h.put("u", b"x").await?;
    match (h.caps.presign, h.disk.url(&h.ctx, &h.path("u"), 60).await) {
        (true, Ok(url)) => {
            ensure!(!url.is_empty(), "empty URL");
            Ok(())
        }
        (false, Err(StorageError::Unsupported(_))) => Ok(()),
        (caps, other) => Err(format!("presign declared {caps}, url gave {other:?}")),
    }
}
