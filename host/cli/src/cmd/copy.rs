//! `stowage cp SRC DST` and `stowage mv SRC DST`: between any two addresses, streamed and
//! verified end to end by the runtime (`Storage::copy`); `mv` deletes the source only after
//! the copy verified. Both sides go through their policies, so both are recorded.

use std::path::Path;

use super::{address, at, open_storage, request};
use crate::progress;

/// Arguments of `cp` and `mv`.
#[derive(clap::Args)]
pub struct Args {
    /// The object to copy: NAME:path.
    src: String,
    /// Where the copy goes: NAME:path (replaced if it exists).
    dst: String,
}

/// Runs `cp` (or, with `remove_source`, `mv`); prints the destination like `put` does.
pub async fn run(config: Option<&Path>, args: Args, remove_source: bool) -> anyhow::Result<()> {
    let (from, to) = (address(&args.src)?, address(&args.dst)?);
    let storage = open_storage(config).await?;
    let req = request();
    // The bar is made on the first chunk, when the copy knows the object's size (no stat
    // of its own: that would be one more recorded access).
    let mut bar = None;
    let copied =
        storage.copy(&from, &to, &req, |n, size| bar.get_or_insert_with(|| progress::bar(Some(size))).inc(n)).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let info = at(copied, &format!("{} -> {}", args.src, args.dst))?;
    if remove_source {
        at(storage.delete(&from, &req).await, &args.src)?;
    }
    println!("{}:{}\t{} bytes\tsha256 {}", to.name, info.path, info.size, info.sha256.as_deref().unwrap_or("-"));
    Ok(())
}
