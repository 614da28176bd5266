//! `stowage ledger ...` and `stowage cleanup`: the PHI ledger's commands. All but `reconcile`
//! need only the ledger (no plugin starts); they open it even when it does not verify, so an
//! operator can look.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use stowage_runtime::ledger::note::VerifierKey;
use stowage_runtime::ledger::{
    Entry, InclusionProof, Ledger, Record, Verified, VerifyMode, check_proof, now_ms, parse_checkpoints,
};
use stowage_runtime::{Address, LoadedConfig, StorageError};

use super::{open_storage, request};

/// Ledger subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify the ledger: incrementally from the last checkpoint (or every record with
    /// --full), and with --against that it extends checkpoints saved elsewhere. Names the
    /// first bad index and exits 9 on any edited, deleted, reordered or truncated record.
    Verify {
        /// Walk every record, not only those after the last checkpoint.
        #[arg(long)]
        full: bool,
        /// A file of signed checkpoints (saved off this host) the ledger must extend.
        #[arg(long, value_name = "FILE", requires = "trust")]
        against: Vec<PathBuf>,
        /// A key that may sign them: a `.pub` file or the key itself (`name+id+base64`).
        #[arg(long, value_name = "KEY")]
        trust: Vec<String>,
    },
    /// Print the newest signed checkpoint (with --now: sign one of everything so far first).
    Checkpoint {
        /// Sign a checkpoint now.
        #[arg(long)]
        now: bool,
    },
    /// Print the public key that verifies this host's checkpoints (keep a copy elsewhere).
    Key,
    /// Print a proof (JSON) that record INDEX is in a signed checkpoint, to check offline.
    Prove {
        /// The record's index.
        index: u64,
    },
    /// Check a proof from `prove` without the database.
    CheckProof {
        /// The proof file (`-` for stdin).
        proof: PathBuf,
        /// A key that may sign its checkpoint: a `.pub` file or the key itself.
        #[arg(long, value_name = "KEY", required = true)]
        trust: Vec<String>,
    },
    /// Accept the ledger's first break so the host can start again: appends a seal record
    /// naming the break, the last good record and your reason. Run it with the host stopped.
    Seal {
        /// Why (what happened, who decided): it stays in the ledger for ever.
        #[arg(long)]
        reason: String,
    },
    /// Settle write-ahead records a crash left open, by looking at their objects.
    Reconcile,
    /// Temporary files past their cleanup deadline and not deleted.
    Overdue {
        /// Overdue as of this time instead of now (RFC 3339, a date, or ms since the epoch).
        #[arg(long)]
        at: Option<String>,
    },
    /// Show records (all, or those for one path).
    Show {
        /// Only records for this object path.
        #[arg(long)]
        path: Option<String>,
    },
    /// Copy this (SQLite) ledger into an empty PostgreSQL database and prove the copy: the
    /// same records, last chain hash and Merkle root. Then set `[ledger] url` to use it.
    Migrate {
        /// The database: `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. Better given in the
        /// environment (`STOWAGE_LEDGER_MIGRATE_TO`), where `ps` does not show the password.
        #[arg(long, value_name = "URL", env = "STOWAGE_LEDGER_MIGRATE_TO", hide_env_values = true)]
        to: String,
        /// A CA certificate (PEM) to trust for the database's TLS certificate.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Every record matching the filters, streamed as CSV or a JSON array.
    Export(super::ledger_report::ExportArgs),
    /// Reports a compliance officer can hand over.
    #[command(subcommand)]
    Report(super::ledger_report::Report),
}

/// The ledger does not verify (exit code 9).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerBroken(pub String);

/// Opens the configured ledger, with its checkpoints.
pub fn open(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let loaded = LoadedConfig::load(config)?;
    Ok(Ledger::open(&loaded.ledger_path(), loaded.ledger_options())?)
}

/// A trusted key: a file holding one, or the key text itself.
fn trusted_key(arg: &str) -> anyhow::Result<VerifierKey> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) if arg.contains('+') => arg.to_string(),
        Err(e) => return Err(anyhow::anyhow!("--trust {arg}: {e}")),
    };
    VerifierKey::parse(&text).with_context(|| format!("--trust {arg}"))
}

fn read_arg(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| path.display().to_string())
    }
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// One record as a line.
pub fn line(e: &Entry) -> String {
    let r = &e.record;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut s = format!(
        "#{} {} {} {}:{} actor={} key={} cohort={} size={} sha256={}",
        e.index,
        time(e.at_ms),
        r.action,
        r.disk,
        r.path,
        opt(&r.actor),
        opt(&r.key),
        opt(&r.cohort),
        r.size.map_or_else(|| "-".into(), |s| s.to_string()),
        opt(&r.sha256)
    );
    if let Some(p) = &r.purpose {
        s += &format!(" purpose={p:?}");
    }
    if let Some(n) = r.items {
        s += &format!(" items={n}");
    }
    if let Some(id) = &r.url_id {
        s += &format!(" url={id}");
    }
    if let Some(secs) = r.expires_in_secs {
        s += &format!(" expires_in={secs}s");
    }
    if r.intent.is_some() {
        s += " (write-ahead)";
    }
    if !r.settles.is_empty() {
        let settles: Vec<String> = r.settles.iter().map(|i| format!("#{i}")).collect();
        s += &format!(" settles={}", settles.join(","));
    }
    if r.reconciled {
        s += " (reconciled)";
    }
    if r.cleanup_required {
        s += &format!(" cleanup_within={}s", r.cleanup_within_secs.unwrap_or(0));
    }
    if let Some(seal) = &r.seal {
        s += &format!(" seals_break_at={} reason={:?}", seal.broken_at, seal.reason);
    } else if let Some(err) = &r.error {
        s += &format!(" error={err:?}");
    }
    s
}

fn verified(v: &Verified) -> String {
    let mut s = format!("ledger OK: {} records", v.count);
    if v.from > 0 {
        s += &format!(", {} checked since the checkpoint of size {}", v.count - v.from, v.from);
    } else {
        s += ", chain intact";
    }
    if !v.checkpoints.is_empty() {
        let sizes: Vec<String> = v.checkpoints.iter().map(u64::to_string).collect();
        s += &format!("; extends the checkpoints of size {}", sizes.join(", "));
    }
    for b in &v.sealed {
        s += &format!(
            "\nsealed break at index {} (seal #{}): {}; reason: {}",
            b.seal.broken_at, b.seal_index, b.seal.problem, b.seal.reason
        );
    }
    s
}

/// Runs a ledger subcommand.
pub async fn run(config: Option<&Path>, command: Command) -> anyhow::Result<()> {
    if let Command::Reconcile = command {
        return reconcile(config).await;
    }
    let ledger = open(config)?;
    match command {
        Command::Verify { full, against, trust } => {
            let result = if against.is_empty() {
                ledger.verify(if full { VerifyMode::Full } else { VerifyMode::Incremental })?
            } else {
                let keys = trust.iter().map(|k| trusted_key(k)).collect::<anyhow::Result<Vec<_>>>()?;
                let mut checkpoints = Vec::new();
                for file in &against {
                    let text = read_arg(file)?;
                    checkpoints.extend(parse_checkpoints(&text, &keys).with_context(|| file.display().to_string())?);
                }
                anyhow::ensure!(!checkpoints.is_empty(), "no checkpoint in {}", against[0].display());
                ledger.verify_against(&checkpoints)?
            };
            match result {
                Ok(v) => {
                    println!("{}", verified(&v));
                    Ok(())
                }
                Err(broken) => Err(LedgerBroken(broken.to_string()).into()),
            }
        }
        Command::Checkpoint { now } => {
            let latest = if now {
                Some(ledger.checkpoint_now()?)
            } else {
                ledger.checkpoints()?.into_iter().max_by_key(|c| c.checkpoint.size)
            };
            let latest =
                latest.context("the ledger has no checkpoint yet (`stowage ledger checkpoint --now` signs one)")?;
            print!("{}", latest.note);
            Ok(())
        }
        Command::Key => {
            let key = ledger.verifier_key().context("this ledger has no host key")?;
            println!("{}", key.to_text());
            Ok(())
        }
        Command::Prove { index } => {
            let proof = ledger.prove(index)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
        Command::CheckProof { proof, trust } => {
            let keys = trust.iter().map(|k| trusted_key(k)).collect::<anyhow::Result<Vec<_>>>()?;
            let proof: InclusionProof =
                serde_json::from_str(&read_arg(&proof)?).context("not a proof from `stowage ledger prove`")?;
            let (entry, checkpoint) = check_proof(&proof, &keys).map_err(LedgerBroken)?;
            println!(
                "proof OK: record {} is in the checkpoint of size {} signed by a trusted key",
                entry.index, checkpoint.size
            );
            println!("{}", line(&entry));
            Ok(())
        }
        Command::Seal { reason } => match ledger.seal(&reason)? {
            Some(sealed) => {
                println!(
                    "sealed: record #{} accepts the break at index {} ({}); the ledger verifies from here on",
                    sealed.index, sealed.seal.broken_at, sealed.seal.problem
                );
                Ok(())
            }
            None => {
                println!("the ledger verifies: nothing to seal");
                Ok(())
            }
        },
        Command::Overdue { at } => {
            let at = match at {
                Some(t) => super::ledger_report::parse_time("at", &t)?,
                None => now_ms(),
            };
            for (e, deadline) in ledger.overdue(at)? {
                println!("{}:{}\tdue {}\t(record #{})", e.record.disk, e.record.path, time(deadline), e.index);
            }
            Ok(())
        }
        Command::Show { path } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            ledger.scan(0, |e| {
                if path.as_ref().is_none_or(|p| *p == e.record.path) {
                    use std::io::Write as _;
                    writeln!(out, "{}", line(&e))
                        .map_err(|e| stowage_runtime::ledger::LedgerError::Output(e.to_string()))?;
                }
                Ok(true)
            })?;
            Ok(())
        }
        Command::Migrate { to, ca_file } => {
            if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
                anyhow::bail!("--to must be a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)");
            }
            let m = ledger.migrate_to(&stowage_runtime::ledger::PostgresLedger { url: to, ca_file })?;
            println!(
                "migrated {} records to PostgreSQL; the copy has the same Merkle root ({}) and last hash ({})",
                m.records,
                hex::encode(m.root),
                m.chain
            );
            println!(
                "next: set [ledger] url (e.g. {{ env = \"STOWAGE_LEDGER_URL\" }}) and keep [ledger] path, so the head file and checkpoints beside it still apply"
            );
            Ok(())
        }
        Command::Export(args) => super::ledger_report::export(&ledger, args),
        Command::Report(report) => super::ledger_report::report(&ledger, report),
        Command::Reconcile => Ok(()),
    }
}

async fn reconcile(config: Option<&Path>) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(config)?;
    let storage = stowage_runtime::Storage::start(&loaded)?;
    storage.check_wiring().await?;
    let done = storage.reconcile().await?;
    for i in &done.committed {
        println!("#{i}: happened (the object is there as announced)");
    }
    for i in &done.failed {
        println!("#{i}: did not happen");
    }
    for i in &done.left {
        println!("#{i}: left open (its operation is still running, or its object cannot be looked at now)");
    }
    println!("{} settled, {} left open", done.committed.len() + done.failed.len(), done.left.len());
    Ok(())
}

/// Deletes every overdue temporary file through the pipeline, so each deletion is recorded;
/// then removes the temp objects of writes that never finished.
pub async fn cleanup(config: Option<&Path>) -> anyhow::Result<()> {
    let storage = open_storage(config).await?;
    let mut req = request();
    req.actor = Some(req.actor.unwrap_or_else(|| "stowage-cleanup".into()));
    let overdue = storage.ledger().overdue(now_ms())?;
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
                storage
                    .ledger()
                    .append(&Record {
                        action: "cleaned_up".into(),
                        error: None,
                        cleanup_required: false,
                        cleanup_within_secs: None,
                        request_id: req.request_id.clone(),
                        actor: req.actor.clone(),
                        key: req.authenticated_as.clone(),
                        intent: None,
                        settles: Vec::new(),
                        policy: None,
                        ..e.record.clone()
                    })
                    .await
                    .map_err(|e| StorageError::AuditUnavailable(e.to_string()))?;
                println!("already gone {}:{}", addr.name, addr.path);
            }
            Err(err) => {
                failed += 1;
                eprintln!("stowage: could not delete {}:{}: {err}", addr.name, addr.path);
            }
        }
    }
    let swept = storage.sweep_orphans().await?;
    for (disk, id, size) in &swept.removed {
        println!(
            "removed {disk}: temp object {id} of a write that never finished ({} bytes)",
            size.map_or_else(|| "?".into(), |s| s.to_string())
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} overdue files could not be deleted", overdue.len());
    }
    Ok(())
}
