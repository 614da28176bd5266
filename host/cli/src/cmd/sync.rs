//! `stowage sync [--once]` and `stowage sync status [--json]`: the fallback queues, and the
//! mirrors' repairs. `serve` does both by itself; this is for hosts that only run the command
//! line (or a cron job).

use std::path::Path;
use std::time::Duration;

use stowage_runtime::fallback::QueuedOp;

use super::open_storage;

/// How often `stowage sync` (without `--once`) makes a pass.
const EVERY: Duration = Duration::from_secs(5);

/// Arguments of `sync`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// One pass, then exit: 0 when every queue is empty after it, 7 (unavailable) when
    /// something still waits.
    #[arg(long)]
    once: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `sync`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// What waits on each fallback, oldest first: disk, operation, size, age, path.
    Status {
        /// One JSON object per line (disk, fallback, path, op, size, sha256, age_secs).
        #[arg(long)]
        json: bool,
    },
}

/// Something still waits after `sync --once`.
#[derive(Debug, thiserror::Error)]
#[error("{0} queued entries or mirror repairs still wait for their disks")]
pub struct StillWaiting(pub usize);

/// Runs `sync`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let storage = open_storage(config).await?;
    if let Some(Command::Status { json }) = args.command {
        return status(&storage, json).await;
    }
    loop {
        let report = storage.sync_fallbacks().await?;
        let mut waiting = report.waiting;
        if report.busy {
            eprintln!(
                "stowage: another process of this host (serve, or another sync) is syncing the fallback queues; this pass left them"
            );
            waiting = storage.fallback_status().await?.len();
        }
        for (disk, path) in &report.synced {
            println!("synced\t{disk}:{path}");
        }
        for (disk, path, why) in &report.failed {
            eprintln!("stowage: not synced: {disk}:{path}: {why}");
        }
        let mut unrepaired = 0;
        if storage.has_mirrors() {
            let repairs = storage.repair_mirrors().await?;
            for (disk, member, path, done) in &repairs.repaired {
                println!("repaired\t{disk}:{path}\t{member}\t{done}");
            }
            for (disk, member, path, why) in &repairs.failed {
                eprintln!("stowage: not repaired: {disk}:{path} on {member}: {why}");
            }
            unrepaired = repairs.failed.len();
        }
        if args.once {
            return match waiting + unrepaired {
                0 => Ok(()),
                n => Err(StillWaiting(n).into()),
            };
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn status(storage: &stowage_runtime::Storage, json: bool) -> anyhow::Result<()> {
    let waiting = storage.fallback_status().await?;
    for w in &waiting {
        let op = match w.queued.op {
            QueuedOp::Put => "put",
            QueuedOp::Delete => "delete",
        };
        let age = w.age.map(|a| a.as_secs());
        if json {
            let line = serde_json::json!({
                "disk": w.disk, "fallback": w.fallback, "path": w.path, "op": op,
                "size": w.queued.size, "sha256": w.queued.sha256, "age_secs": age,
            });
            println!("{line}");
        } else {
            let age = age.map_or_else(|| "-".to_string(), |s| format!("{s}s"));
            println!("{}\t{op}\t{}\t{age}\t{}", w.disk, w.queued.size, w.path);
        }
    }
    if !json && waiting.is_empty() {
        eprintln!("stowage: nothing waits to be synced");
    }
    Ok(())
}
