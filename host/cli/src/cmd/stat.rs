//! `stowage stat ADDR [--json]`: an object's size, sha256, content type and metadata.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use stowage_runtime::ObjectInfo;

use super::{address, at, open_storage, request};

/// Arguments of `stat`.
#[derive(clap::Args)]
pub struct Args {
    /// What to describe: CLASS_OR_DISK:path.
    addr: String,
    /// Print one JSON object (path, size, sha256, content_type, modified (RFC 3339),
    /// modified_ms (as the HTTP API says it), etag, metadata, fallback: the fallback disk
    /// holding it while it waits to be synced, or null).
    #[arg(long)]
    json: bool,
}

/// Runs `stat`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = address(&args.addr)?;
    let storage = open_storage(config).await?;
    let info = at(storage.stat(&addr, &request()).await, &args.addr)?;
    if args.json {
        println!("{}", to_json(&info));
    } else {
        print!("{}", to_text(&info));
    }
    Ok(())
}

/// The object's info as `stat --json` and `ls --json` print it.
pub(crate) fn to_json(info: &ObjectInfo) -> serde_json::Value {
    let metadata: serde_json::Map<String, serde_json::Value> =
        info.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::json!({
        "path": info.path,
        "size": info.size,
        "sha256": info.sha256,
        "content_type": info.content_type,
        "modified": info.modified.map(rfc3339),
        "modified_ms": info.modified,
        "etag": info.etag,
        "metadata": metadata,
        "fallback": info.fallback,
    })
}

fn to_text(info: &ObjectInfo) -> String {
    let mut s = format!("path: {}\nsize: {}\n", info.path, info.size);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    s += &format!("sha256: {}\n", opt(&info.sha256));
    s += &format!("content-type: {}\n", opt(&info.content_type));
    s += &format!("modified: {}\n", info.modified.map(rfc3339).unwrap_or_else(|| "-".into()));
    for (k, v) in &info.metadata {
        s += &format!("meta {k}: {v}\n");
    }
    if let Some(fallback) = &info.fallback {
        s += &format!("fallback: {fallback} (waiting to be synced to its disk)\n");
    }
    s
}

/// Milliseconds since the epoch as RFC 3339 (clamped to year 9999, the format's limit).
pub(crate) fn rfc3339(ms: u64) -> String {
    const MAX_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(MAX_MS))).to_string()
}
