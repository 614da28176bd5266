//! `stowage serve`: the storage pipeline over HTTP(S) (see the stowage-server crate). SIGHUP
//! (or `stowage reload`) reloads the config and plugins without downtime.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use stowage_runtime::Storage;
use stowage_server::reload;

/// `serve` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 0.0.0.0:8443 (default: [server] listen, else
    /// 127.0.0.1:8443). Port 0 picks a free port; the address is printed.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// Serves until the process is stopped.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    // From here on a SIGHUP is a reload (kept until the host is up), never the end.
    let hangups = reload::Hangups::listen().context("cannot listen for SIGHUP (reload)")?;
    // The same check as `stowage config check`: every problem at once, with its line.
    let (loaded, settings) = stowage_server::settings::load(config, args.listen.as_deref())?;
    if loaded.config.server.dev_mode {
        tracing::warn!("[server] dev_mode = true: plain HTTP and short API keys are allowed. Development only.");
    }
    let storage = Arc::new(Storage::open(&loaded).await?);
    let source = reload::Source {
        config: config.map(Path::to_path_buf),
        listen: args.listen,
        status: reload::status_file(&loaded.ledger_path()),
    };
    let status = source.status.clone();
    let served = stowage_server::serve(storage, settings, &loaded.sha256, Some((source, hangups)), |addr, tls| {
        println!("stowage: serving on {}://{addr}", if tls { "https" } else { "http" });
    })
    .await;
    let _ = std::fs::remove_file(status);
    Ok(served?)
}
