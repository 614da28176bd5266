//! `stowage ls ADDR`: list objects under a prefix, one path per line.

use std::io::Write;
use std::path::Path;

use stowage_runtime::Address;

use super::{at, open_storage, request};

/// Objects asked for per page.
const PAGE: u32 = 1000;

/// Arguments of `ls`.
#[derive(clap::Args)]
pub struct Args {
    /// NAME: (everything) or NAME:prefix; a bare NAME means NAME:.
    addr: String,
}

/// Runs `ls`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = if args.addr.contains(':') {
        Address::parse(&args.addr)?
    } else {
        Address { name: args.addr.clone(), path: String::new() }
    };
    let storage = open_storage(config).await?;
    let req = request();
    let mut out = std::io::stdout().lock();
    let mut cursor: Option<String> = None;
    loop {
        let page = at(storage.list(&addr, &req, cursor.as_deref(), PAGE).await, &args.addr)?;
        for item in &page.items {
            writeln!(out, "{}", item.path)?;
        }
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break,
        }
    }
    out.flush()?;
    Ok(())
}
