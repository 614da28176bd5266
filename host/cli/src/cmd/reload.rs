//! `stowage reload`: asks the `stowage serve` of this config to reload its config and plugins
//! (SIGHUP), and waits for its answer. The config is checked here first, as `serve` checks it:
//! a config it would refuse is reported with its lines and nothing is sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// `reload` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The serving process (default: the one named in the status file beside the config's
    /// ledger, `LEDGER.serve.json`).
    #[arg(long)]
    pid: Option<i32>,
    /// Seconds to wait for the host's answer.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    wait: u64,
}

/// What the serving host says of itself.
#[derive(serde::Deserialize)]
struct Status {
    pid: i32,
    /// The process's identity (boot, pid, start time): a pid alone may be reused.
    host: String,
    generation: u64,
    sha256: String,
    /// The config the last reload read.
    tried: Option<String>,
    ok: bool,
    error: Option<String>,
}

/// Checks the config, signals the host, and reports what it did: exit 0 once the new config
/// is in force, an error (the host's reason) if it refused.
pub fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let (loaded, _) = stowage_server::settings::load(config, None)
        .context("nothing was sent: the serving host would refuse this config and keeps serving the one it has")?;
    let file = stowage_server::reload::status_file(&loaded.ledger_path());
    let before = read_status(&file);
    let pid = match (args.pid, &before) {
        (Some(pid), _) => pid,
        (None, Ok(status)) if alive(status) => status.pid,
        (None, Ok(status)) => {
            bail!("the host {} names (process {}) is no longer running: nothing was sent", file.display(), status.pid)
        }
        (None, Err(e)) => bail!(
            "no serving host found for this config ({}: {e}); is `stowage serve` running? (or give --pid)",
            file.display()
        ),
    };
    if !is_stowage_serve(pid) {
        bail!("process {pid} is not a running `stowage serve`: nothing was sent");
    }
    let target = rustix::process::Pid::from_raw(pid).with_context(|| format!("{pid} is not a process id"))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP)
        .with_context(|| format!("cannot signal process {pid}"))?;
    // Without the host's status file (another ledger, --pid), the signal is all that can be done.
    let Some(before) = before.ok().filter(|s| s.pid == pid) else {
        println!(
            "sent SIGHUP to {pid}; its log and /metrics (stowage_config_reload_failures_total) say how the reload went"
        );
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut other = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        match read_status(&file) {
            // A reload after ours was asked for that read this config (an earlier SIGHUP's
            // reload may still have been running when ours arrived: it is not the answer).
            Ok(now)
                if now.host == before.host
                    && now.generation > before.generation
                    && now.tried.as_deref().is_none_or(|t| t == loaded.sha256) =>
            {
                if now.ok {
                    println!("reloaded: process {pid} serves config sha256 {}", now.sha256);
                    return Ok(());
                }
                bail!(
                    "the reload was refused; process {pid} keeps serving config sha256 {}:\n{}",
                    now.sha256,
                    now.error.unwrap_or_default()
                );
            }
            // A reload that read another text: the file changed after it was checked here.
            // Ours may still follow (an earlier SIGHUP's reload was running): wait a little.
            Ok(now) if now.host == before.host && now.generation > before.generation => {
                if other.as_ref().is_none_or(|(generation, _, _)| *generation != now.generation) {
                    other = Some((now.generation, now.tried, Instant::now()));
                }
                if other.as_ref().is_some_and(|(_, _, seen)| seen.elapsed() > Duration::from_secs(10)) {
                    break;
                }
            }
            _ => {}
        }
    }
    if let Some((_, tried, _)) = other {
        let tried = tried.unwrap_or_else(|| "unknown".into());
        bail!(
            "process {pid} reloaded a config (sha256 {tried}) other than the one checked here (sha256 {}): was the file edited meanwhile? Run `stowage reload` again",
            loaded.sha256
        );
    }
    bail!("process {pid} did not answer within {} s; its log says how the reload went", args.wait)
}

/// Whether the process the status file names is still the one that wrote it.
fn alive(status: &Status) -> bool {
    stowage_runtime::HostId::parse(&status.host).is_some_and(|h| h.is_alive())
}

fn read_status(file: &PathBuf) -> anyhow::Result<Status> {
    let text = std::fs::read_to_string(file)?;
    Ok(serde_json::from_str(&text)?)
}

/// Whether `pid` runs `stowage serve` (with --pid, or beside the identity check: never signal
/// some other program).
fn is_stowage_serve(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let mut args = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty());
    let program_is_stowage = args.next().is_some_and(|p| {
        Path::new(std::str::from_utf8(p).unwrap_or_default()).file_name().is_some_and(|n| n == "stowage")
    });
    program_is_stowage && args.any(|a| a == b"serve")
}
