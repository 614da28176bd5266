//! `stowage ledger verify|overdue|show` and `stowage cleanup`.

use std::path::Path;

use stowage_runtime::ledger::{Entry, Ledger, TrackingRecord, now};
use stowage_runtime::{Address, LoadedConfig, StorageError};

use super::{open_storage, request};

/// Ledger subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Walk the hash chain; on any edited, deleted, reordered or truncated record print the
    /// first bad index and exit non-zero.
    Verify,
    /// Temporary files past their cleanup deadline and not deleted.
    Overdue,
    /// Show records (all, or those for one path).
    Show {
        /// Only records for this object path.
        #[arg(long)]
        path: Option<String>,
    },
}

/// The ledger is broken (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerBroken(pub String);

fn open(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let loaded = LoadedConfig::load(config)?;
    Ok(Ledger::open(&loaded.ledger_path())?)
}

fn line(e: &Entry) -> String {
    let r = &e.record;
    let at = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_ms));
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut s = format!(
        "#{} {at} {} {}:{} actor={} cohort={} size={} sha256={}",
        e.index,
        r.action,
        r.disk,
        r.path,
        opt(&r.actor),
        opt(&r.cohort),
        r.size.map_or_else(|| "-".into(), |s| s.to_string()),
        opt(&r.sha256)
    );
    if r.cleanup_required {
        s += &format!(" cleanup_within={}s", r.cleanup_within_secs.unwrap_or(0));
    }
    if let Some(err) = &r.error {
        s += &format!(" error={err:?}");
    }
    s
}

/// Runs a ledger subcommand.
pub async fn run(config: Option<&Path>, command: Command) -> anyhow::Result<()> {
    let ledger = open(config)?;
    match command {
        Command::Verify => match ledger.verify()? {
            Ok(n) => {
                println!("ledger OK: {n} records, chain intact");
                Ok(())
            }
            Err(broken) => Err(LedgerBroken(broken.to_string()).into()),
        },
        Command::Overdue => {
            for (e, deadline) in ledger.overdue(now())? {
                let due = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline));
                println!("{}:{}\tdue {due}\t(record #{})", e.record.disk, e.record.path, e.index);
            }
            Ok(())
        }
        Command::Show { path } => {
            for e in ledger.entries()? {
                if path.as_ref().is_none_or(|p| *p == e.record.path) {
                    println!("{}", line(&e));
                }
            }
            Ok(())
        }
    }
}

/// Deletes every overdue temporary file through the pipeline, so each deletion is recorded.
pub async fn cleanup(config: Option<&Path>) -> anyhow::Result<()> {
    let storage = open_storage(config).await?;
    let mut req = request();
    req.actor = Some(req.actor.unwrap_or_else(|| "stowage-cleanup".into()));
    let overdue = storage.ledger().overdue(now())?;
    let mut failed = 0;
    for (e, _) in &overdue {
        // Through its class when the class still maps to that disk (so it is recorded as a
        // temporary copy's deletion), else through the disk's name.
        let name = match &e.record.class {
            Some(class) if storage.class_disk(class) == Some(e.record.disk.as_str()) => class.clone(),
            _ => e.record.disk.clone(),
        };
        let addr = Address { name, path: e.record.path.clone() };
        match storage.delete(&addr, &req).await {
            Ok(()) => println!("deleted {}:{}", addr.name, addr.path),
            Err(StorageError::NotFound(_)) => {
                // Already gone (deleted outside Stowage): record that it was checked.
                storage.ledger().append_async(&TrackingRecord {
                    action: "cleaned_up".into(),
                    error: None,
                    cleanup_required: false,
                    cleanup_within_secs: None,
                    request_id: req.request_id.clone(),
                    actor: req.actor.clone(),
                    ..e.record.clone()
                })
                .await?;
                println!("already gone {}:{}", addr.name, addr.path);
            }
            Err(err) => {
                failed += 1;
                eprintln!("stowage: could not delete {}:{}: {err}", addr.name, addr.path);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} overdue files could not be deleted", overdue.len());
    }
    Ok(())
}
