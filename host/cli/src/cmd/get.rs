//! `stowage get ADDR [-o FILE]`: stream an object to stdout or a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use stowage_runtime::MAX_CHUNK;

use super::{address, at, open_storage, request};
use crate::progress;

/// Arguments of `get`.
#[derive(clap::Args)]
pub struct Args {
    /// What to read: CLASS_OR_DISK:path.
    addr: String,
    /// Write to FILE instead of stdout. FILE appears only once the whole object is read.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `get`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = address(&args.addr)?;
    let storage = open_storage(config).await?;
    let mut reader = at(storage.reader(&addr, &request(), None).await, &args.addr)?;
    let bar = progress::bar(Some(reader.remaining()));
    match &args.output {
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = at(reader.next_chunk(MAX_CHUNK).await, &args.addr)? {
                out.write_all(&chunk)?;
                bar.inc(chunk.len() as u64);
            }
            out.flush()?;
        }
        Some(path) => {
            // A temp file beside the target, renamed into place at the end: a failed read never
            // leaves a truncated FILE or clobbers an existing one.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create a file in {}: {e}", dir.display()))?;
            while let Some(chunk) = at(reader.next_chunk(MAX_CHUNK).await, &args.addr)? {
                tmp.write_all(&chunk)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                bar.inc(chunk.len() as u64);
            }
            tmp.persist(path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}
