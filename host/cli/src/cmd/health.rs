//! `stowage health [--json]`: a storage health check from the command line. Every
//! disk does a real round trip (write, read back, delete a small probe object, as `/readyz`
//! does), and the PHI ledger reports whether it can record (the check itself is recorded, as
//! `health_checked`, durably), whether it verifies (from its last checkpoint) and what its
//! last checkpoint covers. Exits non-zero if anything failed.

use std::path::Path;

use stowage_runtime::ledger::VerifyMode;

use super::open_storage;

/// Arguments of `health`.
#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `health`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let storage = open_storage(config).await?;
    let mut failed = Vec::new();
    let mut disks = serde_json::Map::new();
    for (disk, result) in storage.probe().await {
        let entry = match result {
            Ok(took) => serde_json::json!({ "ok": true, "ms": (took.as_secs_f64() * 1e4).round() / 10.0 }),
            Err(e) => {
                failed.push(format!("disk {disk}: {}", e.kind()));
                serde_json::json!({ "ok": false, "error": e.kind(), "message": e.to_string() })
            }
        };
        disks.insert(disk, entry);
    }
    let ledger = storage.ledger();
    let checkpoint =
        ledger.latest_checkpoint().map(|c| serde_json::json!({ "size": c.checkpoint.size, "time": c.checkpoint.time }));
    let verified = match ledger.verify(VerifyMode::Incremental) {
        Ok(Ok(v)) => Ok(v.count),
        Ok(Err(broken)) => Err(broken.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Whether it can record now: a durable `health_checked` record (the last commit's health
    // alone says nothing in a process that has not committed yet).
    let req = super::request();
    let probe = stowage_runtime::ledger::Record {
        action: "health_checked".into(),
        actor: req.actor.clone(),
        key: req.authenticated_as.clone(),
        request_id: req.request_id.clone(),
        metadata: failed.iter().map(|f| ("failed".to_string(), f.clone())).collect(),
        ..Default::default()
    };
    let recording = match ledger.append(&probe).await {
        Ok(_) => ledger.health(),
        Err(e) => Err(e.to_string()),
    };
    let ledger_json = match (&verified, &recording) {
        (Ok(count), Ok(())) => serde_json::json!({ "ok": true, "records": count, "last_checkpoint": checkpoint }),
        _ => {
            let message = [verified.as_ref().err(), recording.as_ref().err()]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            failed.push("ledger: audit-unavailable".into());
            serde_json::json!({ "ok": false, "error": "audit-unavailable", "message": message, "last_checkpoint": checkpoint })
        }
    };
    let ok = failed.is_empty();
    if args.json {
        println!("{}", serde_json::json!({ "ok": ok, "disks": disks, "ledger": ledger_json }));
    } else {
        for (disk, entry) in &disks {
            match entry["ok"].as_bool() {
                Some(true) => println!("disk {disk:<16} ok      {} ms", entry["ms"]),
                _ => println!("disk {disk:<16} FAILED  {}: {}", text(&entry["error"]), text(&entry["message"])),
            }
        }
        let at = |c: &serde_json::Value| match c.is_null() {
            true => "no checkpoint yet".to_string(),
            false => format!("last checkpoint covers {} records (unix time {})", c["size"], c["time"]),
        };
        match ledger_json["ok"].as_bool() {
            Some(true) => println!(
                "ledger {:<15} ok      {} records verify; {}",
                "",
                ledger_json["records"],
                at(&ledger_json["last_checkpoint"])
            ),
            _ => println!("ledger {:<15} FAILED  {}", "", text(&ledger_json["message"])),
        }
    }
    anyhow::ensure!(ok, "health check failed: {}", failed.join(", "));
    Ok(())
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
