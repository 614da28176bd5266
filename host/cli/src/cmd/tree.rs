//! `put -r ADDR DIR` and `get -r ADDR DIR`: a directory tree to objects under a prefix and
//! back, with one progress bar. Both are resumable: an object (or a local file) whose sha256
//! already matches is skipped, so a rerun after an interruption sends only what is missing.
//! A file that fails is reported and the rest go on; the command then fails naming how many.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use stowage_runtime::{Address, MAX_CHUNK, Storage, WriteOptions};

use super::{at, request};
use crate::output::Output;
use crate::progress;

/// The prefix objects of the tree live under: `path` as a directory (`a` means `a/`).
fn prefix_of(addr: &Address) -> String {
    match addr.path.as_str() {
        "" => String::new(),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    }
}

/// A file of a tree: its path relative to the tree's root (with `/`), its full path, its size.
type TreeFile = (String, PathBuf, u64);

/// Every regular file under `dir`, sorted, and how many entries were skipped: symlinks and
/// other non-regular files.
fn walk(dir: &Path) -> anyhow::Result<(Vec<TreeFile>, usize)> {
    let mut files = Vec::new();
    let mut skipped = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", d.display()))?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                files.push((rel, path.clone(), entry.metadata()?.len()));
            } else {
                eprintln!("stowage: skipping {} (not a regular file)", path.display());
                skipped += 1;
            }
        }
    }
    files.sort();
    Ok((files, skipped))
}

/// The sha256 of a local file, or `None` if it cannot be read.
fn sha256_of(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// What a tree transfer did.
#[derive(Default)]
struct Tally {
    sent: usize,
    matched: usize,
    failed: usize,
}

impl Tally {
    fn finish(self, verb: &str, skipped: usize) -> anyhow::Result<()> {
        let extra = if skipped > 0 { format!(", {skipped} skipped (not regular files)") } else { String::new() };
        println!("{} {verb}, {} already there (sha256 matched){extra}", self.sent, self.matched);
        anyhow::ensure!(
            self.failed == 0,
            "{} of {} failed (see above)",
            self.failed,
            self.sent + self.matched + self.failed
        );
        Ok(())
    }
}

/// `put -r ADDR DIR`: every file under `dir` to `ADDR/relative/path`.
pub async fn put(storage: &Storage, addr: &Address, dir: &Path, options: &WriteOptions) -> anyhow::Result<()> {
    let (files, skipped) = walk(dir)?;
    let prefix = prefix_of(addr);
    let req = request();
    let bar = progress::bar(Some(files.iter().map(|f| f.2).sum()));
    let mut tally = Tally::default();
    for (rel, path, size) in &files {
        let target = Address { name: addr.name.clone(), path: format!("{prefix}{rel}") };
        let shown = format!("{}:{}", target.name, target.path);
        let Some(local) = sha256_of(path) else {
            eprintln!("stowage: cannot read {}", path.display());
            tally.failed += 1;
            continue;
        };
        if storage.stat(&target, &req).await.is_ok_and(|info| info.sha256.as_deref() == Some(local.as_str())) {
            tally.matched += 1;
            bar.inc(*size);
            continue;
        }
        let result = async {
            let mut input =
                std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
            let writer = at(storage.writer(&target, &req, options).await, &shown)?;
            let writer = super::send::send(writer, &mut input, path, &shown, &bar).await?;
            // The bytes sent are the ones hashed above (the file did not change meanwhile).
            at(writer.finish_verified(Some(&local)).await, &shown)
        };
        match result.await {
            Ok(_) => tally.sent += 1,
            Err(e) => {
                eprintln!("stowage: {e:#}");
                tally.failed += 1;
            }
        }
    }
    bar.finish_and_clear();
    tally.finish("sent", skipped)
}

/// `get -r ADDR DIR`: every object under `ADDR/` to `dir/relative/path`, each replaced
/// atomically and checked against its recorded sha256.
pub async fn get(storage: &Storage, addr: &Address, dir: &Path) -> anyhow::Result<()> {
    let prefix = prefix_of(addr);
    let listed = Address { name: addr.name.clone(), path: prefix.clone() };
    let req = request();
    // A page at a time: memory does not grow with the listing (the bar counts bytes).
    let bar = progress::bar(None);
    let mut tally = Tally::default();
    let mut cursor: Option<String> = None;
    loop {
        let page =
            at(storage.list(&listed, &req, cursor.as_deref(), 1000).await, &format!("{}:{}", addr.name, prefix))?;
        for item in &page.items {
            // A listed path must lie under the prefix and be plain segments: never a way out
            // of DIR, whatever the disk's driver lists.
            let rel = item
                .path
                .strip_prefix(&prefix)
                .filter(|r| !r.is_empty() && Path::new(r).components().all(|c| matches!(c, Component::Normal(_))));
            let Some(rel) = rel else {
                eprintln!(
                    "stowage: skipping listed path {:?}: not a plain path under {}:{}",
                    item.path, addr.name, prefix
                );
                tally.failed += 1;
                continue;
            };
            let local = dir.join(rel);
            let source = Address { name: addr.name.clone(), path: item.path.clone() };
            let shown = format!("{}:{}", source.name, source.path);
            let result = async {
                let recorded = match &item.sha256 {
                    Some(sha) => Some(sha.clone()),
                    None => at(storage.stat(&source, &req).await, &shown)?.sha256,
                };
                if local.is_file() && recorded.is_some() && sha256_of(&local) == recorded {
                    bar.inc(item.size);
                    return Ok(false);
                }
                if let Some(parent) = local.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
                }
                let mut reader = at(storage.reader(&source, &req, None).await, &shown)?;
                let mut out = Output::open(&local)?;
                let mut hasher = Sha256::new();
                while let Some(chunk) = at(reader.next_chunk(MAX_CHUNK).await, &shown)? {
                    hasher.update(&chunk);
                    out.write_all(&chunk)?;
                    bar.inc(chunk.len() as u64);
                }
                let got = hex::encode(hasher.finalize());
                // Not finished (the temp file goes) if the bytes are not the recorded ones.
                anyhow::ensure!(
                    recorded.as_ref().is_none_or(|r| *r == got),
                    "{shown}: the bytes read have sha256 {got}, not the recorded {}",
                    recorded.unwrap_or_default()
                );
                out.finish()?;
                Ok(true)
            };
            match result.await {
                Ok(true) => tally.sent += 1,
                Ok(false) => tally.matched += 1,
                Err(e) => {
                    eprintln!("stowage: {e:#}");
                    tally.failed += 1;
                }
            }
        }
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break,
        }
    }
    bar.finish_and_clear();
    tally.finish("written", 0)
}
