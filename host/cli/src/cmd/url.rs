//! `stowage url ADDR`: a URL that serves the object until it expires. The driver's own signed
//! URL where it has one (S3); else one the host's `stowage serve` signs and serves
//! (`[server] url_secret`).

use std::path::Path;

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
    let server = &loaded.config.server;
    let signer = stowage_server::settings::url_secret(server)?
        .map(|secret| stowage_server::signed::HostSigner { secret, base_url: Settings::base_url(server) });
    match storage
        .url(&addr, &request(), args.expires, signer.as_ref().map(|s| s as &dyn stowage_runtime::UrlSigner))
        .await
    {
        Ok(url) => println!("{url}"),
        Err(StorageError::Unsupported(_)) if signer.is_none() => {
            return Err(anyhow::anyhow!(
                "{}: this disk's driver cannot sign URLs and [server] url_secret is not set, so the host cannot either",
                args.addr
            ));
        }
        Err(e) => return at(Err(e), &args.addr),
    }
    Ok(())
}
