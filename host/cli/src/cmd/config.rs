//! `stowage config check [FILE]`: validate a config and explain every problem with its line.

use std::path::{Path, PathBuf};

use stowage_runtime::{LoadedConfig, StorageClass};

/// Config subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check FILE (default: --config, ./stowage.toml, or the embedded default) and print a
    /// summary, or every problem with its line.
    Check {
        /// The file to check.
        file: Option<PathBuf>,
        /// Check it as `stowage serve` would even without a `[server]` table (which `serve`
        /// refuses): what a unit runs before it starts `serve`.
        #[arg(long)]
        serve: bool,
    },
}

/// Runs a config subcommand.
pub fn run(config: Option<&Path>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { file, serve } => {
            // Exactly what `serve` checks (stowage_server::settings::load); `[server]` only
            // when the file has one, since a config without it is for the CLI alone.
            let mut serving = false;
            let mut settings = None;
            let loaded = LoadedConfig::load_with(file.as_deref().or(config), |loaded, report| {
                serving = serve || report.has_table("server");
                settings = stowage_server::settings::check(loaded, None, serving, report);
            })?;
            println!("{}: ok", loaded.source);
            println!("role: {}", loaded.config.role.get_ref());
            for (name, disk) in &loaded.config.disks {
                let dir = disk
                    .grant
                    .dir
                    .as_ref()
                    .map(|d| format!(", dir {}", loaded.base_dir.join(d.get_ref()).display()))
                    .unwrap_or_default();
                match (&disk.plugin, &disk.mirror) {
                    (Some(plugin), _) => println!("disk {}: plugin {}{dir}", name.get_ref(), plugin.get_ref()),
                    (None, Some(members)) => {
                        let quorum =
                            disk.write_quorum.as_ref().map_or(members.get_ref().len() as u64, |q| *q.get_ref());
                        println!(
                            "disk {}: mirror of {} (write quorum {quorum})",
                            name.get_ref(),
                            members.get_ref().join(", ")
                        )
                    }
                    (None, None) => {}
                }
            }
            for class in StorageClass::ALL {
                println!("class {class} -> disk {}", loaded.disk_for(class));
            }
            println!(
                "plugins: {} verified (signatures, pins, worlds)",
                loaded.config.disks.len() + loaded.config.policies.len()
            );
            match settings {
                Some(s) => println!(
                    "server: {}://{}, {} API key(s), signed URLs {}",
                    if s.tls.is_some() { "https" } else { "http (dev_mode)" },
                    s.listen,
                    s.keys.len(),
                    if s.url_secret.is_some() { "on" } else { "off (no url_secret)" }
                ),
                None => println!(
                    "server: no [server] table (fine for the CLI; `stowage serve` needs one with tls and api_keys)"
                ),
            }
            println!("sha256: {}", loaded.sha256);
            Ok(())
        }
    }
}
