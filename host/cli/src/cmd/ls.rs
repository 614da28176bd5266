//! `stowage ls ADDR [-l | --json]`: list objects under a prefix, one per line: the path, or
//! with `-l` size, modified time, sha256 and path, or with `--json` one JSON object per line
//! (the fields of `stat --json`). Streamed a page at a time: memory does not grow with the
//! listing.

use std::io::Write;
use std::path::Path;

use super::{at, open_storage, request};

/// Objects asked for per page.
const PAGE: u32 = 1000;

/// Arguments of `ls`.
#[derive(clap::Args)]
pub struct Args {
    /// NAME: (everything) or NAME:prefix; a bare NAME means NAME:.
    addr: String,
    /// Long form: size in bytes, modified time (RFC 3339), sha256 (`-` if the disk does not
    /// know it) and path, separated by two spaces.
    #[arg(short = 'l', conflicts_with = "json")]
    long: bool,
    /// One JSON object per line, with the fields of `stat --json`.
    #[arg(long)]
    json: bool,
}

/// Runs `ls`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = super::prefix_address(&args.addr)?;
    let storage = open_storage(config).await?;
    let req = request();
    let mut out = std::io::stdout().lock();
    let mut cursor: Option<String> = None;
    loop {
        let page = at(storage.list(&addr, &req, cursor.as_deref(), PAGE).await, &args.addr)?;
        for item in &page.items {
            if args.json {
                writeln!(out, "{}", super::stat::to_json(item))?;
            } else if args.long {
                let modified = item.modified.map_or_else(|| "-".to_string(), super::stat::rfc3339);
                writeln!(
                    out,
                    "{:>12}  {modified:<24}  {:<64}  {}",
                    item.size,
                    item.sha256.as_deref().unwrap_or("-"),
                    item.path
                )?;
            } else {
                writeln!(out, "{}", item.path)?;
            }
        }
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => break,
        }
    }
    out.flush()?;
    Ok(())
}
