//! `stowage rm ADDR`: remove an object.

use std::path::Path;

use super::{address, at, open_storage, request};

/// Arguments of `rm`.
#[derive(clap::Args)]
pub struct Args {
    /// What to remove: CLASS_OR_DISK:path.
    addr: String,
}

/// Runs `rm`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = address(&args.addr)?;
    let storage = open_storage(config).await?;
    at(storage.delete(&addr, &request()).await, &args.addr)
}
