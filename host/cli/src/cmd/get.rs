//! `stowage get ADDR [-o FILE]`: stream an object to stdout or a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use stowage_runtime::MAX_CHUNK;

use super::{address, at, open_storage, request};
use crate::output::Output;
use crate::progress;

/// Arguments of `get`.
#[derive(clap::Args)]
pub struct Args {
    /// What to read: CLASS_OR_DISK:path.
    addr: String,
    /// Write to FILE instead of stdout. A regular FILE is replaced only once the whole object
    /// is read; a device or FIFO is written in place; a symlink is followed.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write every object under ADDR (as a prefix) into the directory given with -o, at its
    /// relative path; files whose sha256 already matches are skipped.
    #[arg(short = 'r', long, requires = "output")]
    recursive: bool,
}

/// Runs `get`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    if let (true, Some(dir)) = (args.recursive, &args.output) {
        let addr = super::prefix_address(&args.addr)?;
        return super::tree::get(&open_storage(config).await?, &addr, dir).await;
    }
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
            let mut out = Output::open(path)?;
            while let Some(chunk) = at(reader.next_chunk(MAX_CHUNK).await, &args.addr)? {
                out.write_all(&chunk)?;
                bar.inc(chunk.len() as u64);
            }
            out.finish()?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}
