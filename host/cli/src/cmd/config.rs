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
    },
}

/// Runs a config subcommand.
pub fn run(config: Option<&Path>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { file } => {
            let loaded = LoadedConfig::load(file.as_deref().or(config))?;
            println!("{}: ok", loaded.source);
            println!("role: {}", loaded.config.role.get_ref());
            for (name, disk) in &loaded.config.disks {
                let dir = disk
                    .grant
                    .dir
                    .as_ref()
                    .map(|d| format!(", dir {}", loaded.base_dir.join(d.get_ref()).display()))
                    .unwrap_or_default();
                println!("disk {}: plugin {}{dir}", name.get_ref(), disk.plugin.get_ref());
            }
            for class in StorageClass::ALL {
                println!("class {class} -> disk {}", loaded.disk_for(class));
            }
            Ok(())
        }
    }
}
