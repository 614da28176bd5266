//! `stowage put ADDR FILE`: stream a file (or stdin) into storage.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use stowage_runtime::{MAX_CHUNK, Upload, WriteOptions};

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
    Ok(())
}

/// Streams `input` (read from `file`) into `writer` a chunk at a time, counting on `bar`; on
/// any failure aborts the write (nothing is stored). Returns the writer, ready to finish.
pub(crate) async fn send(
    mut writer: Upload,
    input: &mut dyn Read,
    file: &Path,
    addr: &str,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Upload> {
    let mut buf = BytesMut::with_capacity(MAX_CHUNK);
    loop {
        buf.reserve(MAX_CHUNK);
        buf.resize(MAX_CHUNK, 0);
        let n = match read_full(input, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                anyhow::bail!("reading {}: {e}", file.display());
            }
        };
        if n == 0 {
            return Ok(writer);
        }
        buf.truncate(n);
        if let Err(e) = writer.write(buf.split().freeze()).await {
            let _ = writer.abort().await;
            return at(Err(e), addr);
        }
        bar.inc(n as u64);
    }
}

/// Fills `buf` as far as the input allows; returns the bytes read (0 at end of input).
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
