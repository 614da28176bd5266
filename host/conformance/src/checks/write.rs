//! Writes: round trips, overwrite, atomic visibility, abort, drop, crash, create-only,
//! metadata, streaming. What the driver *stored* is checked with `stat` and reads: `finish`'s
//! answer carries the host's own size and digest.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use stowage_runtime::{StorageError, WriteOptions};

use crate::ensure;
use crate::harness::{Harness, pattern, sha256_hex};

/// What the driver stored at `name`, as `stat` says: the size, and the sha256 when the
/// driver keeps metadata.
async fn stored(h: &Harness, name: &str, data_len: u64, sha256: &str) -> Result<(), String> {
    let info = h.disk.stat(&h.ctx, &h.object(name)?).await.map_err(|e| format!("stat {name}: {e}"))?;
    ensure!(info.size == data_len, "the driver stored {} bytes for the {data_len} written", info.size);
    if h.caps.user_metadata {
        ensure!(info.sha256.as_deref() == Some(sha256), "the driver stored sha256 {:?}, not {sha256}", info.sha256);
    }
    Ok(())
}

pub(crate) async fn roundtrip(h: &Harness) -> Result<(), String> {
    let data = pattern(300_000, 1);
    let info = h.put("obj.bin", &data).await?;
    ensure!(info.path == h.path("obj.bin"), "finish reported path {:?}", info.path);
    stored(h, "obj.bin", data.len() as u64, &sha256_hex(&data)).await?;
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
    let stat = h.disk.stat(&h.ctx, &h.object("o")?).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(stat.size == 1234, "stat after overwrite says {} bytes", stat.size);
    Ok(())
}

pub(crate) async fn invisible_until_finish(h: &Harness) -> Result<(), String> {
    let path = h.object("pending")?;
    let mut w =
        h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(10_000, 4))).await.map_err(|e| format!("write: {e}"))?;
    match h.disk.stat(&h.ctx, &path).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("an unfinished write is visible to stat: {other:?}")),
    }
    let listed = h.disk.list(&h.ctx, &h.listing("")?, None, 100).await.map_err(|e| format!("list: {e}"))?;
    ensure!(listed.items.is_empty(), "an unfinished write shows in list: {:?}", listed.items);
    w.finish().await.map_err(|e| format!("finish: {e}"))?;
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(true), "a finished write is not visible");
    Ok(())
}

pub(crate) async fn abort_leaves_nothing(h: &Harness) -> Result<(), String> {
    let path = h.object("aborted")?;
    let mut w =
        h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(100_000, 5))).await.map_err(|e| format!("write: {e}"))?;
    w.abort().await.map_err(|e| format!("abort: {e}"))?;
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(false), "an aborted write is visible");
    let listed = h.disk.list(&h.ctx, &h.listing("")?, None, 100).await.map_err(|e| format!("list: {e}"))?;
    ensure!(listed.items.is_empty(), "an aborted write left {:?}", listed.items);
    // An aborted write must not destroy the previous version.
    let v1 = pattern(777, 6);
    h.put("kept", &v1).await?;
    let mut w = h
        .disk
        .writer(&h.ctx, &h.object("kept")?, &WriteOptions::default())
        .await
        .map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(50, 7))).await.map_err(|e| format!("write: {e}"))?;
    w.abort().await.map_err(|e| format!("abort: {e}"))?;
    let back = h.get("kept", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == v1, "an aborted overwrite changed the previous version");
    Ok(())
}

pub(crate) async fn drop_leaves_nothing(h: &Harness) -> Result<(), String> {
    let v1 = pattern(2000, 11);
    h.put("dropped-over", &v1).await?;
    for name in ["dropped", "dropped-over"] {
        let mut w = h
            .disk
            .writer(&h.ctx, &h.object(name)?, &WriteOptions::default())
            .await
            .map_err(|e| format!("open-writer: {e}"))?;
        w.write(Bytes::from(pattern(1000, 8))).await.map_err(|e| format!("write: {e}"))?;
        drop(w);
    }
    // The host aborts a dropped writer in the background: wait for that, then look.
    ensure!(
        h.disk.settled(std::time::Duration::from_secs(30)).await,
        "the abort of a dropped writer did not end within 30 s"
    );
    ensure!(
        h.disk.exists(&h.ctx, &h.object("dropped")?).await == Ok(false),
        "a dropped, unfinished write is visible once its abort ran"
    );
    let back = h.get("dropped-over", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == v1, "a dropped overwrite changed the previous version ({} bytes now)", back.len());
    let listed = h.disk.list(&h.ctx, &h.listing("")?, None, 100).await.map_err(|e| format!("list: {e}"))?;
    let paths: Vec<String> = listed.items.into_iter().map(|i| i.path).collect();
    ensure!(paths == vec![h.path("dropped-over")], "after dropped writes the directory holds {paths:?}");
    Ok(())
}

pub(crate) async fn crashed_write_is_findable(h: &Harness) -> Result<(), String> {
    let path = h.object("crashed")?;
    let mut w =
        h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    w.write(Bytes::from(pattern(300_000, 12))).await.map_err(|e| format!("write: {e}"))?;
    let owner = w.owner().to_string();
    // The instance dies mid-write: no abort reaches the driver.
    w.crash();
    ensure!(h.disk.exists(&h.ctx, &path).await == Ok(false), "a crashed write is visible");
    let mine: Vec<_> = all_temps(h).await?.into_iter().filter(|t| t.owner.as_deref() == Some(owner.as_str())).collect();
    for temp in &mine {
        h.disk.remove_temp(&h.ctx, &temp.id).await.map_err(|e| format!("remove-temp {}: {e}", temp.id))?;
    }
    let left: Vec<_> = all_temps(h).await?.into_iter().filter(|t| t.owner.as_deref() == Some(owner.as_str())).collect();
    ensure!(left.is_empty(), "remove-temp left {left:?}");
    match h.disk.remove_temp(&h.ctx, "no-such-temp-object").await {
        Err(StorageError::NotFound(_) | StorageError::InvalidPath(_)) => Ok(()),
        other => Err(format!("remove-temp of an id it never gave answered {other:?}, not not-found")),
    }
}

/// Every temp object the driver lists, page by page.
async fn all_temps(h: &Harness) -> Result<Vec<stowage_runtime::TempObject>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let page = h.disk.list_temps(&h.ctx, cursor.as_deref(), 1000).await.map_err(|e| format!("list-temps: {e}"))?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
    Err("list-temps never gave a last page".into())
}

pub(crate) async fn create_only(h: &Harness) -> Result<(), String> {
    let first = pattern(100, 9);
    let only = WriteOptions { create_only: true, ..Default::default() };
    h.put_with("once", &first, &only).await?;
    match h.disk.put_bytes(&h.ctx, &h.object("once")?, Bytes::from(pattern(100, 10)), &only).await {
        Err(StorageError::AlreadyExists(_)) => {}
        other => return Err(format!("a create-only write over an existing object gave {other:?}, not already-exists")),
    }
    let back = h.get("once", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == first, "a refused create-only write changed the object");
    // Two create-only writes racing for one path: both open before either finishes; exactly
    // one wins and the other is told `already-exists`.
    let path = h.object("race")?;
    let (a, b) = (pattern(3000, 13), pattern(3000, 14));
    let mut wa = h.disk.writer(&h.ctx, &path, &only).await.map_err(|e| format!("open-writer a: {e}"))?;
    let mut wb = h.disk.writer(&h.ctx, &path, &only).await.map_err(|e| format!("open-writer b: {e}"))?;
    wa.write(Bytes::from(a.clone())).await.map_err(|e| format!("write a: {e}"))?;
    wb.write(Bytes::from(b.clone())).await.map_err(|e| format!("write b: {e}"))?;
    let (ra, rb) = futures::join!(wa.finish(), wb.finish());
    let winner = match (&ra, &rb) {
        (Ok(_), Err(StorageError::AlreadyExists(_))) => &a,
        (Err(StorageError::AlreadyExists(_)), Ok(_)) => &b,
        _ => {
            return Err(format!(
                "two racing create-only writes gave {:?} and {:?}: exactly one must win",
                ra.map(|i| i.size),
                rb.map(|i| i.size)
            ));
        }
    };
    let back = h.get("race", None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back == *winner, "the object is not the winner's bytes");
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
    let info = h.disk.stat(&h.ctx, &h.object("m.csv")?).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(info.content_type.as_deref() == Some("text/csv"), "content type came back as {:?}", info.content_type);
    ensure!(info.metadata == options.metadata, "metadata came back as {:?}", info.metadata);
    ensure!(info.sha256.as_deref() == Some(sha256_hex(data).as_str()), "stat sha256 is {:?}", info.sha256);
    Ok(())
}

pub(crate) async fn streaming_100mib(h: &Harness) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 100;
    let path = h.object("big.bin")?;
    let mut w =
        h.disk.writer(&h.ctx, &path, &WriteOptions::default()).await.map_err(|e| format!("open-writer: {e}"))?;
    let mut expect = Sha256::new();
    for i in 0..CHUNKS {
        let chunk = pattern(CHUNK, 100 + i as u64);
        expect.update(&chunk);
        w.write(Bytes::from(chunk)).await.map_err(|e| format!("write chunk {i}: {e}"))?;
    }
    let info = w.finish().await.map_err(|e| format!("finish: {e}"))?;
    let expect = hex::encode(expect.finalize());
    ensure!(info.size == (CHUNK * CHUNKS) as u64, "size {}", info.size);
    // What was stored: the size; a digest, if the driver keeps one for an object this big
    // (S3 cannot yet for a multipart upload), must be the right one.
    let kept = h.disk.stat(&h.ctx, &path).await.map_err(|e| format!("stat: {e}"))?;
    ensure!(kept.size == info.size, "the driver stored {} bytes for the {} written", kept.size, info.size);
    ensure!(
        kept.sha256.as_ref().is_none_or(|s| *s == expect),
        "the driver stored sha256 {:?}, not {expect}",
        kept.sha256
    );
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
