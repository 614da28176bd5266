//! Reads: not-found, stat, exists, ranges, URLs.

use stowage_runtime::{ByteRange, StorageError};

use crate::ensure;
use crate::harness::{Harness, pattern, sha256_hex};

pub(crate) async fn not_found(h: &Harness) -> Result<(), String> {
    let path = h.object("never-written")?;
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
    let info = h.disk.stat(&h.ctx, &h.object("s")?).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(info.size == 4321, "stat size {}", info.size);
    ensure!(info.path == h.path("s"), "stat path {:?}", info.path);
    ensure!(info.sha256.as_ref().is_none_or(|sha| *sha == sha256_hex(&data)), "stat sha256 {:?} is wrong", info.sha256);
    Ok(())
}

/// A driver that keeps metadata keeps the sha256 the host measured: without it nothing can
/// check the bytes later.
pub(crate) async fn stat_sha256(h: &Harness) -> Result<(), String> {
    let data = pattern(5000, 22);
    h.put("d", &data).await?;
    let info = h.disk.stat(&h.ctx, &h.object("d")?).await.map_err(|e| format!("stat: {e}"))?;
    match &info.sha256 {
        Some(sha) => ensure!(*sha == sha256_hex(&data), "stat sha256 {sha} is not the object's"),
        None => return Err("stat gives no sha256: the driver stores no digest of what it keeps".into()),
    }
    Ok(())
}

pub(crate) async fn exists(h: &Harness) -> Result<(), String> {
    h.put("e", b"x").await?;
    ensure!(h.disk.exists(&h.ctx, &h.object("e")?).await == Ok(true), "exists is not true for a stored object");
    ensure!(h.disk.exists(&h.ctx, &h.object("nope")?).await == Ok(false), "exists is not false for a missing object");
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
    let data = pattern(777, 23);
    h.put("u", &data).await?;
    match (h.caps.presign, h.disk.url(&h.ctx, &h.object("u")?, 60).await) {
        (true, Ok(url)) => {
            let uri: http::Uri = url.parse().map_err(|_| format!("url gave `{url}`, which is not a URL"))?;
            ensure!(
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
                "url gave `{url}`, not an http(s) URL"
            );
            let path = percent_decode(uri.path());
            ensure!(path.ends_with(&h.path("u")), "url gave `{url}`, which does not name the object {}", h.path("u"));
            // With an endpoint granted, the URL must serve the object itself.
            if let Some(fetched) = h.disk.fetch(&url, 1 << 20).await {
                let (status, body) = fetched?;
                ensure!(status == 200, "GET of the signed URL answered {status}");
                ensure!(
                    body.as_ref() == data.as_slice(),
                    "the signed URL served {} bytes that are not the object",
                    body.len()
                );
            }
            Ok(())
        }
        (false, Err(StorageError::Unsupported(_))) => Ok(()),
        (caps, other) => Err(format!("presign declared {caps}, url gave {other:?}")),
    }
}

/// `%XX` escapes decoded (a URL path as text).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
