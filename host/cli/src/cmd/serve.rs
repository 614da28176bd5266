//! `stowage serve`: the storage pipeline over HTTP(S) (see the stowage-server crate).

use std::path::Path;
use std::sync::Arc;

use stowage_runtime::{LoadedConfig, Storage};
use stowage_server::Settings;

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
    let loaded = LoadedConfig::load(config)?;
    let server = &loaded.config.server;
    let settings = Settings::resolve(server, &loaded.base_dir, args.listen.as_deref())?;
    if server.dev_mode {
        tracing::warn!("[server] dev_mode = true: plain HTTP and short API keys are allowed. Development only.");
    }
    let storage = Arc::new(Storage::open(&loaded).await?);
    stowage_server::serve(storage, settings, |addr, tls| {
        println!("stowage: serving on {}://{addr}", if tls { "https" } else { "http" });
    })
    .await?;
    Ok(())
}
