//! `stowage fsck NAME:[prefix] [--json] [--repair]`: reads every object of a disk (or a storage
//! class's disk) under a prefix, recomputes its sha256 and compares it with the digests the
//! driver and the ledger recorded (`stowage_runtime::fixity`); on a mirrored disk, every
//! mirror's copy. Prints each problem and a summary (or one JSON report), and exits 11 if any
//! object is corrupted, missing, unrecorded or unreadable, or a mirror's copy is bad (and
//! `--repair` did not restore it); the run is recorded in the ledger (`fixity_checked`)
//! either way.

use std::path::Path;

use stowage_runtime::{FixityReport, FsckOptions, Problem, ProblemKind};

use super::{at, open_storage, request};

/// Arguments of `fsck`.
#[derive(clap::Args)]
pub struct Args {
    /// NAME: (the whole disk) or NAME:prefix, NAME a disk or a storage class; a bare NAME
    /// means NAME:.
    addr: String,
    /// Print one JSON object: the counts, every problem (kind, path, the sha256 read and the
    /// ones recorded) and the ledger index of the run's record.
    #[arg(long)]
    json: bool,
    /// Read at most this many MiB per second (to leave the disk to its users).
    #[arg(long, value_name = "MIB")]
    max_mib_per_sec: Option<u64>,
    /// On a mirrored disk: restore every bad copy (damaged, missing or behind) from a good
    /// one, recorded as `mirror_repaired`. Exits 0 if everything found was repaired.
    #[arg(long)]
    repair: bool,
}

/// The check ran and found problems (exit code 11).
#[derive(Debug, thiserror::Error)]
#[error("fsck of `{addr}` found {summary}")]
pub struct ProblemsFound {
    addr: String,
    summary: String,
}

/// Runs `fsck`.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let addr = super::prefix_address(&args.addr)?;
    let storage = open_storage(config).await?;
    let mut req = request();
    req.actor = Some(req.actor.unwrap_or_else(|| "stowage-fsck".into()));
    let options =
        FsckOptions { max_bytes_per_sec: args.max_mib_per_sec.map(|m| m.saturating_mul(1 << 20)), repair: args.repair };
    let report = at(storage.fsck(&addr, &req, &options).await, &args.addr)?;
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print_text(&report);
    }
    if report.is_clean() {
        return Ok(());
    }
    Err(ProblemsFound { addr: args.addr, summary: counts(&report) }.into())
}

/// "1 corrupted, 2 missing" (the kinds found).
fn counts(report: &FixityReport) -> String {
    let found: Vec<String> = ProblemKind::ALL
        .iter()
        .filter(|k| report.count(**k) > 0)
        .map(|k| format!("{} {}", report.count(*k), k.as_str()))
        .collect();
    if found.is_empty() { "no problems".into() } else { found.join(", ") }
}

fn print_text(report: &FixityReport) {
    for p in &report.problems {
        println!("{:<11} {}  {}", p.kind.as_str(), p.path, detail(p));
    }
    let prefix = if report.prefix.is_empty() { String::new() } else { format!(" under `{}`", report.prefix) };
    let record = report.record_index.map_or_else(String::new, |i| format!("; recorded as ledger record {i}"));
    println!(
        "fsck of disk `{}`{prefix}: {} objects, {} bytes checked in {:.1} s against {} ledger records: {}; {} changed while checked{record}",
        report.disk,
        report.objects,
        report.bytes,
        report.elapsed.as_secs_f64(),
        report.records_read,
        if report.is_clean() { "clean".to_string() } else { counts(report) },
        report.changed,
    );
}

/// What a problem's line says after its kind and path.
fn detail(p: &Problem) -> String {
    let sha = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    match p.kind {
        ProblemKind::Corrupted => {
            let mut recorded = Vec::new();
            if let Some(d) = &p.driver_sha256 {
                recorded.push(format!("the driver's {d}"));
            }
            if let (Some(l), Some(i)) = (&p.ledger_sha256, p.ledger_index) {
                recorded.push(format!("the ledger's {l} (record {i})"));
            }
            format!("sha256 {} is not {}", sha(&p.actual_sha256), recorded.join(" nor "))
        }
        ProblemKind::Missing => {
            format!(
                "committed with sha256 {} (ledger record {}), not on the disk",
                sha(&p.ledger_sha256),
                p.ledger_index.map_or_else(|| "-".into(), |i| i.to_string())
            )
        }
        ProblemKind::Unrecorded => format!("sha256 {}: no ledger record of its write", sha(&p.actual_sha256)),
        ProblemKind::Unreadable => p.error.clone().unwrap_or_default(),
        ProblemKind::BadCopy => format!(
            "mirror `{}`: {}{}",
            p.mirror.as_deref().unwrap_or("-"),
            p.error.as_deref().unwrap_or_default(),
            if p.repaired { " (repaired)" } else { "" }
        ),
    }
}

/// The report as one JSON object.
fn to_json(report: &FixityReport) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> =
        ProblemKind::ALL.iter().map(|k| (k.as_str().to_string(), report.count(*k).into())).collect();
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "kind": p.kind.as_str(),
                "path": p.path,
                "actual_sha256": p.actual_sha256,
                "driver_sha256": p.driver_sha256,
                "ledger_sha256": p.ledger_sha256,
                "ledger_index": p.ledger_index,
                "error": p.error,
                "mirror": p.mirror,
                "repaired": p.repaired,
            })
        })
        .collect();
    serde_json::json!({
        "ok": report.is_clean(),
        "disk": report.disk,
        "prefix": report.prefix,
        "objects": report.objects,
        "bytes": report.bytes,
        "records_read": report.records_read,
        "changed": report.changed,
        "repaired": report.repaired(),
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "counts": counts,
        "problems": problems,
        "record_index": report.record_index,
    })
}
