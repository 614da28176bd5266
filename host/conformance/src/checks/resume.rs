//! Suspended writes (`wit/resumable.wit`, contract 0.3.1): a write suspended, its instance
//! thrown away as a crash would, and continued from a token by another instance holds exactly
//! the bytes up to that token and those written after the resume. Run only on drivers whose
//! `suspend` does not answer `unsupported` (`lib.rs` probes it).

use bytes::Bytes;
use stowage_runtime::{ObjectPath, ObjectWriter, StorageError, Suspended, WriteOptions};

use crate::ensure;
use crate::harness::{Harness, pattern, sha256_hex};

/// Bytes past one S3 part at 5 MiB (the smallest part size, what `plugin test` runs with), so
/// a suspend holds stored parts and a tail.
const PAST_A_PART: usize = (6 << 20) + 5;

fn owner(h: &Harness, name: &str) -> String {
    h.owner_tag(name)
}

async fn open(h: &Harness, name: &str) -> Result<(ObjectPath, ObjectWriter), String> {
    h.resumable_writer(name).await
}

async fn write(w: &mut ObjectWriter, data: &[u8]) -> Result<(), String> {
    for piece in data.chunks(1 << 20) {
        w.write(Bytes::copy_from_slice(piece)).await.map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

async fn suspend(w: &mut ObjectWriter) -> Result<Suspended, String> {
    w.suspend().await.map_err(|e| format!("suspend: {e}"))
}

async fn resume(h: &Harness, name: &str, at: &Suspended) -> Result<ObjectWriter, StorageError> {
    h.disk
        .resume_writer(
            &h.ctx,
            &h.object(name).map_err(StorageError::Io)?,
            &WriteOptions::default(),
            &owner(h, name),
            at,
        )
        .await
}

/// The object at `name` holds exactly `want`, as the read and the commit's digest say.
async fn holds(h: &Harness, name: &str, w: ObjectWriter, want: &[u8]) -> Result<(), String> {
    let info = w.finish().await.map_err(|e| format!("finish after resume: {e}"))?;
    ensure!(info.size == want.len() as u64, "the resumed write committed {} bytes, not {}", info.size, want.len());
    ensure!(info.sha256.as_deref() == Some(sha256_hex(want).as_str()), "the resumed write's sha256 is not the bytes'");
    let back = h.get(name, None).await.map_err(|e| format!("get: {e}"))?;
    ensure!(back.len() == want.len(), "read back {} bytes, not {}", back.len(), want.len());
    ensure!(
        back == want,
        "the resumed object's bytes differ from those written before the suspend and after the resume"
    );
    Ok(())
}

/// Suspended twice, crashed with bytes after the last suspend, resumed by another instance:
/// nothing is visible until the end, and the object is what came before the last suspend and
/// after the resume.
pub(crate) async fn continues_elsewhere(h: &Harness) -> Result<(), String> {
    let (path, mut w) = open(h, "resumed.bin").await?;
    let (a, b, lost, d) = (pattern(70_001, 41), pattern(PAST_A_PART, 42), pattern(1_000, 43), pattern(12_345, 44));
    write(&mut w, &a).await?;
    let first = suspend(&mut w).await?;
    ensure!(first.digest.size == a.len() as u64, "the first suspend counted {} bytes", first.digest.size);
    write(&mut w, &b).await?;
    let second = suspend(&mut w).await?;
    write(&mut w, &lost).await?;
    w.crash();
    match h.disk.stat(&h.ctx, &path).await {
        Err(StorageError::NotFound(_)) => {}
        other => return Err(format!("a suspended write is visible to stat: {other:?}")),
    }
    let mut w = resume(h, "resumed.bin", &second).await.map_err(|e| format!("resume: {e}"))?;
    ensure!(w.written() == (a.len() + b.len()) as u64, "the resumed writer counts {} bytes", w.written());
    write(&mut w, &d).await?;
    holds(h, "resumed.bin", w, &[a, b, d].concat()).await
}

/// Resumed from an older token than the last: bytes after it are gone, even those a later
/// suspend made durable (on S3: a part stored after the token is left out).
pub(crate) async fn older_token_drops_later_bytes(h: &Harness) -> Result<(), String> {
    let (_, mut w) = open(h, "older.bin").await?;
    let (a, b, c) = (pattern(PAST_A_PART, 51), pattern(PAST_A_PART, 52), pattern(9_999, 53));
    write(&mut w, &a).await?;
    let first = suspend(&mut w).await?;
    write(&mut w, &b).await?;
    suspend(&mut w).await?;
    w.crash();
    let mut w = resume(h, "older.bin", &first).await.map_err(|e| format!("resume from the first token: {e}"))?;
    write(&mut w, &c).await?;
    holds(h, "older.bin", w, &[a, c].concat()).await
}

/// A token resumes only its own write: another path is refused, and the write still resumes.
pub(crate) async fn token_is_for_its_write(h: &Harness) -> Result<(), String> {
    let (_, mut w) = open(h, "mine.bin").await?;
    let a = pattern(33_333, 61);
    write(&mut w, &a).await?;
    let at = suspend(&mut w).await?;
    w.crash();
    let other = h.object("other.bin")?;
    let stolen = h.disk.resume_writer(&h.ctx, &other, &WriteOptions::default(), &owner(h, "other.bin"), &at).await;
    ensure!(stolen.is_err(), "a token resumed a write of another path (and owner)");
    drop(stolen);
    let mut forged = at.clone();
    forged.token.push('x');
    let mangled = resume(h, "mine.bin", &forged).await;
    ensure!(mangled.is_err(), "a mangled token was taken");
    drop(mangled);
    let w = resume(h, "mine.bin", &at).await.map_err(|e| format!("resume after the refusals: {e}"))?;
    holds(h, "mine.bin", w, &a).await
}

/// A discarded suspended write is gone: it cannot be resumed or discarded again, and nothing
/// is visible.
pub(crate) async fn discard_removes(h: &Harness) -> Result<(), String> {
    let (path, mut w) = open(h, "discarded.bin").await?;
    write(&mut w, &pattern(PAST_A_PART, 71)).await?;
    let at = suspend(&mut w).await?;
    w.crash();
    h.disk.discard_suspended(&h.ctx, &at.token).await.map_err(|e| format!("discard: {e}"))?;
    match resume(h, "discarded.bin", &at).await {
        Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(format!("resuming a discarded write answered {e}, not not-found")),
        Ok(_) => return Err("a discarded write was resumed".into()),
    }
    // Discarding what is gone is no error (some S3 servers accept a second abort).
    match h.disk.discard_suspended(&h.ctx, &at.token).await {
        Ok(()) | Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(format!("discarding twice answered {e}, not success or not-found")),
    }
    match h.disk.stat(&h.ctx, &path).await {
        Err(StorageError::NotFound(_)) => Ok(()),
        other => Err(format!("a discarded write is visible to stat: {other:?}")),
    }
}
