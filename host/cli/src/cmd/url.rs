//! `stowage url ADDR`: a URL that serves the object until it expires. The driver's own signed
//! URL where it has one (S3); else one the host's `stowage serve` signs and serves
//! (`[server] url_secret`).

use std::path::Path;

use anyhow::Context as _;
use stowage_runtime::{LoadedConfig, StorageError};
use stowage_server::Settings;

use super::{address, at, request};

/// `url` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The object, e.g. `submission:VACS/cohort.csv`.
    addr: String,
    /// Seconds the URL stays valid.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    expires: u64,
}

/// Prints the URL.
pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let loaded = LoadedConfig::load(config)?;
    let storage = stowage_runtime::Storage::open(&loaded).await?;
    let addr = address(&args.addr)?;
    match storage.url(&addr, &request(), args.expires).await {
        Ok(url) => println!("{url}"),
        Err(StorageError::Unsupported(_)) => {
            let server = &loaded.config.server;
            let secret = stowage_server::settings::url_secret(server)?.context(
                "this disk's driver cannot sign URLs and [server] url_secret is not set, so the host cannot either",
            )?;
            // A URL for nothing helps nobody: the object must exist (and the policies allow it).
            at(storage.stat(&addr, &request()).await, &args.addr)?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            let path = stowage_server::signed::sign(&secret, &addr.name, &addr.path, now + args.expires)
                .context("the URL secret cannot key an HMAC")?;
            println!("{}{path}", Settings::base_url(server));
        }
        Err(e) => return at(Err(e), &args.addr),
    }
    Ok(())
}
