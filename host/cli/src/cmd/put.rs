//! `stowage put ADDR FILE`: stream a file (or stdin) into storage.

use std::io::Read;
use std::path::{Path, PathBuf};

use stowage_runtime::WriteOptions;

use super::send::send;
use super::{address, at, key_value, open_storage, request};
use crate::progress;

/// Arguments of `put`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to store it: CLASS_OR_DISK:path, e.g. scratch:audit_123/data.csv.
    addr: String,
    /// The file to store; `-` reads stdin. With `-r`, a directory: every file under it is
    /// stored under ADDR (as a prefix) at its relative path.
    file: PathBuf,
    /// Store a directory tree; files whose sha256 already matches are skipped (a rerun sends
    /// only what is missing).
    #[arg(short = 'r', long)]
    recursive: bool,
    /// User metadata to store with the object (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = key_value)]
    meta: Vec<(String, String)>,
    /// The object's MIME type.
    #[arg(long)]
    content_type: Option<String>,
}

/// Runs `put`: prints the stored object's path, size and sha256.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    if args.recursive {
        let addr = super::prefix_address(&args.addr)?;
        let storage = open_storage(config).await?;
        let options = WriteOptions { content_type: args.content_type, metadata: args.meta, create_only: false };
        return super::tree::put(&storage, &addr, &args.file, &options).await;
    }
    let addr = address(&args.addr)?;
    let (mut input, total): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file =
            std::fs::File::open(&args.file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let storage = open_storage(config).await?;
    let options = WriteOptions { content_type: args.content_type, metadata: args.meta, create_only: false };
    let writer = at(storage.writer(&addr, &request(), &options).await, &args.addr)?;
    let bar = progress::bar(total);
    let writer = send(writer, &mut input, &args.file, &args.addr, &bar).await?;
    bar.finish_and_clear();
    let info = at(writer.finish().await, &args.addr)?;
    println!("{}:{}\t{} bytes\tsha256 {}", addr.name, info.path, info.size, info.sha256.as_deref().unwrap_or("-"));
    if let Some(fallback) = &info.fallback {
        eprintln!(
            "stowage: `{}` is unavailable: stored on its fallback disk `{fallback}`, queued for sync (`stowage sync status`)",
            addr.name
        );
    }
    Ok(())
}
