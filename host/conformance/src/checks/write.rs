//! Writes: round trips, overwrite, atomic visibility, abort, create-only, metadata, streaming.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use stowage_runtime::{StorageError, WriteOptions};

use crate::ensure;
use crate::harness::{Harness, pattern, sha256_hex};

pub(crate) async fn roundtrip(h: &Harness) -> Result<(), String> {
    let data = pattern(300_000, 1);
    let info = h.put("obj.bin", &data).await?;
    ensure!(info.size == data.len() as u64, "finish reported size {} for {} bytes", info.size, data.len());
    ensure!(info.sha256.as_deref() == Some(sha256_hex(&data).as_str()), "finish reported sha256 {:?}", info.sha256);
    ensure!(info.path == h.path("obj.bin"), "finish reported path {:?}", info.path);
    let back = h.get("obj.bin", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == data, "read back {} bytes that differ from the {} written", back.len(), data.len());
    Ok(())
}

pub(crate) async fn empty_object(h: &Harness) -> Result<(), String> {
    let info = h.put("empty", b"").await?;
    ensure!(info.size == 0, "size {} for an empty object", info.size);
    let back = h.get("empty", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back.is_empty(), "empty object read back as {} bytes", back.len());
    Ok(())
}

pub(crate) async fn overwrite(h: &Harness) -> Result<(), String> {
    h.put("o", &pattern(5000, 2)).await?;
    let v2 = pattern(1234, 3);
    let info = h.put("o", &v2).await?;
    ensure!(info.size == 1234, "second write reported size {}", info.size);
    let back = h.get("o", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == v2, "after overwrite read {} bytes, not the second version", back.len());
    let stat = h.disk.stat(&h.ctx, &h.path("o")).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(stat.size == 1234, "stat after overwrite says {} bytes", stat.size);
    Ok(())
}

pub(crate) async fn invisible_until_finish(h: &Harness) -> Result<(), String> {
    let path = h.path("pending");
    let mut w = h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(10_000, 4))).await.map_err(|e| format!("write: {e}"))?;
    match h.disk.stat(&h.ctx, &path).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("an unfinished write is visible to stat: {other:?}")),
    }
    let listed = h.disk.list(&h.ctx, &h.prefix(), None, 100).await.map_err(|e| format!("list: {e}"))?;
    ensure!(listed.items.is_empty(), "an unfinished write shows in list: {:?}", listed.items);
    w.finish().await.map_err(|e| format!("finish: {e}"))?;
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(true), "a finished write is not visible");
    Ok(())
}

pub(crate) async fn abort_leaves_nothing(h: &Harness) -> Result<(), String> {
    let path = h.path("aborted");
    let mut w = h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(100_000, 5))).await.map_err(|e| format!("write: {e}"))?;
    w.abort().await.map_err(|e| format!("abort: {e}"))?;
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(false), "an aborted write is visible");
    let listed = h.disk.list(&h.ctx, &h.prefix(), None, 100).await.map_err(|e| format!("list: {e}"))?;
    ensure!(listed.items.is_empty(), "an aborted write left {:?}", listed.items);
    // An aborted write must not destroy the previous version.
    let v1 = pattern(777, 6);
    h.put("kept", &v1).await?;
    let mut w = h.disk.writer(&h.ctx, &h.path("kept"), &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(50, 7))).await.map_err(|e| format!("write: {e}"))?;
    w.abort().await.map_err(|e| format!("abort: {e}"))?;
    let back = h.get("kept", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == v1, "an aborted overwrite changed the previous version");
    Ok(())
}

pub(crate) async fn drop_leaves_nothing(h: &Harness) -> Result<(), String> {
    let path = h.path("dropped");
    let mut w = h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(1000, 8))).await.map_err(|e| format!("write: {e}"))?;
    drop(w);
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(false), "a dropped, unfinished write is visible");
    Ok(())
}

pub(crate) async fn create_only(h: &Harness) -> Result<(), String> {
    let first = pattern(100, 9);
    let only = WriteOptions { create_only: true, ..Default::default() };
    h.put_with("once", &first, &only).await?;
    match h.put_with("once", &pattern(100, 10), &only).await {
        Err(e) if e.contains("already exists") => {}
        other => return Err(format!("a create-only write over an existing object gave {other:?}")),
    }
    let back = h.get("once", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == first, "a refused create-only write changed the object");
    Ok(())
}

pub(crate) async fn metadata(h: &Harness) -> Result<(), String> {
    let options = WriteOptions {
        content_type: Some("text/csv".into()),
        metadata: vec![("cohort".into(), "VACS".into()), ("file-type".into(), "patient".into())],
        create_only: false,
    };
    let data = b"id,age\n1,42\n";
    h.put_with("m.csv", data, &options).await?;
    let info = h.disk.stat(&h.ctx, &h.path("m.csv")).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(info.content_type.as_deref() == Some("text/csv"), "content type came back as {:?}", info.content_type);
    ensure!(info.metadata == options.metadata, "metadata came back as {:?}", info.metadata);
    ensure!(info.sha256.as_deref() == Some(sha256_hex(data).as_str()), "stat sha256 is {:?}", info.sha256);
    Ok(())
}

pub(crate) async fn streaming_100mib(h: &Harness) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 100;
    let path = h.path("big.bin");
    let mut w = h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    let mut expect = Sha256::new();
    for i in 0..CHUNKS {
        let chunk = pattern(CHUNK, 100 + i as u64);
        expect.update(&chunk);
        w.write(Bytes::from(chunk)).await.map_err(|e| format!("write chunk {i}: {e}"))?;
    }
    let info = w.finish().await.map_err(|e| format!("finish: {e}"))?;
    let expect = hex::encode(expect.finalize());
    ensure!(info.size == (CHUNK * CHUNKS) as u64, "size {}", info.size);
    ensure!(info.sha256.as_deref() == Some(expect.as_str()), "sha256 {:?} != {expect}", info.sha256);
    let mut r = h.disk.reader(&h.ctx, &path, None).await.map_err(|e| format!("open-reader: {e}"))?;
    let mut got = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = r.next_chunk(CHUNK).await.map_err(|e| format!("read: {e}"))? {
        n += chunk.len() as u64;
        got.update(&chunk);
    }
    ensure!(n == info.size, "read back {n} bytes of {}", info.size);
    ensure!(hex::encode(got.finalize()) == expect, "bytes read back differ");
    h.disk.delete(&h.ctx, &path).await.map_err(|e| format!("delete: {e}"))?;
    Ok(())
}
